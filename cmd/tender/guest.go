package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/tendervm/tender/hypercall"
	"github.com/tendervm/tender/monitor"
	"github.com/tendervm/tender/monitor/kvm"
)

// guestFlags are the flags of every command that boots a guest.
type guestFlags struct {
	memMiB       uint64
	backend      string
	consoleLimit int64
}

func (g *guestFlags) register(fs *flag.FlagSet) {
	fs.Uint64Var(&g.memMiB, "mem", monitor.DefaultMemSize>>20, "guest memory in MiB (even, 4 to 3072); only touched pages are allocated")
	fs.StringVar(&g.backend, "backend", string(monitor.BackendKVM), "how to run guests: kvm, process (ptrace + seccomp, for hosts without KVM), or auto")
	fs.Int64Var(&g.consoleLimit, "console-limit", monitor.DefaultConsoleLimit, "end a guest after this many bytes of console output (negative: no limit)")
}

// config reads the guest ELF named by args[0] and builds its configuration.
func (g *guestFlags) config(args []string, console io.Writer) (monitor.HostConfig, monitor.Config, error) {
	if g.memMiB < hypercall.MemMin>>20 || g.memMiB > hypercall.MemMax>>20 || g.memMiB%2 != 0 {
		return monitor.HostConfig{}, monitor.Config{}, usageError{fmt.Errorf("-mem %d: want an even number of MiB from %d to %d", g.memMiB, hypercall.MemMin>>20, hypercall.MemMax>>20)}
	}
	image, err := readELF(args[0])
	if err != nil {
		return monitor.HostConfig{}, monitor.Config{}, err
	}
	return monitor.HostConfig{Backend: monitor.Backend(g.backend)}, monitor.Config{
		ELF:          image,
		Name:         strings.TrimSuffix(filepath.Base(args[0]), ".elf"),
		Args:         args[1:],
		MemSize:      g.memMiB << 20,
		Console:      console,
		ConsoleLimit: g.consoleLimit,
	}, nil
}

// readELF reads a guest executable, refusing before reading a file that could
// never fit in guest memory.
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

// report prints err and returns the exit code for it.
func report(stderr io.Writer, status int, err error) int {
	var ue usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(stderr, "tender: %v\n", err)
		return monitor.ExitUsage
	}
	if err != nil {
		fmt.Fprintf(stderr, "tender: %v\n", err)
		if errors.Is(err, kvm.ErrUnavailable) {
			fmt.Fprintln(stderr, "tender: without KVM, -backend=process runs guests as confined processes")
		}
	}
	return monitor.ExitCode(status, err)
}
