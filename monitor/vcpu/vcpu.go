// Package vcpu defines what every execution backend of the monitor provides: a
// virtual CPU that runs a loaded guest until the next exit the monitor must
// handle, and the typed description of that exit. The KVM backend
// (monitor/kvm) and the process backend (monitor/process) implement it; the
// hypercall handlers in package monitor never see which one runs the guest.
package vcpu

import "fmt"

// Perm is a set of page permissions for the guest at CPL 3.
type Perm uint8

// Page permissions.
const (
	Read  Perm = 1 << iota // readable by the guest
	Write                  // writable by the guest
	Exec                   // executable by the guest
)

// String implements fmt.Stringer.
func (p Perm) String() string {
	b := []byte("---")
	if p&Read != 0 {
		b[0] = 'r'
	}
	if p&Write != 0 {
		b[1] = 'w'
	}
	if p&Exec != 0 {
		b[2] = 'x'
	}
	return string(b)
}

// Region is a page-aligned range of guest-physical memory the guest may use,
// identity-mapped at the same virtual address with permissions Perm. Memory
// outside every region is invisible to the guest.
type Region struct {
	Addr, Size uint64
	Perm       Perm
}

// Boot is the guest's initial state, which the monitor derives from the ELF
// image and hands to a backend.
type Boot struct {
	// Regions are the guest's mappings, sorted by address and disjoint.
	Regions []Region
	// Entry is the initial instruction pointer.
	Entry uint64
	// StackTop is the initial stack pointer.
	StackTop uint64
	// BootInfo is the address passed in RDI.
	BootInfo uint64
	// EmulatePriv says the guest is a Solo5 guest: the privileged
	// instructions of its runtime (x86.DecodePriv) are emulated where they
	// trap, hlt ends the run with ExitHalt, and any other privileged
	// instruction is a fault as for every guest.
	EmulatePriv bool
	// Snapshot says the guest will be snapshot and reset (a Fresh
	// instance): a backend that must prepare for it at set-up does (the
	// process backend tracks the guest process's writes).
	Snapshot bool
	// Start, when set, is called by a backend whose guest runs as soon as
	// it exists (the process backend) once the guest is set up, just
	// before its first instruction can run: the last moment to write what
	// the guest reads at boot. An error fails the start.
	Start func() error
}

// ExitKind says why the guest stopped.
type ExitKind uint8

// Exit kinds. The zero value is never returned.
const (
	// ExitHypercall: the guest issued hypercall Nr with argument address Arg.
	ExitHypercall ExitKind = iota + 1
	// ExitFault: the guest raised a CPU exception it cannot handle.
	ExitFault
	// ExitTripleFault: the vCPU shut down (a fault while delivering a fault).
	ExitTripleFault
	// ExitBadIO: port I/O that is not a hypercall.
	ExitBadIO
	// ExitMMIO: an access to a guest-physical address with no memory behind
	// it, or a write to memory the host mapped read-only.
	ExitMMIO
	// ExitInternal: the hypervisor could not run the guest (for example its
	// instruction emulator failed).
	ExitInternal
	// ExitFailEntry: the hardware refused to enter the guest.
	ExitFailEntry
	// ExitHalt: the guest executed hlt.
	ExitHalt
	// ExitKicked: Kick interrupted the run.
	ExitKicked
	// ExitSyscall: the guest attempted a host system call (syscall,
	// sysenter, int $0x80); Reason is the number in EAX.
	ExitSyscall
	// ExitUnknown: any other exit, described by Reason.
	ExitUnknown
)

var exitNames = [...]string{
	ExitHypercall:   "hypercall",
	ExitFault:       "fault",
	ExitTripleFault: "triple_fault",
	ExitBadIO:       "bad_io",
	ExitMMIO:        "mmio",
	ExitInternal:    "internal_error",
	ExitFailEntry:   "fail_entry",
	ExitHalt:        "halt",
	ExitKicked:      "kicked",
	ExitSyscall:     "syscall",
	ExitUnknown:     "unknown",
}

// String returns the kind's short name, as used in statistics.
func (k ExitKind) String() string {
	if int(k) < len(exitNames) && exitNames[k] != "" {
		return exitNames[k]
	}
	return fmt.Sprintf("exit(%d)", uint8(k))
}

// NumExitKinds bounds the ExitKind values, for per-kind counters.
const NumExitKinds = int(ExitUnknown) + 1

// Exit describes one exit. Which fields are set depends on Kind.
type Exit struct {
	Kind ExitKind
	// Nr and Arg: the hypercall number and argument address (ExitHypercall).
	Nr  uint32
	Arg uint64
	// Port, Size and Out describe port I/O (ExitBadIO); Str is set for
	// string I/O (ins, outs, with or without rep).
	Port uint16
	Size uint8
	Out  bool
	Str  bool
	// Vector, ErrorCode and HasErrorCode describe a CPU exception
	// (ExitFault).
	Vector       uint8
	ErrorCode    uint64
	HasErrorCode bool
	// RIP is the guest instruction pointer where the exit happened, when
	// known.
	RIP uint64
	// CR2 is the faulting linear address of a page fault (vector 14).
	CR2 uint64
	// Addr and Write describe an MMIO access (ExitMMIO).
	Addr  uint64
	Write bool
	// Reason carries the backend's raw reason or suberror for ExitInternal,
	// ExitFailEntry, ExitSyscall (the syscall number) and ExitUnknown.
	Reason uint64
	// InReset: the guest failed while the backend was putting it back into
	// a snapshot (a reset the guest takes part in, as on the process
	// backend): after the reset began and before the guest's next
	// hypercall, in the backend's own code, or by dying anywhere.
	InReset bool
}

// SyscallUnknown is the Reason of an ExitSyscall whose system call number is
// not known.
const SyscallUnknown = ^uint64(0)

// VCPU runs one guest. Run and Close are called from one goroutine; Kick may be
// called from any goroutine at any time.
type VCPU interface {
	// Run enters (or re-enters) the guest and returns at the next exit. After
	// an ExitHypercall the guest continues after its hypercall instruction. A
	// non-nil error is a host failure, not something the guest did.
	Run() (Exit, error)
	// Kick makes the current Run, or the next one, return ExitKicked soon.
	Kick()
	// Close releases every host resource the vCPU holds.
	Close() error
}
