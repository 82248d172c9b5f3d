package oci

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/tendervm/tender/monitor/loader"
)

// commandFlags is a command's flag set; -h prints its usage.
func commandFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("tender-oci "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// oneID returns the single ID argument of a command.
func oneID(fs *flag.FlagSet) (string, error) {
	if fs.NArg() != 1 {
		return "", fmt.Errorf("%s: want exactly one container ID, got %d arguments", fs.Name(), fs.NArg())
	}
	return fs.Arg(0), checkID(fs.Arg(0))
}

// testDieEnv, set to 1 by tests only, makes create kill itself (SIGKILL)
// once the monitor process runs and before the record has its PID: where a
// caller's kill, go-runc's on a cancelled context, hurts most. create says
// the monitor's PID on stderr first.
const testDieEnv = "TENDER_OCI_TEST_DIE_BEFORE_RECORD"

func (rt *runtime) create(args []string) error {
	fs := commandFlags("create", rt.stderr)
	bundle := fs.String("bundle", ".", "the bundle directory")
	fs.StringVar(bundle, "b", ".", "the bundle directory")
	pidFile := fs.String("pid-file", "", "write the container process's PID here")
	consoleSocket := fs.String("console-socket", "", "send the terminal's master here (process.terminal)")
	fs.Bool("no-pivot", false, "accepted for runc compatibility")
	fs.Bool("no-new-keyring", false, "accepted for runc compatibility")
	preserve := fs.Int("preserve-fds", 0, "accepted for runc compatibility; must be 0")
	if err := fs.Parse(args); err != nil {
		return err
	}
	id, err := oneID(fs)
	if err != nil {
		return err
	}
	b, err := LoadBundle(*bundle)
	if err != nil {
		return err
	}
	g, err := b.OpenGuest()
	if err != nil {
		return err
	}
	defer g.Close()
	if g.ELF == nil {
		if Tendered(b.Spec.Annotations) {
			return fmt.Errorf("container %s has tender annotations but %s in its rootfs is no tender guest (an ELF with the Tender ABI note)", id, g.Path)
		}
		return rt.delegate()
	}
	if *preserve != 0 {
		return errors.New("create: --preserve-fds is not supported for tender guests")
	}
	// What create inherited above stdio (the shim's descriptors) must not
	// reach the container's process: whoever waits for a pipe to close
	// would wait for the container. Only for tender's containers: runc
	// gets them as they are, for its own --preserve-fds.
	if err := unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err != nil {
		return fmt.Errorf("create: close_range: %w", err)
	}
	opts, err := ParseAnnotations(b.Spec.Annotations)
	if err != nil {
		return err
	}
	img, err := loader.Parse(g.ELF, opts.MemMiB<<20)
	if err != nil {
		return fmt.Errorf("%s: %w", g.Path, err)
	}
	if err := opts.CheckMemory(img); err != nil {
		return fmt.Errorf("%s: %w", g.Path, err)
	}
	netns, err := networkNamespace(b.Spec)
	if err != nil {
		return err
	}
	var netDevice string
	switch {
	case img.Solo5 != nil && opts.Serves():
		// Refused here, not by tender-serve once the container started.
		return fmt.Errorf("%s is a Solo5 guest: it serves no function calls (no fn_next); run it with %s=run", g.Path, AnnotationMode)
	case len(img.Devices) > 1:
		return fmt.Errorf("%s declares %d network devices; a container gives a guest one, joined to the pod's %s", g.Path, len(img.Devices), podInterface)
	case len(img.Devices) == 1 && opts.Serves():
		return fmt.Errorf("%s declares a network device: functions take requests through fn_next; run network guests with %s=run", g.Path, AnnotationMode)
	case len(img.Devices) == 1 && netns.path == "":
		return fmt.Errorf("%s is a network guest: it needs the pod's network namespace (a linux.namespaces network entry with a path) to join its %s", g.Path, podInterface)
	case len(img.Devices) == 1:
		netDevice = img.Devices[0].Name
	}
	terminal := b.Spec.Process.Terminal
	if terminal && *consoleSocket == "" {
		return errors.New("create: process.terminal is set but no --console-socket was given")
	}
	r := &Record{
		ID:          id,
		Bundle:      b.Dir,
		Rootfs:      b.Rootfs,
		Created:     time.Now().UTC(),
		Annotations: b.Spec.Annotations,
		Args:        b.Spec.Process.Args,
		Name:        strings.TrimSuffix(filepath.Base(g.Path), ".elf"),
		Options:     opts,
		NetNS:       netns.path,
		NetDevice:   netDevice,
	}
	if netDevice != "" {
		r.TAP = tapName(id)
	}
	if err := os.MkdirAll(rt.root, 0o711); err != nil {
		return err
	}
	dir := stateDir(rt.root, id)
	if err := os.Mkdir(dir, 0o700); err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("container %s already exists", id)
		}
		return err
	}
	// While its lock is held, a container still creating (no PID
	// recorded) has its create at work; the kernel drops the lock when
	// create ends, however it ends.
	unlock, err := lockState(dir)
	if err != nil {
		os.RemoveAll(dir)
		return err
	}
	defer unlock()
	// From here on a failure removes everything create made.
	pid, attached := 0, false
	fail := func(err error) error {
		if pid > 0 {
			unix.Kill(pid, unix.SIGKILL)
		}
		if attached {
			inNetns(netns.path, detachPod)
		}
		os.RemoveAll(dir)
		return err
	}
	if err := writeRecord(rt.root, r); err != nil {
		return fail(err)
	}
	if err := unix.Mkfifo(filepath.Join(dir, fifoFile), 0o600); err != nil {
		return fail(fmt.Errorf("exec fifo: %w", err))
	}
	stdio := [3]*os.File{os.Stdin, os.Stdout, os.Stderr}
	var pty *console
	if terminal {
		if pty, err = newConsole(); err != nil {
			return fail(err)
		}
		defer pty.Close()
		stdio = [3]*os.File{pty.slave, pty.slave, pty.slave}
	}
	// The monitor process reads a byte from this pipe before it waits
	// for start; create writes it once the record and the pid file name
	// the process. Killed before that, create leaves a process nobody
	// knows of, which the pipe's EOF ends.
	recordedR, recordedW, err := os.Pipe()
	if err != nil {
		return fail(err)
	}
	defer recordedW.Close()
	cmd, err := monitorCmd(dir, g.File, recordedR, stdio, terminal)
	if err != nil {
		recordedR.Close()
		return fail(err)
	}
	err = startIn(cmd, netns, r, &attached)
	recordedR.Close()
	if err != nil {
		return fail(fmt.Errorf("start the monitor process: %w", err))
	}
	pid = cmd.Process.Pid
	cmd.Process.Release()
	if os.Getenv(testDieEnv) == "1" {
		fmt.Fprintf(rt.stderr, "tender-oci: %s: monitor process %d\n", testDieEnv, pid)
		unix.Kill(os.Getpid(), unix.SIGKILL)
	}
	p, err := readProc(pid)
	if err != nil {
		return fail(fmt.Errorf("monitor process %d: %w", pid, err))
	}
	r.Pid, r.StartTime = pid, p.startTime
	if terminal {
		if err := pty.send(*consoleSocket); err != nil {
			return fail(err)
		}
	}
	if err := writeRecord(rt.root, r); err != nil {
		return fail(err)
	}
	if *pidFile != "" {
		if err := writeAtomic(*pidFile, []byte(strconv.Itoa(pid))); err != nil {
			return fail(fmt.Errorf("pid file: %w", err))
		}
	}
	// EPIPE: the process died since (a kill once it was recorded): the
	// container is stopped, which state says, not failed to create.
	if _, err := recordedW.Write([]byte{0}); err != nil && !errors.Is(err, unix.EPIPE) {
		return fail(fmt.Errorf("monitor process %d: %w", pid, err))
	}
	return nil
}

// netNS is where the monitor process's network namespace comes from.
type netNS struct {
	// path is a namespace to join; "" with create false: the host's.
	path string
	// create: a new, empty namespace, which lives as long as the process.
	create bool
}

// networkNamespace reads linux.namespaces: a network entry with a path is
// joined, one without a path is created, no entry keeps the host's.
func networkNamespace(s *specs.Spec) (netNS, error) {
	if s.Linux == nil {
		return netNS{}, nil
	}
	for _, ns := range s.Linux.Namespaces {
		switch ns.Type {
		case specs.NetworkNamespace:
			return netNS{path: ns.Path, create: ns.Path == ""}, nil
		case specs.UserNamespace:
			return netNS{}, errors.New("user namespaces are not supported for tender guests")
		}
	}
	return netNS{}, nil
}

// monitorCmd is the container's process: tender-oci __monitor DIR, with the
// guest executable as descriptor 3 and the read end of create's pipe as 4.
func monitorCmd(dir string, guest, recorded *os.File, stdio [3]*os.File, terminal bool) (*exec.Cmd, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, monitorCommand, dir)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdio[0], stdio[1], stdio[2]
	cmd.ExtraFiles = []*os.File{guest, recorded}
	cmd.Dir = "/"
	// Its own session: signals to the caller's process group (a shell's
	// ^C to ctr) reach the container only through kill.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: terminal, Ctty: 0}
	return cmd, nil
}

// startIn starts cmd in the network namespace ns; for a network guest it
// first attaches the pod (attachPod), passes the TAP as descriptor 5 and
// gives the guest eth0's address on its command line.
func startIn(cmd *exec.Cmd, ns netNS, r *Record, attached *bool) error {
	if ns.create {
		cmd.SysProcAttr.Cloneflags |= syscall.CLONE_NEWNET
	}
	if ns.path == "" {
		return cmd.Start()
	}
	return inNetns(ns.path, func() error {
		if r.NetDevice != "" {
			pn, err := attachPod(r.ID)
			if err != nil {
				return err
			}
			*attached = true
			defer pn.tap.Close()
			cmd.ExtraFiles = append(cmd.ExtraFiles, pn.tap)
			r.NetArgs = pn.args
		}
		return cmd.Start()
	})
}
