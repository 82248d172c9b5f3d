package kvm

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestIoctlNumbers checks the request numbers a seccomp filter allows against
// the values of Linux's uapi header, which strace decodes by name.
func TestIoctlNumbers(t *testing.T) {
	want := map[string]uint32{
		"KVM_RUN":                    0xAE80,
		"KVM_GET_REGS":               0x8090AE81,
		"KVM_GET_SREGS":              0x8138AE83,
		"KVM_CREATE_VM":              0xAE01,
		"KVM_SET_TSS_ADDR":           0xAE47,
		"KVM_ENABLE_CAP":             0x4068AEA3, // the VM's, for KVM_CAP_SPLIT_IRQCHIP
		"KVM_SET_USER_MEMORY_REGION": 0x4020AE46,
		"KVM_CREATE_VCPU":            0xAE41,
		"KVM_SET_CPUID2":             0x4008AE90,
		"KVM_SET_MSRS":               0x4008AE89,
		"KVM_SET_SREGS":              0x4138AE84,
		"KVM_SET_XCRS":               0x4188AEA7,
		"KVM_SET_REGS":               0x4090AE82,
		"KVM_GET_TSC_KHZ":            0xAEA3,
		"KVM_GET_MSRS":               0xC008AE88, // _IOWR(KVMIO, 0x88, struct kvm_msrs)
	}
	got := map[string]uint32{}
	for _, io := range append(RunIoctls(), NewVCPUIoctls()...) {
		got[io.Name] = io.Req
	}
	assert.Equal(t, want, got)
}
