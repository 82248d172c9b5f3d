package kvm

import (
	"encoding/binary"

	gokvm "github.com/bobuhiro11/gokvm/kvm"

	"github.com/tendervm/tender/monitor/vcpu"
	"github.com/tendervm/tender/monitor/x86"
)

// solo5CodeSel is the code selector a Solo5 guest far-returns to.
const solo5CodeSel = 0x8

// emulatePriv emulates the privileged instruction code at rip that raised
// #GP, for a guest with vcpu.Boot.EmulatePriv. done is false when it is not
// one the guest may use (the #GP is then reported as the fault it is). An
// emulated instruction returns the zero Exit: the #GP stub's report has been
// answered by rewriting the exception frame (RIP, RSP), for wrmsr the FS
// base, and for what passBoot runs after it RAX and the guest's stack, and
// the stub returns to the guest when the vCPU is entered again
// (x86.GPReportRIP).
func (v *VCPU) emulatePriv(code []byte, rip uint64) (x vcpu.Exit, done bool, err error) {
	p, n, ok := x86.DecodePriv(code)
	if !ok {
		return vcpu.Exit{}, false, nil
	}
	next := rip + uint64(n)
	switch p {
	case x86.PrivHLT:
		return vcpu.Exit{Kind: vcpu.ExitHalt, RIP: rip}, true, nil
	case x86.PrivLRET:
		rsp, err := v.mem.Uint64(x86.FrameRSPAddr)
		if err != nil {
			return vcpu.Exit{}, false, err
		}
		// What the guest could not read itself, it cannot return through.
		b, err := v.mem.Guest(rsp, 16, vcpu.Read)
		if err != nil {
			return vcpu.Exit{}, false, nil
		}
		target, sel := binary.LittleEndian.Uint64(b), binary.LittleEndian.Uint64(b[8:])
		// iretq to an address outside guest memory could fault in the
		// stub itself; the far return is refused instead.
		if uint16(sel) != solo5CodeSel || target >= v.mem.Size() {
			return vcpu.Exit{}, false, nil
		}
		if err := v.mem.PutUint64(x86.FrameRSPAddr, rsp+16); err != nil {
			return vcpu.Exit{}, false, err
		}
		next = target
	case x86.PrivWRMSR:
		regs, err := v.regs()
		if err != nil {
			return vcpu.Exit{}, false, err
		}
		if uint32(regs.RCX) != x86.MSRFSBase {
			return vcpu.Exit{}, false, nil
		}
		// The #GP stub leaves the guest's registers as they were.
		base := uint64(uint32(regs.RDX))<<32 | uint64(uint32(regs.RAX))
		if base >= 1<<47 && base < 0xFFFF800000000000 {
			return vcpu.Exit{}, false, nil // not canonical: #GP on hardware too
		}
		if err := setMSR(v.vcpufd, x86.MSRFSBase, base); err != nil {
			return vcpu.Exit{}, false, err
		}
	default:
		// lgdt, lidt, ltr, segment loads: the guest keeps running under
		// the monitor's own tables and selectors. cli, sti: the guest
		// takes no interrupts anyway. Those that follow go too.
		var err error
		if next, err = v.passBoot(next); err != nil {
			return vcpu.Exit{}, false, err
		}
	}
	if err := v.mem.PutUint64(x86.RIPAddr, next); err != nil {
		return vcpu.Exit{}, false, err
	}
	return vcpu.Exit{}, true, nil
}

// passBoot returns where the guest goes on after an emulated instruction
// without effect that ends at next: past the privileged instructions
// without effect that follow (x86.SkipNoEffect) and the ordinary ones a
// Solo5 guest's boot puts between them (x86.DecodeBootMove), which it runs
// for the guest as the CPU would, at most x86.MaxMerged of those. A trap
// costs about 50 µs on kvm_pvm; Solo5's start code (lgdt, far jump,
// segment loads) then costs one instead of three. It stops, and the guest
// runs the instruction itself, wherever the guest may not execute the
// code, write the stack words a far jump pushes, or far-return there. (The
// rsp check only spares the accessor a wrapped address, which it refuses
// too.)
func (v *VCPU) passBoot(next uint64) (uint64, error) {
	exec := func(addr, n uint64) bool {
		_, err := v.mem.Guest(addr, n, vcpu.Exec)
		return err == nil
	}
	var regs gokvm.Regs
	loaded := false
	for range x86.MaxMerged {
		next = x86.SkipNoEffect(next, v.code, exec)
		m, ok := x86.DecodeBootMove(v.code(next))
		if !ok || !exec(next, uint64(m.Len)) {
			break
		}
		if !m.FarJump {
			if !loaded {
				var err error
				if regs, err = v.regs(); err != nil {
					return 0, err
				}
				loaded = true
			}
			regs.RAX = m.RAX // the #GP stub touches no general register
			next += uint64(m.Len)
			continue
		}
		rsp, err := v.mem.Uint64(x86.FrameRSPAddr)
		if err != nil {
			return 0, err
		}
		if uint16(m.Sel) != solo5CodeSel || m.Target >= v.mem.Size() || rsp < 16 {
			break // as the lretq's own trap would refuse it
		}
		b, err := v.mem.Guest(rsp-16, 16, vcpu.Write)
		if err != nil {
			break // the push faults: the guest's own to take
		}
		binary.LittleEndian.PutUint64(b, m.Target)
		binary.LittleEndian.PutUint64(b[8:], m.Sel)
		next = m.Target
	}
	if loaded {
		if err := v.setRegs(regs, syncX86Regs); err != nil {
			return 0, err
		}
	}
	return next, nil
}
