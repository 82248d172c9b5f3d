// Package confine confines a monitor process with a seccomp filter once it
// has set up: after that it may make only the system calls its vCPU loops,
// devices, the Go runtime and (for tender serve) its HTTP server need, some
// of them only with certain arguments (KVM ioctls by request number, clone
// only for threads, tgkill only within the process, no executable mappings
// under KVM). docs/security.md lists each backend's calls and why.
//
// A forbidden call does not run: the filter raises SIGSYS, whose handler
// prints "tender: seccomp: forbidden system call N" on stderr and ends the
// process with status monitor.ExitSeccomp. The message is dropped rather
// than waited for when stderr is full. A SIGSYS sent by another process
// (kill -SYS) ends it the same way, as SIGSYS would by default, with
// "tender: seccomp: SIGSYS sent by process PID, not by the filter". A call
// through another architecture's entry (int $0x80) kills the process
// outright.
//
// The library never installs the filter itself; a program calls Install
// when its set-up is done:
//
//	host, err := monitor.NewHost(hc)
//	...
//	p := confine.ForHost(host)
//	p.NewGuests = true // a pool starts instances later
//	if err := confine.Install(p); err != nil { ... }
//
// Install applies to every thread of the process (SECCOMP_FILTER_FLAG_TSYNC)
// and to threads and processes started later, sets no_new_privs, and cannot
// be undone.
package confine

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"time"
	"unsafe"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/tendervm/tender/monitor"
)

// Policy says what a confined monitor process still does after Install.
type Policy struct {
	// Backend is the host's: monitor.BackendKVM or monitor.BackendProcess.
	Backend monitor.Backend
	// NewGuests: guests are still created after Install, as a pool does
	// for cold instances and for warm ones booted on demand. Without it,
	// only guests whose Run has begun may run (tender run installs the
	// filter from monitor.Config.Ready).
	NewGuests bool
	// Net: guests use network devices opened before Install.
	Net bool
	// Block: guests use block devices opened before Install.
	Block bool
	// Serve: the process serves HTTP on a listener opened before Install.
	Serve bool
}

// ForHost returns the policy of a process that runs guests on h and does
// nothing else; set the other fields for what it also does. It waits for
// h's background set-up first (Host.Settle), whose system calls the
// filter would refuse.
func ForHost(h *monitor.Host) Policy {
	h.Settle()
	return Policy{Backend: h.Backend()}
}

// Runs adds to p what the process needs to run vm: a Solo5 guest's poll
// (solo5_yield) waits with ppoll as a network guest's does, with a device or
// without.
func (p *Policy) Runs(vm *monitor.VM) { p.Net = p.Net || vm.Solo5() }

// Filter returns p's seccomp program for the process whose id is pid.
func (p Policy) Filter(pid int) ([]bpf.Instruction, error) {
	if p.Backend != monitor.BackendKVM && p.Backend != monitor.BackendProcess {
		return nil, fmt.Errorf("confine: backend %q: want %q or %q", p.Backend, monitor.BackendKVM, monitor.BackendProcess)
	}
	return program(p.Rules(pid))
}

// ErrUnsupported is returned (wrapped) by Install where the kernel cannot
// install the filter.
var ErrUnsupported = errors.New("confine: seccomp filters are not available")

// Install confines the calling process to p for the rest of its life: it
// installs the SIGSYS handler that reports forbidden calls, sets
// no_new_privs and installs p's filter on every thread.
func Install(p Policy) error {
	prog, err := Compile(p)
	if err != nil {
		return err
	}
	return prog.Install()
}

// Program is a policy's filter, compiled ahead of its installation, which
// a program can do while it prepares the guest: building it takes about
// 0.1 ms, in `tender run` a twentieth of its time.
type Program struct {
	filter []unix.SockFilter
}

// Compile builds p's filter for Install.
func Compile(p Policy) (*Program, error) {
	prog, err := p.Filter(os.Getpid())
	if err != nil {
		return nil, err
	}
	raw, err := bpf.Assemble(prog)
	if err != nil {
		return nil, fmt.Errorf("confine: %w", err)
	}
	filter := make([]unix.SockFilter, len(raw))
	for i, ins := range raw {
		filter[i] = unix.SockFilter{Code: ins.Op, Jt: ins.Jt, Jf: ins.Jf, K: ins.K}
	}
	return &Program{filter: filter}, nil
}

// Install confines the calling process to the program for the rest of its
// life, as the package function Install does; a nil Program installs
// nothing.
func (pr *Program) Install() error {
	if pr == nil {
		return nil
	}
	// no_new_privs is a thread's, and seccomp checks the calling thread's:
	// a goroutine moved to another thread between the two calls would
	// make the filter fail (EACCES) for a user without CAP_SYS_ADMIN.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	fprog := unix.SockFprog{Len: uint16(len(pr.filter)), Filter: &pr.filter[0]}
	// The Go runtime creates its network poller (epoll_create1, eventfd2)
	// on first need, a timer being one: have it now, while that is allowed.
	time.AfterFunc(time.Hour, func() {}).Stop()
	if err := installSIGSYS(); err != nil {
		return err
	}
	// Without CAP_SYS_ADMIN a filter requires no_new_privs; TSYNC gives it
	// to every thread along with the filter.
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("%w: PR_SET_NO_NEW_PRIVS: %w", ErrUnsupported, err)
	}
	r, _, e := unix.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_TSYNC,
		uintptr(unsafe.Pointer(&fprog)))
	runtime.KeepAlive(pr)
	switch {
	case e == unix.EINVAL || e == unix.ENOSYS:
		return fmt.Errorf("%w: seccomp: %w", ErrUnsupported, e)
	case e != 0:
		return fmt.Errorf("confine: seccomp: %w", e)
	case r != 0:
		// TSYNC names a thread that could not take the filter: one with
		// a filter of its own, which a process confined by tender has not.
		return fmt.Errorf("confine: seccomp: thread %d cannot take the filter", r)
	}
	return nil
}
