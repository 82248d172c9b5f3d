package kvm

import (
	"errors"
	"runtime"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/tendervm/tender/hypercall"
	"github.com/tendervm/tender/monitor/guestmem"
	"github.com/tendervm/tender/monitor/vcpu"
)

// getLAPIC is KVM_GET_LAPIC, which fails with EINVAL for a vCPU whose local
// APIC is not in the kernel.
func getLAPIC(v *VCPU) error {
	var state [1024]byte
	return ioctlErr(v.vcpufd, uintptr(0x8400AE8E), unsafe.Pointer(&state))
}

// TestLocalAPIC: where KVM offers a split irqchip, a VM's local APIC is in
// the kernel, unless guest memory reaches the APIC's page; either way the
// guest runs, and a #GP (which the stub reports with out, not hlt, which an
// in-kernel APIC would keep in the kernel) ends it with a typed fault.
func TestLocalAPIC(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	s := system(t)
	if !s.splitIRQChip {
		t.Skip("KVM offers no KVM_CAP_SPLIT_IRQCHIP here")
	}
	for _, c := range []struct {
		name string
		size uint64
		apic bool
	}{
		{"small", 4 << 20, true},
		{"reaching the APIC page", apicBase + 2<<20, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			mem, err := guestmem.New(c.size)
			require.NoError(t, err)
			defer mem.Close()
			// hlt at CPL 3: a #GP.
			require.NoError(t, mem.Write(codeAddr, []byte{0xf4}))
			v, err := s.NewVCPU(mem, vcpu.Boot{
				Regions: []vcpu.Region{
					{Addr: hypercall.BootInfoAddr, Size: 0x1000, Perm: vcpu.Read},
					{Addr: codeAddr, Size: 0x1000, Perm: vcpu.Read | vcpu.Exec},
					{Addr: dataAddr, Size: 1 << 20, Perm: vcpu.Read | vcpu.Write},
				},
				Entry: codeAddr, StackTop: dataAddr + 1<<20, BootInfo: hypercall.BootInfoAddr,
			})
			require.NoError(t, err)
			defer v.Close()
			err = getLAPIC(v)
			if c.apic {
				assert.NoError(t, err, "the local APIC is in the kernel")
			} else {
				assert.True(t, errors.Is(err, unix.EINVAL), "no local APIC in the kernel: %v", err)
			}
			x, err := v.Run()
			require.NoError(t, err)
			assert.Equal(t, vcpu.ExitFault, x.Kind)
			assert.EqualValues(t, 13, x.Vector)
			assert.EqualValues(t, codeAddr, x.RIP)
		})
	}
}
