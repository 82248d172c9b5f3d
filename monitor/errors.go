package monitor

import (
	"context"
	"errors"
	"fmt"
	"golang.org/x/sys/unix"
	"strconv"
	"strings"
	"syscall"
	"unicode"
	"unicode/utf8"

	"github.com/tendervm/tender/monitor/vcpu"
	"github.com/tendervm/tender/monitor/x86"
)

// Process exit codes of `tender run` for outcomes other than a guest exit.
// A guest's own status is 0..hypercall.ExitStatusMax (239).
const (
	// ExitAborted: the guest called abort.
	ExitAborted = 240
	// ExitCrashed: the guest raised a CPU exception, triple-faulted, or
	// otherwise stopped in a way the hypervisor reported (FaultError,
	// CrashError).
	ExitCrashed = 241
	// ExitProtocol: the guest broke the hypercall protocol (ProtocolError).
	ExitProtocol = 242
	// ExitTimeout: the run was stopped by its deadline or cancelled
	// (StoppedError).
	ExitTimeout = 243
	// ExitSeccomp: the monitor attempted a system call its seccomp filter
	// forbids (package confine); the filter's SIGSYS handler ended the
	// process, printing "tender: seccomp: forbidden system call N".
	ExitSeccomp = 244
	// ExitUsage: the command line was wrong; nothing ran.
	ExitUsage = 254
	// ExitMonitor: the monitor could not run the guest (bad ELF, no KVM,
	// host failure), or any other error: a ConsoleError, ErrSaturated,
	// ErrClosed.
	ExitMonitor = 255
)

// ExitCode maps the outcome of a run to a process exit code: the guest's
// status when err is nil, else one of the Exit* codes.
func ExitCode(status int, err error) int {
	var (
		fe *FaultError
		ce *CrashError
		ae *AbortError
		pe *ProtocolError
		se *StoppedError
	)
	switch {
	case err == nil:
		return status
	case errors.As(err, &ae):
		return ExitAborted
	case errors.As(err, &fe), errors.As(err, &ce):
		return ExitCrashed
	case errors.As(err, &pe):
		return ExitProtocol
	case errors.As(err, &se):
		return ExitTimeout
	}
	return ExitMonitor
}

// VectorName names an x86 exception vector, e.g. "#PF page fault".
func VectorName(v uint8) string { return x86.VectorName(v) }

// FaultError is a CPU exception raised by the guest.
type FaultError struct {
	Vector       uint8
	ErrorCode    uint64
	HasErrorCode bool
	// RIP is the address of the faulting instruction.
	RIP uint64
	// CR2 is the address a page fault (vector 14) was about.
	CR2 uint64
}

// Error implements error.
func (e *FaultError) Error() string {
	s := fmt.Sprintf("guest fault: %s at rip %#x", VectorName(e.Vector), e.RIP)
	if e.Vector == x86.VecPF {
		s += fmt.Sprintf(", address %#x", e.CR2)
		if e.HasErrorCode {
			s += " (" + pageFaultCause(e.ErrorCode) + ")"
		}
	} else if e.HasErrorCode {
		s += fmt.Sprintf(", error code %#x", e.ErrorCode)
	}
	return s
}

func pageFaultCause(code uint64) string {
	what := "read"
	switch {
	case code&0x10 != 0:
		what = "instruction fetch"
	case code&0x2 != 0:
		what = "write"
	}
	if code&0x1 != 0 {
		return what + " denied by page permissions"
	}
	return what + " of an unmapped page"
}

// CrashError is a guest stop reported by the hypervisor other than an
// exception: triple fault, emulation failure, failed entry, access to an
// address with no memory, a host system call attempt, hlt.
type CrashError struct {
	Kind vcpu.ExitKind
	// RIP is the guest instruction pointer, when known.
	RIP uint64
	// Detail says what happened, in words.
	Detail string
}

// Error implements error.
func (e *CrashError) Error() string {
	s := "guest crashed: " + e.Detail
	if e.RIP != 0 {
		s += fmt.Sprintf(" at rip %#x", e.RIP)
	}
	return s
}

// AbortError is a guest that called abort.
type AbortError struct {
	// Message is the guest's message, at most hypercall.AbortMsgMax bytes.
	Message string
}

// Error implements error. The message is escaped (EscapeGuestText), so
// what a guest wrote cannot reach an operator's terminal or log raw.
func (e *AbortError) Error() string { return "guest aborted: " + EscapeGuestText(e.Message) }

// EscapeGuestText makes text that came from a guest safe to print in a
// message or log line: printable characters stay as they are, backslashes
// are doubled, and control characters (newlines and escape sequences
// included) and invalid UTF-8 are written as Go escapes (\n, \x1b).
func EscapeGuestText(s string) string {
	clean := true
	for _, r := range s {
		if r == '\\' || r == utf8.RuneError || !unicode.IsPrint(r) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	q := strconv.Quote(s)
	// Quote also escapes the double quotes it adds: undo that for ours.
	return strings.ReplaceAll(q[1:len(q)-1], `\"`, `"`)
}

// ProtocolError is a guest that broke the hypercall protocol: an unknown
// hypercall or port, an argument outside guest memory, a length over a limit.
// The run ends before the monitor acts on the call.
type ProtocolError struct {
	// Hypercall names the call ("" for port I/O that is no hypercall).
	Hypercall string
	// Reason says what was wrong.
	Reason string
}

// Error implements error.
func (e *ProtocolError) Error() string {
	if e.Hypercall == "" {
		return "guest protocol violation: " + e.Reason
	}
	return "guest protocol violation in " + e.Hypercall + ": " + e.Reason
}

// ConsoleError is a run whose console failed (Config.ConsoleRequired): its
// output from there on was lost.
type ConsoleError struct {
	// Err is the failed Write's error (EPIPE: the reader has gone).
	Err error
	// Stopped says the guest was still running and was stopped for it.
	Stopped bool
}

// Error implements error.
func (e *ConsoleError) Error() string {
	if e.Stopped {
		return "console: " + e.Err.Error() + " (guest stopped)"
	}
	return "console: " + e.Err.Error()
}

// Unwrap returns the Write's error.
func (e *ConsoleError) Unwrap() error { return e.Err }

// StoppedError is a run stopped from outside: its context was cancelled or
// its deadline passed. errors.Is(err, context.DeadlineExceeded) tells a
// timeout.
type StoppedError struct {
	// Cause is the context's error (context.Canceled or
	// context.DeadlineExceeded).
	Cause error
	// Reason is the context's cause when it says more than Cause (a
	// context cancelled with context.WithCancelCause), else nil.
	Reason error
}

// stopped describes a run stopped because ctx is done.
func stopped(ctx context.Context) *StoppedError {
	e := &StoppedError{Cause: ctx.Err()}
	if e.Cause == nil {
		e.Cause = context.Canceled
	}
	if c := context.Cause(ctx); c != nil && c != e.Cause {
		e.Reason = c
	}
	return e
}

// Error implements error.
func (e *StoppedError) Error() string {
	switch {
	case e.Reason != nil:
		return "guest stopped: " + e.Reason.Error()
	case errors.Is(e.Cause, context.DeadlineExceeded):
		return "guest stopped: timeout"
	}
	return "guest stopped: " + e.Cause.Error()
}

// Unwrap returns the context's error and its cause.
func (e *StoppedError) Unwrap() []error {
	if e.Reason != nil {
		return []error{e.Cause, e.Reason}
	}
	return []error{e.Cause}
}

// errLostInReset marks a Fresh instance lost while its backend put it back
// into its snapshot for the next call (vcpu.Exit.InReset): a request can
// leave its instance in a state the reset fails in (the process backend's
// trap flag), and the next call, perhaps another tenant's, is not to pay
// for it. Pool.Invoke hands such a call to a new instance, once. The
// backend cannot always tell a failed reset from the next call's guest
// failing in the same way before its first hypercall; such a call runs
// twice, with nothing seen outside the guest before a hypercall.
var errLostInReset = errors.New("monitor: fresh instance lost while being reset to its snapshot")

// lostInReset is the error of an exit InReset: errLostInReset with what
// the guest did.
func lostInReset(x vcpu.Exit) error {
	var err error = &FaultError{Vector: x.Vector, ErrorCode: x.ErrorCode, HasErrorCode: x.HasErrorCode, RIP: x.RIP, CR2: x.CR2}
	if x.Kind != vcpu.ExitFault {
		err = crash(x)
	}
	return fmt.Errorf("%w: %w", errLostInReset, err)
}

// crash turns a non-hypercall, non-fault exit into a CrashError or
// ProtocolError.
func crash(x vcpu.Exit) error {
	switch x.Kind {
	case vcpu.ExitBadIO:
		dir := "in"
		if x.Out {
			dir = "out"
		}
		if x.Str {
			dir += "s" // ins, outs: string I/O is never a hypercall
		}
		return &ProtocolError{Reason: fmt.Sprintf("%d-byte %s on port %#x is not a hypercall", x.Size, dir, x.Port)}
	case vcpu.ExitTripleFault:
		if x.Reason != 0 { // the process backend: the signal the guest process died of
			return &CrashError{Kind: x.Kind, RIP: x.RIP, Detail: fmt.Sprintf("triple fault (a fault while delivering a fault: the guest process died of %s)", unix.SignalName(syscall.Signal(x.Reason)))}
		}
		return &CrashError{Kind: x.Kind, RIP: x.RIP, Detail: "triple fault (a fault while delivering a fault)"}
	case vcpu.ExitMMIO:
		op := "read of"
		if x.Write {
			op = "write to"
		}
		return &CrashError{Kind: x.Kind, RIP: x.RIP, Detail: fmt.Sprintf("%s guest-physical %#x, which is read-only or has no memory", op, x.Addr)}
	case vcpu.ExitInternal:
		return &CrashError{Kind: x.Kind, RIP: x.RIP, Detail: fmt.Sprintf("hypervisor internal error, suberror %d (1: the instruction emulator failed)", x.Reason)}
	case vcpu.ExitFailEntry:
		return &CrashError{Kind: x.Kind, Detail: fmt.Sprintf("hardware refused to enter the guest, reason %#x", x.Reason)}
	case vcpu.ExitHalt:
		return &CrashError{Kind: x.Kind, RIP: x.RIP, Detail: "guest halted"}
	case vcpu.ExitSyscall:
		if x.Reason == vcpu.SyscallUnknown {
			return &CrashError{Kind: x.Kind, Detail: "guest attempted a host system call (one the monitor's seccomp filter forbids, which stopped it)"}
		}
		return &CrashError{Kind: x.Kind, RIP: x.RIP, Detail: fmt.Sprintf("guest attempted host system call %d", x.Reason)}
	}
	return &CrashError{Kind: x.Kind, RIP: x.RIP, Detail: fmt.Sprintf("unexpected exit %s, reason %d", x.Kind, x.Reason)}
}
