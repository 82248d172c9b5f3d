package process

import (
	"errors"

	"golang.org/x/sys/unix"

	"github.com/tendervm/tender/hypercall"
	"github.com/tendervm/tender/monitor/vcpu"
	"github.com/tendervm/tender/monitor/x86"
)

// Signal codes (si_code) the backend tells apart. x/sys/unix lacks them.
const (
	siKernel    = 0x80 // SI_KERNEL: raised by the kernel, e.g. for #GP
	segvBndErr  = 3    // SEGV_BNDERR: bound range exceeded (#BR)
	segvCPErr   = 10   // SEGV_CPERR: control protection (#CP)
	busAdrAln   = 1    // BUS_ADRALN: alignment check (#AC)
	busMCEErrAR = 4    // BUS_MCEERR_AR: machine check, action required
	busMCEErrAO = 5    // BUS_MCEERR_AO: machine check, action optional
	fpeIntDiv   = 1    // FPE_INTDIV: #DE
	fpeIntOvf   = 2    // FPE_INTOVF
	trapTrace   = 2    // TRAP_TRACE: single step
	trapHWBkpt  = 4    // TRAP_HWBKPT: debug register hit
	sysSeccomp  = 1    // SYS_SECCOMP: a seccomp filter trapped a system call
)

// vsyscallPage is the legacy vsyscall page, whose entries the kernel
// emulates as system calls from that address.
const vsyscallPage = 0xffffffffff600000

// decode turns the current notification into an exit. It reports false for a
// signal another process sent, which the guest never sees: the next Run
// step answers it and waits for the next notification.
func (v *VCPU) decode() (vcpu.Exit, bool) {
	n := &v.notif
	if n.Arch != unix.AUDIT_ARCH_X86_64 || n.Nr != handlerNr || n.IP != handlerSyscallRet {
		// The guest's own system call (any syscall, int $0x80 or sysenter
		// instruction is two bytes long; a call into the vsyscall page
		// reports that address itself). It stays unanswered.
		v.ended = errors.New("process: the guest attempted a system call and cannot continue")
		rip := n.IP - 2
		if n.IP >= vsyscallPage && n.IP < vsyscallPage+0x1000 {
			rip = n.IP
		}
		return vcpu.Exit{Kind: vcpu.ExitSyscall, Reason: uint64(uint32(n.Nr)), RIP: rip}, true
	}
	signo := unix.Signal(uint32(n.Args[0]))
	code := int32(n.Args[0] >> 32)
	trapno, errCode, ecx := n.Args[1]>>48, n.Args[1]&0xffff, uint32(n.Args[1]>>16)
	cr2, rip, rax, rdx := n.Args[2], n.Args[3], n.Args[4], n.Args[5]
	if code <= 0 {
		// SI_USER, SI_TKILL, SI_QUEUE...: another process sent it, the
		// guest did not raise it.
		return vcpu.Exit{}, false
	}
	vector, ok := faultVector(signo, code, trapno)
	if !ok {
		return vcpu.Exit{}, false
	}
	if vector == x86.VecGP && code == siKernel {
		// Port I/O at CPL 3 raises #GP; the guest has no I/O permission.
		if io, ok := x86.DecodePortIO(v.code(rip), uint16(rdx)); ok {
			if io.Hypercall(hypercall.PIOBase, hypercall.Count) && v.executable(rip, uint64(io.Len)) {
				v.skip = uint64(io.Len)
				return vcpu.Exit{Kind: vcpu.ExitHypercall, Nr: uint32(io.Port - hypercall.PIOBase),
					Arg: uint64(uint32(rax)), RIP: rip}, true
			}
			return vcpu.Exit{Kind: vcpu.ExitBadIO, Port: io.Port, Size: io.Size, Out: io.Out, Str: io.Str, RIP: rip}, true
		}
		if v.emulate {
			// The handler reported RSP in place of the address a #GP
			// does not have.
			if x, done := v.emulatePriv(rip, cr2, rax, rdx, ecx); done {
				// Emulated (the zero Exit): Run answers with v.skip
				// and waits for the next report.
				return x, x.Kind != 0
			}
		}
	}
	if vector == x86.VecUD && x86.IsSyscall(v.code(rip)) {
		// sysenter in 64-bit mode is #UD on AMD (Intel hands it to
		// the kernel as a system call): an attempted system call all
		// the same, reported as the KVM backend does.
		v.ended = errors.New("process: the guest attempted a system call and cannot continue")
		return vcpu.Exit{Kind: vcpu.ExitSyscall, Reason: uint64(uint32(rax)), RIP: rip}, true
	}
	e := vcpu.Exit{Kind: vcpu.ExitFault, Vector: vector, RIP: rip}
	if x86.HasErrorCode(vector) {
		e.ErrorCode, e.HasErrorCode = errCode, true
	}
	if vector == x86.VecPF {
		e.CR2 = cr2
	}
	return e, true
}

// faultVector returns the exception behind a fault signal: the trap number
// the kernel recorded, when it is one that raises this signal, or else the
// vector si_code points to (a signal the kernel raised for no exception of
// the guest's, which leaves a stale trap number).
func faultVector(sig unix.Signal, code int32, trapno uint64) (uint8, bool) {
	t := uint8(trapno)
	switch sig {
	case unix.SIGSEGV:
		if trapno < 32 && (t == x86.VecBR || t == x86.VecGP || t == x86.VecPF || t == x86.VecCP) {
			return t, true
		}
		return x86.VecPF, true
	case unix.SIGBUS:
		if trapno < 32 && (t == x86.VecSS || t == x86.VecPF || t == x86.VecAC || t == x86.VecMC) {
			return t, true
		}
		if code == busAdrAln {
			return x86.VecAC, true
		}
		return x86.VecPF, true
	case unix.SIGILL:
		return x86.VecUD, true
	case unix.SIGFPE:
		if trapno < 32 && (t == x86.VecDE || t == x86.VecMF || t == x86.VecXM) {
			return t, true
		}
		if code == fpeIntDiv || code == fpeIntOvf {
			return x86.VecDE, true
		}
		return x86.VecXM, true
	case unix.SIGTRAP:
		if trapno < 32 && (t == x86.VecDB || t == x86.VecBP) {
			return t, true
		}
		if code == trapTrace || code == trapHWBkpt {
			return x86.VecDB, true
		}
		return x86.VecBP, true
	}
	return 0, false
}

// executable reports whether [addr, addr+n) lies in executable guest regions.
func (v *VCPU) executable(addr, n uint64) bool {
	for _, r := range v.regions {
		if addr < r.Addr {
			return false // sorted: no later region holds addr
		}
		if r.Perm&vcpu.Exec == 0 || addr-r.Addr >= r.Size {
			continue
		}
		if n <= r.Size-(addr-r.Addr) {
			return true
		}
		n -= r.Size - (addr - r.Addr) // the rest must be in the next region
		addr = r.Addr + r.Size
	}
	return false
}

// code returns the guest bytes at rip, up to the longest instruction, or nil
// if rip is outside guest memory.
func (v *VCPU) code(rip uint64) []byte {
	size := v.mem.Size()
	if rip >= size {
		return nil
	}
	b, err := v.mem.Slice(rip, min(x86.MaxInsnLen, size-rip))
	if err != nil {
		return nil
	}
	return b
}
