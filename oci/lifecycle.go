package oci

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/opencontainers/runtime-spec/specs-go/features"
	"golang.org/x/sys/unix"
)

// startTimeout bounds how long start waits for the monitor process to take
// the go-ahead.
const startTimeout = 10 * time.Second

// record parses a command's single ID argument and reads its record. A
// container tender-oci does not have is runc's: the command line goes to
// runc, and record returns only if that fails.
func (rt *runtime) record(fs *flag.FlagSet, args []string) (*Record, error) {
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	id, err := oneID(fs)
	if err != nil {
		return nil, err
	}
	r, err := readRecord(rt.root, id)
	if errors.Is(err, ErrNotExist) {
		return nil, rt.delegate()
	}
	return r, err
}

func (rt *runtime) start(args []string) error {
	r, err := rt.record(newFlags("start", rt), args)
	if err != nil {
		return err
	}
	if st := r.Status(rt.root); st != specs.StateCreated {
		return fmt.Errorf("cannot start container %s: it is %s, not created", r.ID, st)
	}
	// The PID descriptor before the FIFO: once the FIFO is open the guest
	// runs, and a short one may end and be reaped at once.
	pidfd, err := r.pidfd()
	if err != nil {
		return fmt.Errorf("start %s: %w", r.ID, err)
	}
	defer unix.Close(pidfd)
	fifo := filepath.Join(stateDir(rt.root, r.ID), fifoFile)
	// Non-blocking: opening for reading never waits, and the monitor's
	// blocking open for writing returns once this reader exists.
	f, err := os.OpenFile(fifo, os.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("start %s: %w", r.ID, errStarted)
	}
	if err != nil {
		return fmt.Errorf("start %s: %w", r.ID, err)
	}
	defer f.Close()
	fds := []unix.PollFd{{Fd: int32(f.Fd()), Events: unix.POLLIN}, {Fd: int32(pidfd), Events: unix.POLLIN}}
	deadline := time.Now().Add(startTimeout)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return fmt.Errorf("start %s: the monitor process did not take the go-ahead within %v", r.ID, startTimeout)
		}
		n, err := unix.Poll(fds, int(min(left, fifoCheck).Milliseconds())+1)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("start %s: %w", r.ID, err)
		}
		if n == 0 {
			// The process removes the FIFO once it took a
			// go-ahead: another start's, between this one's
			// state check and its open.
			if _, err := os.Lstat(fifo); errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("start %s: %w", r.ID, errStarted)
			}
			continue
		}
		if fds[0].Revents&unix.POLLIN != 0 {
			var b [1]byte
			if k, _ := f.Read(b[:]); k == 1 {
				break
			}
		}
		if fds[1].Revents != 0 {
			return fmt.Errorf("start %s: the container's process exited before it started", r.ID)
		}
		// POLLHUP without data: the writer went away; the PID
		// descriptor says whether it died.
		time.Sleep(time.Millisecond)
	}
	// The process removes the FIFO too, once its go-ahead is written (a
	// start killed here must not leave the container created for ever);
	// removing it here as well makes state say running once start returns.
	if err := os.Remove(fifo); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("start %s: %w", r.ID, err)
	}
	return nil
}

// errStarted is start's error for a container whose FIFO is gone: its
// process took a go-ahead already.
var errStarted = errors.New("already started: its process is running")

// fifoCheck is how often start, waiting for the go-ahead to be taken,
// checks that the FIFO is still there.
const fifoCheck = 50 * time.Millisecond

// pidfd opens a descriptor on r's monitor process, checking after the open
// that the PID was not recycled.
func (r *Record) pidfd() (int, error) {
	if r.Pid <= 0 {
		return -1, errors.New("no process yet")
	}
	fd, err := unix.PidfdOpen(r.Pid, 0)
	if err != nil {
		return -1, fmt.Errorf("process %d: %w", r.Pid, err)
	}
	if p, err := readProc(r.Pid); err != nil || p.startTime != r.StartTime {
		unix.Close(fd)
		return -1, fmt.Errorf("process %d: %w", r.Pid, unix.ESRCH)
	}
	return fd, nil
}

func (rt *runtime) state(args []string) error {
	r, err := rt.record(newFlags("state", rt), args)
	if err != nil {
		return err
	}
	b, err := json.MarshalIndent(r.ociState(rt.root), "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(rt.stdout, "%s\n", b)
	return err
}

func (rt *runtime) ps(args []string) error {
	fs := newFlags("ps", rt)
	format := fs.String("format", "table", "table or json")
	fs.StringVar(format, "f", "table", "table or json")
	r, err := rt.record(fs, args)
	if err != nil {
		return err
	}
	pids := []int{}
	if r.alive() {
		pids = append(pids, r.Pid)
	}
	if *format == "json" {
		return json.NewEncoder(rt.stdout).Encode(pids)
	}
	fmt.Fprintln(rt.stdout, "PID")
	for _, p := range pids {
		fmt.Fprintln(rt.stdout, p)
	}
	return nil
}

func (rt *runtime) kill(args []string) error {
	fs := newFlags("kill", rt)
	fs.Bool("all", false, "accepted for runc compatibility: a tender container has one process")
	fs.Bool("a", false, "same as --all")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() < 1 || fs.NArg() > 2 {
		return fmt.Errorf("kill: want ID [SIGNAL], got %d arguments", fs.NArg())
	}
	sig := unix.SIGTERM
	if fs.NArg() == 2 {
		var err error
		if sig, err = ParseSignal(fs.Arg(1)); err != nil {
			return err
		}
	}
	r, err := rt.record(newFlags("kill", rt), fs.Args()[:1])
	if err != nil {
		return err
	}
	pidfd, err := r.pidfd()
	if err != nil || !r.alive() {
		// runc's words: containerd's shim takes "container not running"
		// for a process that already finished, not a failed kill.
		return fmt.Errorf("kill %s: container not running", r.ID)
	}
	defer unix.Close(pidfd)
	if err := unix.PidfdSendSignal(pidfd, sig, nil, 0); err != nil {
		return fmt.Errorf("kill %s: %w", r.ID, err)
	}
	return nil
}

// ParseSignal parses a signal as kill takes it: a number, or a name with or
// without SIG (KILL, SIGKILL).
func ParseSignal(s string) (unix.Signal, error) {
	if n, err := strconv.Atoi(s); err == nil {
		if n <= 0 || n > 64 {
			return 0, fmt.Errorf("signal %q: want 1 to 64", s)
		}
		return unix.Signal(n), nil
	}
	name := strings.ToUpper(s)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if sig := unix.SignalNum(name); sig != 0 {
		return sig, nil
	}
	return 0, fmt.Errorf("unknown signal %q", s)
}

// killWait is how long delete waits for a killed monitor process to die.
const killWait = 10 * time.Second

func (rt *runtime) delete(args []string) error {
	fs := newFlags("delete", rt)
	force := fs.Bool("force", false, "kill a running container first")
	fs.BoolVar(force, "f", false, "same as --force")
	if err := fs.Parse(args); err != nil {
		return err
	}
	id, err := oneID(fs)
	if err != nil {
		return err
	}
	r, err := readRecord(rt.root, id)
	if errors.Is(err, ErrNotExist) {
		return rt.delegate()
	}
	if err != nil {
		return err
	}
	if r.Pid == 0 {
		// Creating: refused while create is at work (it holds the
		// lock). If it died first, the process it started ends at its
		// pipe's EOF (awaitCreate), and what is left goes, --force or
		// not, as runc removes what an aborted create left.
		unlock, err := lockState(stateDir(rt.root, id))
		if errors.Is(err, os.ErrNotExist) {
			// create failed meanwhile and removed it all.
			return fmt.Errorf("container %s: %w", id, ErrNotExist)
		}
		if err != nil {
			return fmt.Errorf("cannot delete container %s that is being created: %w", id, err)
		}
		defer unlock()
		// create may have finished since the record was read.
		if r, err = readRecord(rt.root, id); err != nil {
			return err
		}
	}
	switch st := r.Status(rt.root); {
	case st == specs.StateRunning && !*force:
		return fmt.Errorf("cannot delete container %s that is not stopped: %s", id, st)
	case st == specs.StateCreated || st == specs.StateRunning:
		// A created container never ran: deleting it kills it, as
		// with runc.
		if err := r.killWait(); err != nil {
			return fmt.Errorf("delete %s: %w", id, err)
		}
	}
	if r.TAP != "" && r.NetNS != "" {
		// The TAP went with the monitor process; eth0's redirection
		// stays until removed. A namespace already gone took it along.
		if err := inNetns(r.NetNS, detachPod); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("delete %s: %w", id, err)
		}
	}
	return os.RemoveAll(stateDir(rt.root, id))
}

// killWait sends SIGKILL to the monitor process and waits until it is dead
// (a zombie counts: the shim reaps it).
func (r *Record) killWait() error {
	pidfd, err := r.pidfd()
	if err != nil {
		return nil // already gone
	}
	defer unix.Close(pidfd)
	if err := unix.PidfdSendSignal(pidfd, unix.SIGKILL, nil, 0); err != nil && !errors.Is(err, unix.ESRCH) {
		return err
	}
	fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
	for deadline := time.Now().Add(killWait); time.Now().Before(deadline); {
		n, err := unix.Poll(fds, int(killWait.Milliseconds()))
		if n > 0 {
			return nil
		}
		if err != nil && !errors.Is(err, unix.EINTR) {
			return err
		}
	}
	return fmt.Errorf("process %d still alive %v after SIGKILL", r.Pid, killWait)
}

func (rt *runtime) features() error {
	f := features.Features{
		OCIVersionMin: "1.0.0",
		OCIVersionMax: specs.Version,
		Linux: &features.Linux{
			Namespaces: []string{string(specs.NetworkNamespace)},
		},
		Annotations: map[string]string{
			"dev.tender.runtime": "tender-oci " + Version,
		},
	}
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(rt.stdout, "%s\n", b)
	return err
}

// newFlags is the flag set of command name.
func newFlags(name string, rt *runtime) *flag.FlagSet { return commandFlags(name, rt.stderr) }
