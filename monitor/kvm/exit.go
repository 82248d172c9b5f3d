package kvm

import (
	"encoding/binary"
	"fmt"
	"unsafe"

	gokvm "github.com/bobuhiro11/gokvm/kvm"

	"github.com/tendervm/tender/hypercall"
	"github.com/tendervm/tender/monitor/vcpu"
	"github.com/tendervm/tender/monitor/x86"
)

func (v *VCPU) decode(reason gokvm.ExitType) (vcpu.Exit, error) {
	u := v.run[runUnion:]
	switch reason {
	case gokvm.EXITIO:
		return v.portIO(u)
	case gokvm.EXITMMIO:
		return vcpu.Exit{Kind: vcpu.ExitMMIO, Addr: binary.LittleEndian.Uint64(u[0:]),
			Write: u[20] != 0, RIP: v.rip()}, nil
	case gokvm.EXITSHUTDOWN:
		return vcpu.Exit{Kind: vcpu.ExitTripleFault, RIP: v.rip()}, nil
	case gokvm.EXITINTERNALERROR:
		return vcpu.Exit{Kind: vcpu.ExitInternal, Reason: uint64(binary.LittleEndian.Uint32(u)), RIP: v.rip()}, nil
	case gokvm.EXITFAILENTRY:
		return vcpu.Exit{Kind: vcpu.ExitFailEntry, Reason: binary.LittleEndian.Uint64(u)}, nil
	case gokvm.EXITHLT:
		// Only CPL-0 code can halt: a stub's hlt after its report.
		return vcpu.Exit{Kind: vcpu.ExitHalt, RIP: v.rip()}, nil
	}
	return vcpu.Exit{Kind: vcpu.ExitUnknown, Reason: uint64(reason), RIP: v.rip()}, nil
}

// portIO decodes KVM_EXIT_IO (struct kvm_run's io member in u). Only a
// 4-byte, single output to a hypercall port can be a hypercall, and then
// only if it came from `outl %eax, %dx`: KVM reports `outsl` and each
// element of `rep outsl` the same way, so the instruction is checked too.
func (v *VCPU) portIO(u []byte) (vcpu.Exit, error) {
	out := u[0] == gokvm.EXITIOOUT
	size, port := u[1], binary.LittleEndian.Uint16(u[2:])
	count, off := binary.LittleEndian.Uint32(u[4:]), binary.LittleEndian.Uint64(u[8:])
	if off > uint64(len(v.run)) || uint64(size)*uint64(count) > uint64(len(v.run))-off || size == 0 {
		return vcpu.Exit{}, fmt.Errorf("kvm: I/O exit data [%d, +%d*%d) outside kvm_run", off, size, count)
	}
	data := v.run[off:]
	if out && size == 1 && count == 1 {
		switch port {
		case x86.FaultPort:
			return v.fault(data[0])
		case x86.GPPort:
			return v.fault(x86.VecGP)
		}
	}
	regs, err := v.regs()
	if err != nil {
		return vcpu.Exit{}, err
	}
	code := v.code(regs.RIP)
	// Str only informs the report; a string instruction already past RIP
	// is told here only for a would-be hypercall (below).
	io, isIO := x86.DecodePortIO(code, uint16(regs.RDX))
	bad := vcpu.Exit{Kind: vcpu.ExitBadIO, Port: port, Size: size, Out: out, Str: count > 1 || isIO && io.Str, RIP: regs.RIP}
	if !out || size != 4 || count != 1 || port < hypercall.PIOBase || port >= hypercall.PIOBase+hypercall.Count {
		return bad, nil
	}
	e := x86.OutExit{Port: port, Data: binary.LittleEndian.Uint32(data), Code: code, RAX: regs.RAX, RDX: regs.RDX}
	if regs.RIP > 0 {
		if b, err := v.mem.Slice(regs.RIP-1, 1); err == nil {
			e.Prev, e.HasPrev = b[0], true
		}
	}
	const rflagsDF = 1 << 10
	beside := regs.RSI - 4
	if regs.RFLAGS&rflagsDF != 0 {
		beside = regs.RSI + 4
	}
	if b, err := v.mem.Slice(beside, 4); err == nil {
		e.Beside, e.HasBeside = binary.LittleEndian.Uint32(b), true
	}
	ok, str := e.Outl()
	if !ok {
		bad.Str = str
		return bad, nil
	}
	return vcpu.Exit{Kind: vcpu.ExitHypercall, Nr: uint32(port - hypercall.PIOBase), Arg: uint64(e.Data)}, nil
}

// code returns guest memory at addr, up to the longest instruction.
func (v *VCPU) code(addr uint64) []byte {
	if addr >= v.mem.Size() {
		return nil
	}
	b, err := v.mem.Slice(addr, min(x86.MaxInsnLen, v.mem.Size()-addr))
	if err != nil {
		return nil
	}
	return b
}

// fault reads the exception frame the CPU pushed on the monitor's kernel
// stack; the stub that reported vector never returns, but the #GP stub
// after an emulated instruction. A #GP on an in/out
// instruction is reported as the port I/O it was, so that a guest touching a
// port outside the hypercall range is told apart from other faults; an
// attempted system call is reported as one (see syscallExit).
func (v *VCPU) fault(vector byte) (vcpu.Exit, error) {
	e := vcpu.Exit{Kind: vcpu.ExitFault, Vector: vector, HasErrorCode: x86.HasErrorCode(vector)}
	var err error
	if e.RIP, err = v.mem.Uint64(x86.RIPAddr); err != nil {
		return vcpu.Exit{}, err
	}
	if e.HasErrorCode {
		if e.ErrorCode, err = v.mem.Uint64(x86.ErrorCodeAddr); err != nil {
			return vcpu.Exit{}, err
		}
	}
	switch vector {
	case x86.VecUD, x86.VecGP:
		code := v.code(e.RIP)
		if x86.IsSyscall(code) {
			return v.syscallExit(vector, e.RIP)
		}
		if vector == x86.VecUD {
			break
		}
		if v.emulate {
			if x, done, err := v.emulatePriv(code, e.RIP); done || err != nil {
				return x, err
			}
		}
		_, rdx, err := v.saved(vector)
		if err != nil {
			return vcpu.Exit{}, err
		}
		if io, ok := x86.DecodePortIO(code, uint16(rdx)); ok {
			return vcpu.Exit{Kind: vcpu.ExitBadIO, Port: io.Port, Size: io.Size, Out: io.Out, Str: io.Str, RIP: e.RIP}, nil
		}
	case x86.VecPF:
		var sregs gokvm.Sregs
		if err := ioctlErr(v.vcpufd, reqGetSregs, unsafe.Pointer(&sregs)); err != nil {
			return vcpu.Exit{}, fmt.Errorf("KVM_GET_SREGS: %w", err)
		}
		e.CR2 = sregs.CR2
		if e.RIP == x86.SyscallSentinel {
			// A host that ignores EFER.SCE ran the syscall and fetched
			// from LSTAR; RCX holds the address after the instruction.
			// The stubs never touch RCX.
			regs, err := v.regs()
			if err != nil {
				return vcpu.Exit{}, err
			}
			at := regs.RCX - x86.SyscallLen
			if code := v.code(at); regs.RCX >= x86.SyscallLen && len(code) >= 2 && code[0] == 0x0f && code[1] == 0x05 {
				return v.syscallExit(vector, at)
			}
		}
	}
	return e, nil
}

// syscallExit reports a system call attempted at rip, with the number the
// guest put in EAX (as the process backend does).
func (v *VCPU) syscallExit(vector byte, rip uint64) (vcpu.Exit, error) {
	rax, _, err := v.saved(vector)
	if err != nil {
		return vcpu.Exit{}, err
	}
	return vcpu.Exit{Kind: vcpu.ExitSyscall, Reason: uint64(uint32(rax)), RIP: rip}, nil
}

// saved returns the guest's RAX and RDX at an exception: the vCPU's own
// under the #GP stub, which touches neither; for any other vector, those
// its stub saved before it overwrote them.
func (v *VCPU) saved(vector byte) (rax, rdx uint64, err error) {
	if vector == x86.VecGP {
		regs, err := v.regs()
		return regs.RAX, regs.RDX, err
	}
	if rax, err = v.mem.Uint64(x86.SavedRAXAddr(vector)); err != nil {
		return 0, 0, err
	}
	rdx, err = v.mem.Uint64(x86.SavedRDXAddr(vector))
	return rax, rdx, err
}

// regs returns the vCPU's general registers: from kvm_run when KVM stores
// them there at every exit, else through KVM_GET_REGS.
func (v *VCPU) regs() (gokvm.Regs, error) {
	var r gokvm.Regs
	if v.syncRegs {
		r = *(*gokvm.Regs)(unsafe.Pointer(&v.run[runSyncRegs]))
		return r, nil
	}
	if err := ioctlErr(v.vcpufd, reqGetRegs, unsafe.Pointer(&r)); err != nil {
		return gokvm.Regs{}, fmt.Errorf("KVM_GET_REGS: %w", err)
	}
	return r, nil
}

// rip returns the guest's RIP, or 0 when it cannot be read.
func (v *VCPU) rip() uint64 {
	r, err := v.regs()
	if err != nil {
		return 0
	}
	return r.RIP
}
