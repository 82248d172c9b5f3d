package kvm

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"unsafe"

	gokvm "github.com/bobuhiro11/gokvm/kvm"
	"golang.org/x/sys/unix"

	"github.com/tendervm/tender/monitor/x86"
)

// State is a vCPU's architectural state as a guest at CPL 3 can change it:
// general registers, segment and control registers, and the x87/SSE/AVX
// state. MSRs and debug registers are left out: a guest at CPL 3 cannot
// write them, and tender sets only LSTAR, once.
type State struct {
	regs  gokvm.Regs
	sregs gokvm.Sregs
	// xsave is struct kvm_xsave, or struct kvm_fpu on a host without XSAVE.
	xsave [4096]byte
	// paged: the guest's restore page (x86.RestoreAddr) loads this state.
	paged bool
}

// trBusy is the busy bit of a TSS descriptor's type.
const trBusy = 0x2

// struct kvm_fpu's size, for KVM_GET_FPU and KVM_SET_FPU.
const fpuSize = 416

var (
	reqGetFPU   = gokvm.IIOR(0x8C, fpuSize)
	reqSetFPU   = gokvm.IIOW(0x8D, fpuSize)
	reqGetXSAVE = gokvm.IIOR(0xA4, unsafe.Sizeof(State{}.xsave))
	reqSetXSAVE = gokvm.IIOW(0xA5, unsafe.Sizeof(State{}.xsave))
)

// finishExit completes the exit the vCPU last took without entering the
// guest: KVM finishes an I/O exit (skips its `out`) only at the next
// KVM_RUN, which immediate_exit makes return EINTR right after. Hosts
// finish an exit whose RIP userspace has changed meanwhile differently (SVM
// re-runs the `out`), so Snapshot takes registers only once the exit is
// finished: then they are those after the instruction on every host.
// Restore finishes it where the next entry could skip an instruction of the
// restored state (skipsOut). A kicked vCPU is finished too (its
// immediate_exit is set already): a snapshot taken of it may become a fresh
// pool's image, which must not hold RIP on the `out` where a host left it.
func (v *VCPU) finishExit() error {
	v.mu.Lock()
	atomicStoreByte(&v.run[runImmediateExit], 1)
	v.mu.Unlock()
	v.entries++
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(v.vcpufd), reqRun, 0)
	v.mu.Lock()
	if !v.kicked.Load() {
		atomicStoreByte(&v.run[runImmediateExit], 0)
	}
	v.mu.Unlock()
	if errno != unix.EINTR {
		return fmt.Errorf("KVM_RUN to finish an exit: %v, want EINTR", errno)
	}
	return nil
}

// skipsOut says whether the vCPU is in an exit that the next KVM_RUN
// finishes by skipping an `out` only if RIP still points at it, and
// restoring rip (not that `out`'s address) makes it skip nothing: then
// Restore need not finish the exit first (finishExit), which costs an
// entry into KVM (about 6 µs on kvm_pvm). KVM takes the registers from
// kvm_run (or KVM_SET_REGS) before it finishes the exit, and finishes an
// `out` by skipping it only if the linear RIP is the one it exited at
// (complete_fast_pio_out, Linux 5.1 and later). Any other exit, an `in`
// (whose completion writes RAX), or an `out` at rip itself is finished
// first, as is every exit where kvm_run does not show the registers.
func (v *VCPU) skipsOut(rip uint64) bool {
	if !v.syncRegs || gokvm.ExitType(binary.LittleEndian.Uint32(v.run[runExitReason:])) != gokvm.EXITIO ||
		v.run[runUnion] != gokvm.EXITIOOUT {
		return false
	}
	return (*gokvm.Regs)(unsafe.Pointer(&v.run[runSyncRegs])).RIP != rip
}

// Snapshot records the vCPU's state into s, for Restore. It is called
// between exits; at a hypercall exit, the state is that after the `out`
// instruction (finishExit).
func (v *VCPU) Snapshot(s *State) error {
	if v.restored != nil {
		// Not entered since Restore (a vCPU started from a pool's
		// image): its state is the one restored, whose registers now
		// point into the restore page.
		*s = *v.restored
		v.syncSpecial()
		return nil
	}
	if err := v.finishExit(); err != nil {
		return err
	}
	var err error
	if s.regs, err = v.regs(); err != nil {
		return err
	}
	if err := ioctlErr(v.vcpufd, reqGetSregs, unsafe.Pointer(&s.sregs)); err != nil {
		return fmt.Errorf("KVM_GET_SREGS: %w", err)
	}
	// KVM on SVM reports TR busy whatever was loaded (svm_get_segment);
	// set back busy, QEMU's emulated SVM then denies every port of the
	// TSS's I/O bitmap, and the guest's next hypercall is a #GP (see
	// tssType). TR goes back with the type tender loads.
	if s.sregs.TR.Typ|trBusy == v.sys.cpu.trType|trBusy {
		s.sregs.TR.Typ = v.sys.cpu.trType
	}
	req, name := reqGetXSAVE, "KVM_GET_XSAVE"
	if !v.xsave {
		req, name = reqGetFPU, "KVM_GET_FPU"
	}
	if err := ioctlErr(v.vcpufd, req, unsafe.Pointer(&s.xsave)); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if v.restorePage {
		if err := v.writeRestorePage(s); err != nil {
			return err
		}
		s.paged = true
	}
	v.syncSpecial()
	return nil
}

// syncSpecial asks KVM, where it can, to bring the special registers in
// kvm_run at every exit from now on: Restore then sets them only when
// they differ.
func (v *VCPU) syncSpecial() {
	if v.canSyncSregs {
		binary.LittleEndian.PutUint64(v.run[runValidRegs:], syncX86Regs|syncX86Sregs)
		v.syncSregs = true
	}
}

// writeRestorePage writes the page Restore enters the guest through (see
// x86.RestoreAddr) for s, unless it holds that already (a vCPU started
// from a pool's image, whose page is the image's): written into frozen
// memory it would be a private copy that every reset copies back.
func (v *VCPU) writeRestorePage(s *State) error {
	image, mask := v.restoreImage(s)
	code, data := x86.RestorePage(s.regs.RIP, s.regs.RAX, s.regs.RDX, image, mask)
	for _, p := range []struct {
		addr uint64
		b    []byte
	}{{x86.RestoreAddr, code}, {x86.RestoreDataAddr, data}} {
		cur, err := v.mem.Slice(p.addr, uint64(len(p.b)))
		if err != nil {
			return err
		}
		if !bytes.Equal(cur, p.b) {
			copy(cur, p.b)
		}
	}
	return nil
}

// fxsave converts struct kvm_fpu into the FXSAVE image fxrstor64 loads.
func fxsave(fpu []byte) []byte {
	img := make([]byte, 512)
	copy(img[0:4], fpu[128:132])   // FCW, FSW
	img[4] = fpu[132]              // abridged tag word
	copy(img[6:24], fpu[134:152])  // FOP, FIP, FDP
	copy(img[24:28], fpu[408:412]) // MXCSR
	copy(img[32:160], fpu[0:128])  // ST0-ST7
	copy(img[160:416], fpu[152:408])
	return img
}

// Restore puts the vCPU back into the state s recorded. The general
// registers go in with the next KVM_RUN where KVM syncs them through
// kvm_run.
func (v *VCPU) Restore(s *State) error {
	regs := s.regs
	paged := s.paged && v.restorePage
	if paged {
		// The restore page loads the x87/SSE/AVX state and goes on at
		// the snapshot's RIP, which saves a KVM_SET_FPU/XSAVE.
		regs.RIP = x86.RestoreAddr
	}
	if !v.skipsOut(regs.RIP) {
		if err := v.finishExit(); err != nil {
			return err
		}
	}
	dirty := syncX86Regs
	if v.syncSregs {
		// The special registers of the last exit are in kvm_run: a
		// guest at CPL 3 rarely changes them, and when it did they go
		// back in with the next entry, without an ioctl.
		cur := (*gokvm.Sregs)(unsafe.Pointer(&v.run[runSyncSregs]))
		seen := *cur
		if seen.TR.Typ|trBusy == s.sregs.TR.Typ|trBusy {
			seen.TR.Typ = s.sregs.TR.Typ // SVM reports TR busy (Snapshot)
		}
		if seen != s.sregs {
			*cur = s.sregs
			dirty |= syncX86Sregs
		}
	} else {
		sregs := s.sregs
		if err := ioctlErr(v.vcpufd, reqSetSregs, unsafe.Pointer(&sregs)); err != nil {
			return fmt.Errorf("KVM_SET_SREGS: %w", err)
		}
	}
	if !paged {
		req, name := reqSetXSAVE, "KVM_SET_XSAVE"
		if !v.xsave {
			req, name = reqSetFPU, "KVM_SET_FPU"
		}
		v.fpuSets++
		if err := ioctlErr(v.vcpufd, req, unsafe.Pointer(&s.xsave)); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	v.restored = s
	return v.setRegs(regs, dirty)
}

// SetTSC sets the guest's time-stamp counter (MSR IA32_TSC) to tsc: a vCPU
// started from another's snapshot goes on with that guest's clock.
func (v *VCPU) SetTSC(tsc uint64) error { return setMSR(v.vcpufd, msrTSC, tsc) }

// TSC reads the guest's time-stamp counter. A new vCPU's need not start
// from 0: on kvm_pvm hosts it is the host's.
func (v *VCPU) TSC() (uint64, error) { return getMSR(v.vcpufd, msrTSC) }

// ResetIoctls are the requests Snapshot and Restore issue, for a seccomp
// filter that allows them (package confine).
func ResetIoctls() []Ioctl {
	return []Ioctl{
		{"KVM_GET_XSAVE", uint32(reqGetXSAVE)},
		{"KVM_SET_XSAVE", uint32(reqSetXSAVE)},
		{"KVM_GET_FPU", uint32(reqGetFPU)},
		{"KVM_SET_FPU", uint32(reqSetFPU)},
		{"KVM_SET_SREGS", uint32(reqSetSregs)},
		{"KVM_SET_REGS", uint32(reqSetRegs)},
	}
}
