package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tendervm/tender/monitor"
	"github.com/tendervm/tender/monitor/kvm"
	"github.com/tendervm/tender/monitor/process"
)

// env is what the rows of one run share: the configuration, the tender
// backend and why KVM is missing, if it is.
type env struct {
	cfg     Config
	backend monitor.Backend // kvm or process; "" when the requested one is unusable
	kvmErr  error           // why KVM cannot be used, nil when it can
}

func newEnv(cfg Config) (*env, error) {
	e := &env{cfg: cfg}
	if sys, err := kvm.Open(""); err != nil {
		e.kvmErr = err
	} else {
		sys.Close()
	}
	switch cfg.Backend {
	case "", string(monitor.BackendAuto):
		e.backend = monitor.BackendKVM
		if e.kvmErr != nil {
			e.backend = monitor.BackendProcess
		}
	case string(monitor.BackendKVM):
		if e.kvmErr == nil {
			e.backend = monitor.BackendKVM
		}
	case string(monitor.BackendProcess):
		e.backend = monitor.BackendProcess
	default:
		return nil, fmt.Errorf("bench: unknown backend %q (want auto, kvm or process)", cfg.Backend)
	}
	return e, nil
}

// backendName names the backend of the tender rows for the report.
func (e *env) backendName() string {
	if e.backend == "" {
		return fmt.Sprintf("none (kvm requested: %v)", e.kvmErr)
	}
	return string(e.backend)
}

func (e *env) hostEcho() string { return filepath.Join(e.cfg.BinDir, "guest", "host", "fn_echo_host") }
func (e *env) nolibcEcho() string {
	return filepath.Join(e.cfg.BinDir, "guest", "host", "fn_echo_host_nolibc")
}
func (e *env) guestEcho() string { return filepath.Join(e.cfg.BinDir, "guest", "fn_echo.elf") }
func (e *env) tender() string    { return filepath.Join(e.cfg.BinDir, "tender") }
func (e *env) maxrss() string    { return filepath.Join(e.cfg.BinDir, "bench", "maxrss") }

// Namespace sets of the microcontainer rows.
const (
	microNS    = syscall.CLONE_NEWNS | syscall.CLONE_NEWPID | syscall.CLONE_NEWUTS | syscall.CLONE_NEWIPC
	microNSNet = microNS | syscall.CLONE_NEWNET
)

// rows lists the experiment in order: Linux processes, microcontainers,
// container runtimes, tender.
func (e *env) rows() []row {
	rows := []row{
		{key: "process", name: "process: static C echo (glibc)",
			notes: "fork+exec per request; static glibc binary",
			setup: e.processSetup(e.hostEcho)},
		{key: "process-nolibc", name: "process: C echo without libc",
			notes: "fork+exec per request; 8 KB, raw system calls",
			setup: e.processSetup(e.nolibcEcho)},
		{key: "microcontainer", name: "microcontainer: mnt+pid+uts+ipc ns, chroot",
			notes: "tender's Go code: clone with 4 new namespaces, chroot into a directory holding only the static echo",
			setup: e.microSetup(microNS)},
		{key: "microcontainer-net", name: "microcontainer + net ns",
			notes: "as microcontainer, plus a new network namespace",
			setup: e.microSetup(microNSNet)},
		{key: "crun-default", name: "crun, default config",
			notes: "crun run, full default-style config, cgroupfs; private mount ns without /sys/fs/cgroup/unified",
			setup: e.ociSetup("crun", true, true)},
		{key: "crun-minimal", name: "crun, minimal config",
			notes: "crun --cgroup-manager=disabled run, pid+mount ns, /proc and a /dev tmpfs; private mount ns without /sys/fs/cgroup/unified",
			setup: e.ociSetup("crun", false, true)},
		{key: "runc-default", name: "runc, default config",
			notes: "runc run, full default-style config, cgroupfs",
			setup: e.ociSetup("runc", true, false)},
		{key: "runc-minimal", name: "runc, minimal config",
			notes: "runc run, pid+mount ns, /proc and a /dev tmpfs (runc always uses cgroupfs)",
			setup: e.ociSetup("runc", false, false)},
	}
	rows = append(rows, e.tenderRows()...)
	return rows
}

// tenderRows are the rows of the chosen backend, then KVM's unavailable
// rows when the process backend stands in for a missing KVM.
func (e *env) tenderRows() []row {
	mk := func(b monitor.Backend, suffix string) []row {
		fresh := row{key: "tender-fresh" + suffix, name: fmt.Sprintf("tender fresh (%s backend)", b),
			notes: "monitor.Pool Fresh in-process: booted instances put back into their snapshot after each request",
			setup: e.poolSetup(b, monitor.Fresh)}
		if b == monitor.BackendProcess {
			if err := process.CanTrack(); err != nil {
				fresh.unavailable = "unavailable: the process backend needs Linux 6.7 for fresh instances: " + err.Error()
			}
		}
		return []row{
			{key: "tender-invoke-cold" + suffix, name: fmt.Sprintf("tender cold, whole process (%s backend)", b),
				notes: "bin/tender invoke -mode=cold per request: process start + VM boot + one invocation",
				setup: e.invokeSetup(b)},
			{key: "tender-cold" + suffix, name: fmt.Sprintf("tender cold (%s backend)", b),
				notes: "monitor.Pool Cold in-process: a fresh VM per request",
				setup: e.poolSetup(b, monitor.Cold)},
			{key: "tender-warm" + suffix, name: fmt.Sprintf("tender warm (%s backend)", b),
				notes: "monitor.Pool Warm in-process: booted instances, one exit per request",
				setup: e.poolSetup(b, monitor.Warm)},
			fresh,
		}
	}
	switch {
	case e.backend == "":
		rows := mk(monitor.BackendKVM, "")
		for i := range rows {
			rows[i].unavailable = fmt.Sprintf("unavailable: KVM: %v", e.kvmErr)
		}
		return rows
	case e.backend == monitor.BackendProcess && e.kvmErr != nil:
		rows := mk(monitor.BackendProcess, "")
		for _, r := range mk(monitor.BackendKVM, "-kvm") {
			r.unavailable = fmt.Sprintf("unavailable: KVM: %v", e.kvmErr)
			rows = append(rows, r)
		}
		return rows
	default:
		return mk(e.backend, "")
	}
}

// unavailable builds a row's reason for having no result.
func unavailable(format string, args ...any) error {
	return fmt.Errorf("unavailable: "+format, args...)
}

// needFile fails with a reason when a file `make all` builds is missing.
func needFile(path string) error {
	if _, err := os.Stat(path); err != nil {
		return unavailable("%s missing (`make all` builds it)", path)
	}
	return nil
}

// procRunner starts a program per request with the payload on its standard
// input and checks that its standard output is the payload.
type procRunner struct {
	path    string
	args    []string
	dir     string                      // working directory, after any chroot
	attr    func() *syscall.SysProcAttr // nil: none
	payload []byte
	// argsFor, if not nil, gives the arguments of each request.
	argsFor func() []string
	// after, if not nil, runs after each request with its arguments and
	// error.
	after func(args []string, err error)
	// enterFn, if not nil, prepares a requester goroutine.
	enterFn func() error
	cleanup func() error

	// maxrss is the launcher that reports a request's peak RSS; memPath
	// and memAttr, when set, replace its path and path's attributes for
	// the memory runs (a chroot holding the launcher too).
	maxrss  string
	memPath string
	memAttr func() *syscall.SysProcAttr
	memRuns int

	// retryEmpty: a request whose program exits 0 without writing
	// anything is made once more (with new arguments), and counted in
	// empty. crun 1.8.1 does that now and then when several runs of one
	// bundle start at once; the row reports how often. latency times
	// another request in place of one made again (retried).
	retryEmpty bool
	empty      atomic.Int64
}

// errEmptyReply is a request whose program exited 0 without output.
var errEmptyReply = errors.New("exit status 0 without output")

func (p *procRunner) enter() error {
	if p.enterFn != nil {
		return p.enterFn()
	}
	return nil
}

// stderrMax bounds the standard error kept from a failed request.
const stderrMax = 2048

// PayloadMax bounds Config.Payload: requests and replies pass through pipes
// that are read only after the process exits, so they must fit in a pipe's
// buffer.
const PayloadMax = 4096

func (p *procRunner) once(ctx context.Context) error {
	var attr *syscall.SysProcAttr
	if p.attr != nil {
		attr = p.attr()
	}
	return p.request(func(args []string) error { return p.spawn(ctx, p.path, args, attr, nil) })
}

// request makes one request with run, which gets its arguments, and calls
// after; with retryEmpty, a run that exits 0 without output is made once
// more with new arguments (e.g. a new container ID).
func (p *procRunner) request(run func(args []string) error) error {
	try := func() error {
		args := p.args
		if p.argsFor != nil {
			args = p.argsFor()
		}
		err := run(args)
		if p.after != nil {
			p.after(args, err)
		}
		return err
	}
	err := try()
	if p.retryEmpty && errors.Is(err, errEmptyReply) {
		p.empty.Add(1)
		err = try()
	}
	return err
}

// retried is the number of requests made again so far.
func (p *procRunner) retried() int64 { return p.empty.Load() }

// anomalies says what the row's notes should add about its requests.
func (p *procRunner) anomalies() string {
	if n := p.empty.Load(); n > 0 {
		return fmt.Sprintf("runs that exited 0 without output, made again: %d", n)
	}
	return ""
}

// spawn runs path with args once, the payload on its standard input, and
// checks its standard output. Every stream is a pipe handed to the child
// directly and read after it exits: no copying goroutines in the measured
// time.
func (p *procRunner) spawn(ctx context.Context, path string, args []string, attr *syscall.SysProcAttr, extra []*os.File) error {
	var files []*os.File
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	pipe := func() (r, w *os.File, err error) {
		r, w, err = os.Pipe()
		if err == nil {
			files = append(files, r, w)
		}
		return r, w, err
	}
	inR, inW, err := pipe()
	if err != nil {
		return err
	}
	outR, outW, err := pipe()
	if err != nil {
		return err
	}
	errR, errW, err := pipe()
	if err != nil {
		return err
	}
	if _, err := inW.Write(p.payload); err != nil {
		return err
	}
	inW.Close()
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Dir = p.dir
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, errW
	cmd.ExtraFiles = extra
	cmd.SysProcAttr = attr
	if err := cmd.Start(); err != nil {
		return err
	}
	inR.Close()
	outW.Close()
	errW.Close()
	err = cmd.Wait()
	out := drain(outR, len(p.payload)+stderrMax)
	if err == nil && len(out) == 0 && len(p.payload) > 0 {
		err = errEmptyReply
	} else if err == nil && !bytes.Equal(out, p.payload) {
		err = fmt.Errorf("reply %q, want %q", trim(out), p.payload)
	}
	if err != nil {
		if msg := bytes.TrimSpace(drain(errR, stderrMax)); len(msg) > 0 {
			return fmt.Errorf("%s: %w: %s", filepath.Base(path), err, trim(msg))
		}
		return fmt.Errorf("%s: %w", filepath.Base(path), err)
	}
	return nil
}

// drain reads what an exited process left in a pipe, up to n bytes, without
// waiting for writers it may have passed the pipe on to.
func drain(r *os.File, n int) []byte {
	r.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	b, _ := io.ReadAll(io.LimitReader(r, int64(n)))
	return b
}

// memoryRuns is the number of requests run through the launcher for the
// memory column.
const memoryRuns = 5

// memory runs a few requests through bin/bench/maxrss and returns the median
// of the peak RSS it reports.
func (p *procRunner) memory(ctx context.Context) (float64, string, error) {
	if err := needFile(p.maxrss); err != nil {
		return 0, "", err
	}
	launcher, attr := p.maxrss, p.attr
	if p.memPath != "" {
		launcher, attr = p.memPath, p.memAttr
	}
	var kibs []int64
	for range max(p.memRuns, memoryRuns) {
		var kib int64
		err := p.request(func(args []string) error {
			r, w, err := os.Pipe()
			if err != nil {
				return err
			}
			defer r.Close()
			var sa *syscall.SysProcAttr
			if attr != nil {
				sa = attr()
			}
			rctx, cancel := context.WithTimeout(ctx, requestTimeout)
			err = p.spawn(rctx, launcher, append([]string{"3", p.path}, args...), sa, []*os.File{w})
			cancel()
			w.Close()
			line := drain(r, 64)
			if err != nil {
				return err
			}
			if kib, err = strconv.ParseInt(string(bytes.TrimSpace(line)), 10, 64); err != nil {
				return fmt.Errorf("maxrss reported %q", line)
			}
			return nil
		})
		if err != nil {
			return 0, "", err
		}
		kibs = append(kibs, kib)
	}
	return median(kibs), fmt.Sprintf("median of %d requests of ru_maxrss from wait4, in a tiny launcher that forks the request's process: the largest peak RSS among that process and the descendants it waited for", len(kibs)), nil
}

func (p *procRunner) close() error {
	if p.cleanup != nil {
		return p.cleanup()
	}
	return nil
}

func trim(b []byte) string {
	const n = 300
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}

func (e *env) processSetup(path func() string) func(context.Context) (runner, error) {
	return func(context.Context) (runner, error) {
		if err := needFile(path()); err != nil {
			return nil, err
		}
		return &procRunner{path: path(), payload: e.cfg.Payload, maxrss: e.maxrss()}, nil
	}
}

// microSetup makes a directory holding only the static echo and runs it per
// request in new namespaces, chrooted there: a container without a runtime.
func (e *env) microSetup(flags uintptr) func(context.Context) (runner, error) {
	return func(context.Context) (runner, error) {
		if err := needFile(e.hostEcho()); err != nil {
			return nil, err
		}
		if os.Geteuid() != 0 {
			return nil, unavailable("new namespaces and chroot need root")
		}
		dir, err := os.MkdirTemp("", "tender-bench-root-")
		if err != nil {
			return nil, err
		}
		// root holds only the echo; memRoot the echo and the launcher that
		// reports its peak RSS, for the memory runs.
		root, memRoot := filepath.Join(dir, "root"), filepath.Join(dir, "memroot")
		for _, c := range []struct{ src, dst string }{
			{e.hostEcho(), filepath.Join(root, "echo")},
			{e.hostEcho(), filepath.Join(memRoot, "echo")},
			{e.maxrss(), filepath.Join(memRoot, "maxrss")},
		} {
			err := os.MkdirAll(filepath.Dir(c.dst), 0o755)
			if err == nil {
				err = copyFile(c.src, c.dst, 0o755)
			}
			if err != nil && c.src != e.maxrss() { // without it, memory is not measured
				os.RemoveAll(dir)
				return nil, err
			}
		}
		return &procRunner{
			path:    "/echo", // exec'd after the chroot
			dir:     "/",
			payload: e.cfg.Payload,
			attr: func() *syscall.SysProcAttr {
				return &syscall.SysProcAttr{Cloneflags: flags, Chroot: root}
			},
			maxrss:  e.maxrss(),
			memPath: "/maxrss",
			memAttr: func() *syscall.SysProcAttr {
				return &syscall.SysProcAttr{Cloneflags: flags, Chroot: memRoot}
			},
			cleanup: func() error { return os.RemoveAll(dir) },
		}, nil
	}
}

// copyFile copies src to a new file dst with the given mode.
func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// invokeSetup runs `tender invoke -mode=cold` per request.
func (e *env) invokeSetup(b monitor.Backend) func(context.Context) (runner, error) {
	return func(context.Context) (runner, error) {
		for _, f := range []string{e.tender(), e.guestEcho()} {
			if err := needFile(f); err != nil {
				return nil, err
			}
		}
		return &procRunner{
			path:    e.tender(),
			args:    []string{"invoke", "-backend=" + string(b), "-mode=cold", e.guestEcho()},
			payload: e.cfg.Payload,
			maxrss:  e.maxrss(),
		}, nil
	}
}
