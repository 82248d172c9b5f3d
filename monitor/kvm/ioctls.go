package kvm

import (
	"unsafe"

	gokvm "github.com/bobuhiro11/gokvm/kvm"
)

// KVM ioctl numbers (include/uapi/linux/kvm.h); gokvm keeps its own
// unexported.
const (
	nrCreateVM            = 0x01
	nrCreateVCPU          = 0x41
	nrSetUserMemoryRegion = 0x46
	nrSetTSSAddr          = 0x47
	nrRun                 = 0x80
	nrGetRegs             = 0x81
	nrSetRegs             = 0x82
	nrGetSregs            = 0x83
	nrSetSregs            = 0x84
	nrSetCPUID2           = 0x90
	nrGetTSCKHz           = 0xA3
	nrSetXCRS             = 0xA7
)

// Ioctl is a KVM ioctl request with its name, for a seccomp filter that
// allows it (package confine).
type Ioctl struct {
	Name string
	Req  uint32
}

// RunIoctls are the requests VM.Run and VM.Close issue on a VM that exists:
// entering the guest and reading its registers for a fault report.
func RunIoctls() []Ioctl {
	return []Ioctl{
		{"KVM_RUN", uint32(gokvm.IIO(nrRun))},
		{"KVM_GET_REGS", uint32(gokvm.IIOR(nrGetRegs, unsafe.Sizeof(gokvm.Regs{})))},
		{"KVM_GET_SREGS", uint32(gokvm.IIOR(nrGetSregs, unsafe.Sizeof(gokvm.Sregs{})))},
	}
}

// NewVMIoctls are the requests System.NewVM issues once the System is open:
// the VM, its memory slot, its vCPU and the vCPU's initial state. The
// requests Open issues (API version, CPUID, kvm_run size) are not among
// them.
func NewVMIoctls() []Ioctl {
	return []Ioctl{
		{"KVM_CREATE_VM", uint32(gokvm.IIO(nrCreateVM))},
		{"KVM_SET_TSS_ADDR", uint32(gokvm.IIO(nrSetTSSAddr))},
		{"KVM_SET_USER_MEMORY_REGION", uint32(gokvm.IIOW(nrSetUserMemoryRegion, unsafe.Sizeof(gokvm.UserspaceMemoryRegion{})))},
		{"KVM_CREATE_VCPU", uint32(gokvm.IIO(nrCreateVCPU))},
		// gokvm passes the size of a pointer, which is also that of the
		// fixed part of struct kvm_cpuid2.
		{"KVM_SET_CPUID2", uint32(gokvm.IIOW(nrSetCPUID2, unsafe.Sizeof(&gokvm.CPUID{})))},
		{"KVM_SET_SREGS", uint32(gokvm.IIOW(nrSetSregs, unsafe.Sizeof(gokvm.Sregs{})))},
		{"KVM_SET_XCRS", uint32(gokvm.IIOW(nrSetXCRS, unsafe.Sizeof(gokvm.XCRS{})))},
		{"KVM_SET_REGS", uint32(gokvm.IIOW(nrSetRegs, unsafe.Sizeof(gokvm.Regs{})))},
		{"KVM_GET_TSC_KHZ", uint32(gokvm.IIO(nrGetTSCKHz))},
	}
}
