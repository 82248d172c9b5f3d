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

// The XSAVE state a guest really has need not be what KVM says: kvm_pvm
// runs a guest under the host's CR4 and XCR0, so it has AVX and AVX-512
// even where KVM_GET_SUPPORTED_CPUID gives no XSAVE and tender enables
// none. A fresh guest's restore page must put every such component back,
// so the first vCPU built for snapshots asks the guest itself (probeXSAVE).
const (
	xstateUnknown = iota
	xstateNone    // xgetbv raises #UD at CPL 3: only x87 and SSE exist
	xstateUsable  // xgetbv and xrstor work at CPL 3
)

// probeCode is run once at RestoreAddr before the guest's first entry:
// `xor %ecx,%ecx; xgetbv; mov %edx,%ecx; mov $PIOBase,%edx; out %eax,%dx`,
// which reports XCR0 in EAX and ECX, or faults with #UD.
func probeCode() []byte {
	b := []byte{0x31, 0xc9, 0x0f, 0x01, 0xd0, 0x89, 0xd1, 0xba}
	b = binary.LittleEndian.AppendUint32(b, hypercall.PIOBase)
	return append(b, 0xef)
}

// guestXSAVE says whether guest code can use xsave and xrstor: known from
// KVM's CPUID where it gives XSAVE, else probed by the first vCPU built for
// snapshots into memory of its own (probeXSAVE), before its guest's
// registers are set. probed says the probe ran: its vCPU needs its special
// registers set again.
func (v *VCPU) guestXSAVE(boot vcpu.Boot) (probed bool, err error) {
	if v.xsave {
		v.sys.xstate.CompareAndSwap(xstateUnknown, xstateUsable)
		return false, nil
	}
	if v.sys.xstate.Load() != xstateUnknown || v.mem.Frozen() {
		return false, nil // a frozen view's image was built by a probed vCPU
	}
	xcr0, err := v.probeXSAVE(boot)
	if err != nil {
		return true, err
	}
	state := int32(xstateNone)
	if xcr0 != 0 {
		state = xstateUsable
		v.sys.guestXCR0.Store(xcr0)
	}
	v.sys.xstate.CompareAndSwap(xstateUnknown, state)
	return true, nil
}

// probeXSAVE runs probeCode in the restore page (the snapshot writes the
// page's real code later). It returns the guest's XCR0, 0 where xgetbv
// raised #UD.
func (v *VCPU) probeXSAVE(boot vcpu.Boot) (uint64, error) {
	if err := v.mem.Write(x86.RestoreAddr, probeCode()); err != nil {
		return 0, err
	}
	if err := v.setRegs(gokvm.Regs{RIP: x86.RestoreAddr, RSP: boot.StackTop, RFLAGS: 0x2}, syncX86Regs); err != nil {
		return 0, err
	}
	x, err := v.Run()
	if err != nil {
		return 0, fmt.Errorf("kvm: probing XSAVE: %w", err)
	}
	var xcr0 uint64
	switch {
	case x.Kind == vcpu.ExitHypercall && x.Nr == 0:
		regs, err := v.regs()
		if err != nil {
			return 0, err
		}
		xcr0 = uint64(uint32(regs.RCX))<<32 | uint64(uint32(x.Arg)) | 1 // x87 is always on
	case x.Kind != vcpu.ExitFault || x.Vector != x86.VecUD:
		return 0, fmt.Errorf("kvm: probing XSAVE: unexpected exit %+v", x)
	}
	if err := v.finishExit(); err != nil {
		return 0, err
	}
	return xcr0, v.mem.Write(x86.RestoreAddr, make([]byte, len(probeCode())))
}

// setRegs sets the general registers: through kvm_run with the next entry
// where KVM syncs them (dirty says what else kvm_run carries in), else with
// KVM_SET_REGS.
func (v *VCPU) setRegs(regs gokvm.Regs, dirty uint64) error {
	if v.syncRegs {
		*(*gokvm.Regs)(unsafe.Pointer(&v.run[runSyncRegs])) = regs
		binary.LittleEndian.PutUint64(v.run[runDirtyRegs:], binary.LittleEndian.Uint64(v.run[runDirtyRegs:])|dirty)
		return nil
	}
	if err := ioctlErr(v.vcpufd, reqSetRegs, unsafe.Pointer(&regs)); err != nil {
		return fmt.Errorf("KVM_SET_REGS: %w", err)
	}
	return nil
}

// restoreImage returns the register image the restore page loads and its
// xrstor64 mask (0: fxrstor64 loads it): with XSAVE usable in the guest, an
// XSAVE image whose header names x87, SSE and AVX at most, built from KVM's
// FXSAVE-like state where KVM gave no XSAVE, and the mask of every component
// the guest has (x86.RestoreMask), which xrstor64 initialises but those.
func (v *VCPU) restoreImage(s *State) ([]byte, uint64) {
	switch {
	case v.xsave:
		return s.xsave[:x86.RestoreImageMax], x86.RestoreMask(v.sys.cpu.xcr0)
	case v.sys.xstate.Load() == xstateUsable:
		img := make([]byte, 576)
		copy(img, fxsave(s.xsave[:fpuSize]))
		binary.LittleEndian.PutUint64(img[512:], 0x3) // XSTATE_BV: x87, SSE
		return img, x86.RestoreMask(v.sys.guestXCR0.Load())
	}
	return fxsave(s.xsave[:fpuSize]), 0
}
