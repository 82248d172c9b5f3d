package kvm

import (
	"fmt"
	"unsafe"

	gokvm "github.com/bobuhiro11/gokvm/kvm"
	"golang.org/x/sys/unix"
)

// KVM ioctl requests (include/uapi/linux/kvm.h). Only the structures come
// from gokvm: its call wrappers pass EINTR back to the caller.
var (
	reqGetAPIVersion            = gokvm.IIO(0x00)
	reqCreateVM                 = gokvm.IIO(0x01)
	reqCheckExtension           = gokvm.IIO(0x03)
	reqGetVCPUMmapSize          = gokvm.IIO(0x04)
	reqGetSupportedCPUID        = gokvm.IIOWR(0x05, 8)
	reqCreateVCPU               = gokvm.IIO(0x41)
	reqSetUserMemRegion         = gokvm.IIOW(0x46, unsafe.Sizeof(gokvm.UserspaceMemoryRegion{}))
	reqSetTSSAddr               = gokvm.IIO(0x47)
	reqRun                      = gokvm.IIO(0x80)
	reqGetRegs                  = gokvm.IIOR(0x81, unsafe.Sizeof(gokvm.Regs{}))
	reqSetRegs                  = gokvm.IIOW(0x82, unsafe.Sizeof(gokvm.Regs{}))
	reqGetSregs                 = gokvm.IIOR(0x83, unsafe.Sizeof(gokvm.Sregs{}))
	reqSetSregs                 = gokvm.IIOW(0x84, unsafe.Sizeof(gokvm.Sregs{}))
	reqSetMSRs                  = gokvm.IIOW(0x89, 8)
	reqGetMSRs                  = gokvm.IIOWR(0x88, 8)
	reqSetCPUID2                = gokvm.IIOW(0x90, 8)
	reqGetTSCKHz                = gokvm.IIO(0xA3)
	reqSetXCRs                  = gokvm.IIOW(0xA7, unsafe.Sizeof(gokvm.XCRS{}))
	reqEnableCap                = gokvm.IIOW(0xA3, unsafe.Sizeof(enableCap{}))
	capSyncRegs                 = uintptr(74)  // KVM_CAP_SYNC_REGS
	capSplitIRQChip             = uintptr(121) // KVM_CAP_SPLIT_IRQCHIP
	syncX86Regs          uint64 = 1            // KVM_SYNC_X86_REGS
	syncX86Sregs         uint64 = 2            // KVM_SYNC_X86_SREGS
)

// enableCap is struct kvm_enable_cap.
type enableCap struct {
	cap   uint32
	flags uint32
	args  [4]uint64
	_     [64]byte
}

// ioctl issues a KVM ioctl other than KVM_RUN, with argument p when it is not
// nil and arg otherwise, and retries it while it fails with EINTR. Calls
// such as KVM_CREATE_VM fail that way when any signal arrives, and the Go
// runtime's preemption signal (SIGURG) arrives at any time; a call that
// returns EINTR has done nothing. p stays an unsafe.Pointer down to the
// system call so that the object it points to is kept alive and, if it is on
// a goroutine stack, followed when that stack moves.
func ioctl(fd int, req uintptr, p unsafe.Pointer, arg uintptr) (uintptr, error) {
	for {
		var r uintptr
		var errno unix.Errno
		if p != nil {
			r, _, errno = unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(p))
		} else {
			r, _, errno = unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, arg)
		}
		switch errno {
		case 0:
			return r, nil
		case unix.EINTR:
			continue
		}
		return r, errno
	}
}

// cpuid2 is struct kvm_cpuid2 with room for maxCPUIDEntries entries.
type cpuid2 struct {
	nent    uint32
	_       uint32
	entries [maxCPUIDEntries]gokvm.CPUIDEntry2
}

const maxCPUIDEntries = 256

// msrs1 is struct kvm_msrs holding one entry.
type msrs1 struct {
	nmsrs uint32
	_     uint32
	entry gokvm.MSREntry
}

// setMSR writes one MSR of the vCPU. KVM_SET_MSRS returns how many entries
// it wrote, and stops at the first it refuses.
func setMSR(vcpufd int, index uint32, value uint64) error {
	m := msrs1{nmsrs: 1, entry: gokvm.MSREntry{Index: index, Data: value}}
	n, err := ioctl(vcpufd, reqSetMSRs, unsafe.Pointer(&m), 0)
	switch {
	case err != nil:
		return fmt.Errorf("KVM_SET_MSRS %#x: %w", index, err)
	case n != 1:
		return fmt.Errorf("KVM_SET_MSRS: KVM refused MSR %#x", index)
	}
	return nil
}

// getMSR reads one MSR of the vCPU.
func getMSR(vcpufd int, index uint32) (uint64, error) {
	m := msrs1{nmsrs: 1, entry: gokvm.MSREntry{Index: index}}
	n, err := ioctl(vcpufd, reqGetMSRs, unsafe.Pointer(&m), 0)
	switch {
	case err != nil:
		return 0, fmt.Errorf("KVM_GET_MSRS %#x: %w", index, err)
	case n != 1:
		return 0, fmt.Errorf("KVM_GET_MSRS: KVM refused MSR %#x", index)
	}
	return m.entry.Data, nil
}

// ioctlErr is ioctl with a pointer argument, for calls whose result is only
// success or failure.
func ioctlErr(fd int, req uintptr, p unsafe.Pointer) error {
	_, err := ioctl(fd, req, p, 0)
	return err
}
