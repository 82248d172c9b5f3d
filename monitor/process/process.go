// Package process is the process backend of the monitor: it runs a guest as an
// ordinary Linux process confined by seccomp, for hosts without /dev/kvm.
// ptrace(2) only sets the process up; seccomp user notification serves it.
//
// # How it works
//
// A Spawner writes a tiny static executable (one read-only, executable page
// at 0x7e0000000000, built in memory; see stub.go) to a memfd and starts it
// traced, with the guest memfd as its only open file. Stopped right after
// execve, the process gets the guest's region table in a writable page of the
// stub (process_vm_writev) and runs the stub's set-up routine, which in one
// stop maps each region of the guest memfd at its guest-physical address (so
// guest-virtual = guest-physical = offset in guest memory, and the monitor's
// guestmem view shares the same pages), maps a signal stack, closes every
// file descriptor, installs the stub's signal handler for the fault signals,
// blocks every other signal, sets no_new_privs and installs a seccomp filter
// with a notification listener. The monitor takes the listener with
// pidfd_getfd, makes the process close its copy through a `syscall; int3`
// gadget, sets the registers to the guest's initial state and detaches: the
// guest runs.
//
// At CPL 3 without I/O permission, `outl %eax,%dx` raises #GP, which Linux
// turns into SIGSEGV. Every exception of the guest enters the stub's handler,
// which reports the signal, trap number, error code, fault address, RIP, RAX
// and RDX in one system call; the filter turns it into a notification that
// Run receives. Run decodes the instruction at RIP from guest memory and
// reports a hypercall, other port I/O, or a CPU fault. The answer to the
// notification tells the handler how far to advance RIP (past a served
// hypercall, or not at all), and the guest resumes through rt_sigreturn. A
// hypercall is thus one notification round trip, with no ptrace stop and no
// thread of the monitor's tied to the guest.
//
// # Threading
//
// Linux ties a tracee to the thread that traces it, and the parent-death
// signal to the thread that forked it; a Go thread ends when a goroutine
// locked to it exits. So guests are started and set up on the Spawner's own
// thread, which stays locked until Spawner.Close. After New, Run may be
// called from any goroutine, one call at a time, and Kick from any goroutine
// at any time. If the monitor dies, the kernel kills its guests
// (PR_SET_PDEATHSIG), so a guest never outlives its monitor.
//
// # Differences from the KVM backend
//
//   - The guest starts running in New, and waits at its first exit for Run.
//   - ExitHypercall carries RIP (the address of the out instruction).
//   - #BP (vector 3) and #DB (vector 1) report RIP after the instruction, as
//     the CPU pushes it. Vectors and error codes are those the kernel
//     recorded for the signal.
//   - Port I/O other than a hypercall is ExitBadIO and is not performed;
//     running again re-executes the instruction. Likewise after ExitFault
//     the faulting instruction runs again (trap-like ones continue after it).
//   - ExitSyscall (the guest executed syscall, int $0x80, sysenter or a
//     vsyscall) ends the guest: Reason is the system call number as seen by
//     seccomp (an i386 number for int $0x80), or EAX for a sysenter the CPU
//     refused, and RIP the address of the instruction.
//   - A guest process started after the monitor confined itself (package
//     confine) inherits the monitor's filter: a system call that filter
//     forbids kills the process, reported as ExitSyscall with Reason
//     vcpu.SyscallUnknown.
//   - Kick kills the guest process; Run then returns ExitKicked, now and on
//     every later call. A death by a fault signal (SIGSEGV, SIGBUS, SIGILL,
//     SIGFPE, SIGTRAP: a fault the handler could not take, as the guest
//     had blocked the signal or moved its signal stack) is
//     ExitTripleFault with Reason the signal; any other death is
//     ExitUnknown with Reason the raw wait status; later Runs fail. A guest
//     process dumps no core (its RLIMIT_CORE is 1 byte: noCoreDumps).
//   - Signals sent to the guest by other processes are discarded (fault
//     signals) or stay blocked for ever (the others); only SIGKILL ends it,
//     and SIGSTOP pauses it.
//   - The guest's address space also holds the stub page, the signal stack
//     and the vsyscall page (and the vDSO where the kernel placed it below
//     the stub). The initial stack execve built for the stub is unmapped at
//     set-up, so the only writable memory besides the guest's is the signal
//     stack, which a fresh reset restores (a fresh guest also has its
//     template, read-only from its first reset). The guest can read them,
//     write the signal stack and run the stub's code but gains nothing: the
//     only system calls that pass the filter are rt_sigreturn from the
//     stub's restorer (with which it can set its own registers, signal mask
//     and signal stack), close from its gadget (there is nothing left to
//     close), sigaltstack of the stub's own signal stack and mprotect of the
//     template to read-only; whatever it makes the handler report is a
//     hypercall or fault it could have made itself; and a fresh reset uses
//     none of its registers (handlerCode).
//   - The guest sees the host's TSC, CPUID and FPU state as a process does;
//     rdtsc does not exit.
//   - The process needs Linux 5.9 or later (close_range; from 6.6 the kernel
//     switches to the waiting side of a notification directly, which makes
//     exits cheaper), /proc mounted, and guest regions not below
//     vm.mmap_min_addr unless the monitor has CAP_SYS_RAWIO.
package process

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/tendervm/tender/hypercall"
	"github.com/tendervm/tender/monitor/guestmem"
	"github.com/tendervm/tender/monitor/vcpu"
)

const pageSize = hypercall.PageSize

// File descriptors of the guest process at execve.
const (
	guestFD = 3 // the guest memfd
	stubFD  = 4 // the stub executable, execed as /proc/self/fd/4
)

// rflagsInit is the guest's initial RFLAGS: the reserved bit 1 and IF.
const rflagsInit = 0x202

// VCPU runs one guest in a process of its own. It implements vcpu.VCPU.
type VCPU struct {
	mem     *guestmem.Memory
	regions []vcpu.Region // the guest's regions, sorted
	pid     int           // the guest process

	spawner *Spawner // which started it

	mu     sync.Mutex // orders Kick against Close
	pidfd  int        // the guest process's pidfd, or -1; guarded by mu
	closed bool       // guarded by mu

	kicked atomic.Bool
	// emulate: the guest's privileged set-up instructions are emulated
	// (vcpu.Boot.EmulatePriv; priv.go).
	emulate bool

	// The fields below belong to the goroutine calling New, Run or Close.
	listener int             // the seccomp notification descriptor, or -1
	initRegs unix.PtraceRegs // the process's registers at execve, for its selectors
	notif    seccompNotif    // the notification being served
	resp     seccompResp     // its answer
	pending  bool            // notif awaits its answer
	// recvWakes says a blocked receive returns when the process dies
	// (Linux 6.11, exitReleasesFilter); without it, receive polls first.
	recvWakes bool
	skip      uint64 // the answer: bytes to advance RIP by (a served hypercall)
	// withdrawn is the last notification whose answer found it withdrawn
	// (hasWithdrawn), and withdrawnSkip that answer: see Run.
	withdrawn     seccompNotif
	withdrawnSkip uint64
	hasWithdrawn  bool
	ended         error // why Run can no longer run the guest, or nil
	reaped        bool  // the process has been waited for
	// track finds the pages the guest wrote (Fresh instances; track.go),
	// or nil.
	track *tracker
	// tmpl is the State whose template the process holds, and sealed says
	// a reset has made it read-only (answerSeal).
	tmpl   *State
	sealed bool
	// resetting: the last answer was a reset, and no hypercall has shown
	// the guest back in its own code since (vcpu.Exit.InReset).
	resetting bool
}

var _ vcpu.VCPU = (*VCPU)(nil)

// New starts a process that runs the guest described by boot in mem, from
// the spawner's thread. mem must come from guestmem.NewShared: the process
// maps its memfd. The guest starts at once and runs until its first exit,
// where it waits for Run.
func New(s *Spawner, mem *guestmem.Memory, boot vcpu.Boot) (*VCPU, error) {
	return s.start(mem, boot, false)
}

// Kick makes the current Run, or the next one, return ExitKicked, and every
// Run after it. It kills the guest process, so the guest cannot be resumed.
// It is safe to call from any goroutine at any time, also after Close.
func (v *VCPU) Kick() {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.kicked.Store(true)
	if !v.closed && v.pidfd >= 0 {
		// A pidfd names this process even after it has been reaped and its
		// pid reused; signalling a dead one fails harmlessly with ESRCH.
		_ = unix.PidfdSendSignal(v.pidfd, unix.SIGKILL, nil, 0)
	}
}

// Close kills and reaps the guest process and releases its descriptors. It is
// idempotent; Run fails after it.
func (v *VCPU) Close() error {
	v.mu.Lock()
	if v.closed {
		v.mu.Unlock()
		return nil
	}
	v.closed = true
	v.mu.Unlock()
	if v.spawner != nil {
		v.spawner.forget(v)
	}

	var errs []error
	if v.pid > 0 && !v.reaped {
		// Not yet reaped, so the pid is still this process.
		if err := unix.Kill(v.pid, unix.SIGKILL); err != nil && err != unix.ESRCH {
			errs = append(errs, fmt.Errorf("process: kill the guest process: %w", err))
		}
		for !v.reaped {
			if _, err := v.wait(); err != nil {
				if !v.reaped {
					errs = append(errs, err)
				}
				break
			}
		}
	}
	if err := v.track.close(); err != nil {
		errs = append(errs, fmt.Errorf("process: close the pagemap: %w", err))
	}
	if v.listener >= 0 {
		if err := unix.Close(v.listener); err != nil {
			errs = append(errs, fmt.Errorf("process: close the seccomp listener: %w", err))
		}
		v.listener = -1
	}
	v.mu.Lock()
	if v.pidfd >= 0 {
		if err := unix.Close(v.pidfd); err != nil {
			errs = append(errs, fmt.Errorf("process: close pidfd: %w", err))
		}
		v.pidfd = -1
	}
	v.mu.Unlock()
	v.ended = errors.New("process: vCPU is closed")
	return errors.Join(errs...)
}
