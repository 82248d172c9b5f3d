package kvm

// Ioctl is a KVM ioctl request with its name, for a seccomp filter that
// allows it (package confine).
type Ioctl struct {
	Name string
	Req  uint32
}

// RunIoctls are the requests VCPU.Run and VCPU.Close issue on a VM that exists:
// entering the guest and reading its registers for a hypercall (where the
// kernel does not sync them into kvm_run) or a fault report, and setting the
// FS base a Solo5 guest writes with wrmsr (priv.go).
func RunIoctls() []Ioctl {
	return []Ioctl{
		{"KVM_RUN", uint32(reqRun)},
		{"KVM_GET_REGS", uint32(reqGetRegs)},
		{"KVM_GET_SREGS", uint32(reqGetSregs)},
		{"KVM_SET_MSRS", uint32(reqSetMSRs)},
	}
}

// NewVCPUIoctls are the requests System.NewVCPU issues once the System is open:
// the VM, its memory slot, its vCPU and the vCPU's initial state. The
// requests Open issues (API version, CPUID, kvm_run size, capabilities) are
// not among them.
func NewVCPUIoctls() []Ioctl {
	return []Ioctl{
		{"KVM_CREATE_VM", uint32(reqCreateVM)},
		{"KVM_SET_TSS_ADDR", uint32(reqSetTSSAddr)},
		{"KVM_ENABLE_CAP", uint32(reqEnableCap)},
		{"KVM_SET_USER_MEMORY_REGION", uint32(reqSetUserMemRegion)},
		{"KVM_CREATE_VCPU", uint32(reqCreateVCPU)},
		{"KVM_SET_CPUID2", uint32(reqSetCPUID2)},
		{"KVM_SET_SREGS", uint32(reqSetSregs)},
		{"KVM_SET_XCRS", uint32(reqSetXCRs)},
		{"KVM_SET_REGS", uint32(reqSetRegs)},
		{"KVM_SET_MSRS", uint32(reqSetMSRs)},
		{"KVM_GET_TSC_KHZ", uint32(reqGetTSCKHz)},
		{"KVM_GET_MSRS", uint32(reqGetMSRs)},
	}
}
