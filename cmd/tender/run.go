package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tendervm/tender/hypercall"
	"github.com/tendervm/tender/monitor"
	"github.com/tendervm/tender/monitor/kvm"
)

// guestOptions are the flags shared by every command that boots a guest.
type guestOptions struct {
	memMiB       uint64
	backend      string
	consoleLimit int64
}

func (o *guestOptions) register(c *cobra.Command) {
	c.Flags().Uint64Var(&o.memMiB, "mem", monitor.DefaultMemSize>>20, "guest memory in MiB (even, 4 to 3072); touched pages only are allocated")
	c.Flags().StringVar(&o.backend, "backend", string(monitor.BackendKVM), "how to run the guest: kvm, process (ptrace + seccomp, for hosts without KVM), or auto (kvm where available)")
	c.Flags().Int64Var(&o.consoleLimit, "console-limit", monitor.DefaultConsoleLimit, "end the guest after this many bytes of console output (negative: no limit)")
}

// readELF reads a guest executable, refusing files that could never fit in
// guest memory before reading them.
func readELF(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() || st.Size() > hypercall.MemMax {
		return nil, fmt.Errorf("%s: not a regular file of at most %d bytes", path, int64(hypercall.MemMax))
	}
	return io.ReadAll(io.LimitReader(f, hypercall.MemMax))
}

func runCommand(stdout, stderr io.Writer) *cobra.Command {
	var (
		opts    guestOptions
		timeout time.Duration
		stats   bool
	)
	c := &cobra.Command{
		Use:   "run [flags] GUEST.elf [ARGS...]",
		Short: "Boot a guest, connect its console to stdout, exit with its status",
		Long: `Boot GUEST.elf in a fresh virtual machine, pass it ARGS, copy its console
output to stdout, and exit with the guest's exit status (0-239). Other exit
codes: 240 aborted, 241 crashed (CPU fault, triple fault), 242 hypercall
protocol violation, 243 timeout or interrupted, 254 usage, 255 monitor error.`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) < 1 {
				return usageError{fmt.Errorf("run: missing GUEST.elf")}
			}
			return nil
		},
		RunE: func(_ *cobra.Command, args []string) error {
			if opts.memMiB == 0 || opts.memMiB > hypercall.MemMax>>20 {
				return usageError{fmt.Errorf("--mem %d: want 4 to %d MiB", opts.memMiB, hypercall.MemMax>>20)}
			}
			image, err := readELF(args[0])
			if err != nil {
				return err
			}
			ctx, cancel := signalContext()
			defer cancel()
			if timeout > 0 {
				ctx, cancel = context.WithTimeout(ctx, timeout)
				defer cancel()
			}
			res, err := monitor.Run(ctx, monitor.HostConfig{Backend: monitor.Backend(opts.backend)}, monitor.Config{
				ELF:          image,
				Name:         strings.TrimSuffix(filepath.Base(args[0]), ".elf"),
				Args:         args[1:],
				MemSize:      opts.memMiB << 20,
				Console:      stdout,
				ConsoleLimit: opts.consoleLimit,
			})
			if stats {
				writeStats(stderr, res.Stats)
			}
			if err != nil {
				fmt.Fprintf(stderr, "tender: %v\n", err)
				if errors.Is(err, kvm.ErrUnavailable) {
					fmt.Fprintln(stderr, "tender: without KVM, --backend=process runs the guest as a confined process")
				}
			}
			code := monitor.ExitCode(res.Status, err)
			if code != 0 {
				return exitStatus(code)
			}
			return nil
		},
	}
	c.Flags().SetInterspersed(false) // flags after GUEST.elf belong to the guest
	opts.register(c)
	c.Flags().DurationVar(&timeout, "timeout", 0, "stop the guest after this long (e.g. 500ms, 10s); 0: no limit")
	c.Flags().BoolVar(&stats, "stats", false, "print run statistics as JSON on stderr")
	return c
}

func writeStats(w io.Writer, s monitor.Stats) {
	b, _ := json.Marshal(map[string]any{
		"exits":              s.ExitCounts(),
		"hypercalls":         s.HypercallCounts(),
		"setup_us":           s.Setup.Microseconds(),
		"first_hypercall_us": s.FirstHypercall.Microseconds(),
		"guest_us":           s.GuestTime.Microseconds(),
		"total_us":           s.Total.Microseconds(),
		"console_bytes":      s.ConsoleBytes,
	})
	fmt.Fprintf(w, "%s\n", b)
}
