package oci

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"

	"github.com/tendervm/tender/internal/cli"
	"github.com/tendervm/tender/monitor"
	"github.com/tendervm/tender/monitor/confine"
	"github.com/tendervm/tender/monitor/netdev"
)

// The descriptors on which create passes the guest executable, the read
// end of its pipe (awaitCreate) and, to a network guest, its TAP.
const (
	guestFD    = 3
	recordedFD = 4
	tapFD      = 5
)

// serveBinary is `tender serve`, found beside tender-oci, which a served
// function's container process becomes.
const serveBinary = "tender-serve"

// runMonitor is the container's process (tender-oci __monitor DIR): it
// waits until create has recorded it and start opens DIR's FIFO (exiting if
// create died before the first), then runs the guest and exits with its
// status, or becomes tender-serve for a served function. SIGTERM before or
// during the run stops the guest: exit 243.
func runMonitor(args []string) int {
	stderr := os.Stderr
	if len(args) != 1 {
		fmt.Fprintln(stderr, "tender-oci: __monitor DIR is started by create")
		return monitor.ExitUsage
	}
	dir := args[0]
	// The signal handler first: a kill between create and start stops the
	// process with tender's interrupted status.
	ctx, cancel := cli.SignalContext()
	defer cancel()
	if err := awaitCreate(ctx, os.NewFile(recordedFD, "create's pipe")); err != nil {
		return cli.Report(stderr, 0, err)
	}
	r, err := awaitRecord(ctx, dir)
	if err != nil {
		return cli.Report(stderr, 0, err)
	}
	if r.Options.Serves() {
		return cli.Report(stderr, 0, execServe(r, dir))
	}
	cli.IgnoreSIGPIPE()
	if r.Options.Timeout > 0 {
		var cancelT context.CancelFunc
		ctx, cancelT = context.WithTimeout(ctx, r.Options.Timeout)
		defer cancelT()
	}
	res, err := runGuest(ctx, r)
	msgs := cli.Bounded(stderr, cli.MessageWait)
	if n := res.Stats.ConsoleDropped; n > 0 {
		// A console write failed (or the run was stopped): say so, since
		// the container's output is all the user sees of the guest.
		fmt.Fprintf(msgs, "tender-oci: %d bytes of the guest's console output were not delivered\n", n)
	}
	return cli.Report(msgs, res.Status, err)
}

// errCreateDied is awaitCreate's error when create ended without its byte.
var errCreateDied = errors.New("create ended before it recorded this process: nobody can start it, exiting")

// awaitCreate reads create's byte from f, which create writes once the
// record and the pid file name this process. EOF first means create died
// (its caller killed it): then this process is known to no one, and
// waiting for a start would hold the guest, a TAP and the namespace for
// ever.
func awaitCreate(ctx context.Context, f *os.File) error {
	return interruptible(ctx, func() error {
		defer f.Close()
		n, err := f.Read(make([]byte, 1))
		if n == 1 {
			return nil
		}
		if err == nil || errors.Is(err, io.EOF) {
			err = errCreateDied
		}
		return fmt.Errorf("create's pipe: %w", err)
	})
}

// awaitRecord waits for start's go-ahead on dir's FIFO, then reads the
// container's record. Not before: create writes the record whole (the PID,
// a network guest's NetArgs) only once this process exists, and start
// finds the container created only after that.
func awaitRecord(ctx context.Context, dir string) (*Record, error) {
	if err := awaitStart(ctx, filepath.Join(dir, fifoFile)); err != nil {
		return nil, err
	}
	return readRecord(filepath.Dir(dir), filepath.Base(dir))
}

// awaitStart blocks on opening the FIFO for writing, which returns once
// start opens it for reading, writes start its go-ahead byte and removes
// the FIFO, which makes the container running: start removes it too, but
// may be killed before. A cancelled ctx (SIGTERM) ends the wait with ctx's
// cause.
func awaitStart(ctx context.Context, fifo string) error {
	return interruptible(ctx, func() error {
		f, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("exec fifo: %w", err)
		}
		_, err = f.Write([]byte{0})
		f.Close()
		if err != nil {
			return fmt.Errorf("exec fifo: %w", err)
		}
		if err := os.Remove(fifo); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("exec fifo: %w", err)
		}
		return nil
	})
}

// interruptible runs wait, which blocks, and returns its error, or ctx's
// cause if ctx is cancelled first; wait's goroutine is then left blocked,
// as the process is about to exit.
func interruptible(ctx context.Context, wait func() error) error {
	done := make(chan error, 1)
	go func() { done <- wait() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return &monitor.StoppedError{Cause: ctx.Err(), Reason: context.Cause(ctx)}
	}
}

// runGuest boots the guest read from guestFD, confining the process once
// its VM exists, as `tender run` does.
func runGuest(ctx context.Context, r *Record) (monitor.Result, error) {
	image, err := cli.ReadELF("/proc/self/fd/" + strconv.Itoa(guestFD))
	if err != nil {
		return monitor.Result{}, err
	}
	host, err := monitor.NewHost(monitor.HostConfig{Backend: r.Options.Backend, CPUIDCache: cli.CPUIDCache()})
	if err != nil {
		return monitor.Result{}, err
	}
	defer host.Close()
	policy := confine.ForHost(host)
	var devs map[string]netdev.Device
	if r.NetDevice != "" {
		tap, err := netdev.TAPFromFD(tapFD)
		if err != nil {
			return monitor.Result{}, err
		}
		defer tap.Close()
		devs = map[string]netdev.Device{r.NetDevice: tap}
		policy.Net = true
	}
	vm, err := host.New(monitor.Config{
		ELF:     image,
		Name:    r.Name,
		Args:    append(slices.Clone(r.Args[1:]), r.NetArgs...),
		MemSize: r.Options.MemMiB << 20,
		Console: os.Stdout,
		Net:     devs,
		Ready:   func() error { return confine.Install(policy) },
	})
	if err != nil {
		return monitor.Result{}, err
	}
	defer vm.Close()
	// Ready reads policy when Run calls it, after this.
	policy.Runs(vm)
	return vm.Run(ctx)
}

// execServe replaces the process by tender-serve, serving the function on
// the port of its annotations in the container's network namespace.
func execServe(r *Record, dir string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	path := filepath.Join(filepath.Dir(self), serveBinary)
	o := r.Options
	argv := []string{path,
		"-listen", ":" + strconv.Itoa(o.Port),
		"-mode", o.Mode,
		"-mem", strconv.FormatUint(o.MemMiB, 10),
		"-backend", string(o.Backend),
		"-drain-delay", "0s",
	}
	if o.Timeout > 0 {
		argv = append(argv, "-timeout", o.Timeout.String())
	}
	// tender-serve names the function after its file: a link named after
	// the guest leads to the descriptor create passed.
	link := filepath.Join(dir, r.Name+".elf")
	if err := os.Symlink("/proc/self/fd/"+strconv.Itoa(guestFD), link); err != nil {
		return err
	}
	argv = append(argv, link)
	argv = append(argv, r.Args[1:]...)
	err = syscall.Exec(path, argv, os.Environ())
	if errors.Is(err, syscall.ENOENT) {
		err = fmt.Errorf("%s not found beside %s (make builds both)", path, self)
	}
	return fmt.Errorf("serve: %w", err)
}
