package kvm

import (
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tendervm/tender/hypercall"
	"github.com/tendervm/tender/monitor/guestmem"
	"github.com/tendervm/tender/monitor/vcpu"
	"github.com/tendervm/tender/monitor/x86"
)

// solo5VM boots code at codeAddr as a Solo5 guest (privileged set-up
// emulated) with its stack top at stackTop; memory from dataAddr up is
// read-write but for [roAddr, roAddr+0x1000), read-only.
func solo5VM(t *testing.T, code []byte, stackTop uint64) (*VCPU, *guestmem.Memory) {
	t.Helper()
	s := system(t)
	mem, err := guestmem.New(4 << 20)
	require.NoError(t, err)
	t.Cleanup(func() { mem.Close() })
	require.NoError(t, mem.Write(codeAddr, code))
	regions := []vcpu.Region{
		{Addr: hypercall.BootInfoAddr, Size: 0x1000, Perm: vcpu.Read},
		{Addr: codeAddr, Size: 0x1000, Perm: vcpu.Read | vcpu.Exec},
		{Addr: dataAddr, Size: roAddr - dataAddr, Perm: vcpu.Read | vcpu.Write},
		{Addr: roAddr, Size: 0x1000, Perm: vcpu.Read},
		{Addr: roAddr + 0x1000, Size: mem.Size() - roAddr - 0x1000, Perm: vcpu.Read | vcpu.Write},
	}
	require.NoError(t, mem.SetLayout(regions)) // as the monitor does: Guest checks against it
	vm, err := s.NewVCPU(mem, vcpu.Boot{Regions: regions,
		Entry: codeAddr, StackTop: stackTop, BootInfo: hypercall.BootInfoAddr, EmulatePriv: true,
	})
	require.NoError(t, err)
	t.Cleanup(func() { vm.Close() })
	return vm, mem
}

const roAddr = 0x200000

// solo5Start is a Solo5 guest's start code as Solo5 builds it, then a
// hypercall reporting RAX:
//
//	lgdt 0x101000; push $0x8; push $target; lretq
//	target: mov $0x10,%rax; mov %eax,%ss; mov %eax,%ds; mov %eax,%es
//	mov $0x502,%dx; out %eax,%dx
func solo5Start(sel byte) []byte { return solo5StartTo(sel, codeAddr+17) }

// solo5StartTo is solo5Start with the far jump going to target.
func solo5StartTo(sel byte, target uint32) []byte {
	code := []byte{0x0f, 0x01, 0x14, 0x25, 0x00, 0x10, 0x10, 0x00, 0x6a, sel, 0x68}
	code = binary.LittleEndian.AppendUint32(code, target)
	code = append(code, 0x48, 0xcb)
	return append(code, 0x48, 0xc7, 0xc0, 0x10, 0, 0, 0, 0x8e, 0xd0, 0x8e, 0xd8, 0x8e, 0xc0,
		0x66, 0xba, 0x02, 0x05, 0xef)
}

// TestSolo5StartOneTrap: the start code's lgdt, far jump, selector load and
// segment reloads cost one trap, with the effects the CPU would have had:
// RAX holds the selector, the far jump's two words lie below the stack top,
// which is where it was.
// Without sync regs (KVM_CAP_SYNC_REGS) the register goes through
// KVM_SET_REGS.
func TestSolo5StartOneTrap(t *testing.T) {
	for _, sync := range []bool{true, false} {
		t.Run(map[bool]string{true: "sync regs", false: "KVM_SET_REGS"}[sync], func(t *testing.T) {
			solo5StartOneTrap(t, sync)
		})
	}
}

func solo5StartOneTrap(t *testing.T, sync bool) {
	const top = 0x300000
	vm, mem := solo5VM(t, solo5Start(0x8), top)
	if !sync {
		vm.syncRegs = false
	} else if !vm.syncRegs {
		t.Skip("KVM offers no sync regs here")
	}
	x := run(t, vm)
	require.Equal(t, vcpu.ExitHypercall, x.Kind, "%+v", x)
	assert.EqualValues(t, 2, x.Nr)
	assert.EqualValues(t, 0x10, x.Arg, "RAX = the data selector")
	assert.EqualValues(t, 2, vm.entries, "the boot's entry and one trap")
	b, err := mem.Slice(top-16, 16)
	require.NoError(t, err)
	assert.EqualValues(t, codeAddr+17, binary.LittleEndian.Uint64(b), "the target, pushed last")
	assert.EqualValues(t, 8, binary.LittleEndian.Uint64(b[8:]), "the selector")
	regs, err := vm.regs()
	require.NoError(t, err)
	assert.EqualValues(t, top, regs.RSP, "RSP as it was")
}

// TestSolo5StartRefused: where the CPU would refuse the far jump, or fault
// pushing its words, the monitor does not run it for the guest: the guest
// runs it and the run ends with the fault it takes.
func TestSolo5StartRefused(t *testing.T) {
	t.Run("another selector", func(t *testing.T) {
		vm, _ := solo5VM(t, solo5Start(0x10), 0x300000)
		x := run(t, vm)
		require.Equal(t, vcpu.ExitFault, x.Kind, "%+v", x)
		assert.EqualValues(t, x86.VecGP, x.Vector)
		assert.EqualValues(t, codeAddr+15, x.RIP, "the lretq, which refuses selector 0x10")
	})
	t.Run("target outside memory", func(t *testing.T) {
		vm, _ := solo5VM(t, solo5StartTo(0x8, 0x7fff0000), 0x300000)
		x := run(t, vm)
		require.Equal(t, vcpu.ExitFault, x.Kind, "%+v", x)
		assert.EqualValues(t, x86.VecGP, x.Vector)
		assert.EqualValues(t, codeAddr+15, x.RIP, "the lretq, whose own trap refuses the target")
	})
	t.Run("target not executable", func(t *testing.T) {
		// The target holds mov $0x10,%eax, in a data page: the guest
		// faults fetching it, and the monitor does not run it either.
		vm, mem := solo5VM(t, solo5StartTo(0x8, dataAddr+0x100), 0x300000)
		require.NoError(t, mem.Write(dataAddr+0x100, []byte{0xb8, 0x10, 0, 0, 0}))
		x := run(t, vm)
		require.Equal(t, vcpu.ExitFault, x.Kind, "%+v", x)
		assert.EqualValues(t, x86.VecPF, x.Vector)
		assert.EqualValues(t, dataAddr+0x100, x.RIP, "the fetch at the target")
		regs, err := vm.regs()
		require.NoError(t, err)
		assert.NotEqualValues(t, 0x10, regs.RAX, "the data page's mov was not run")
	})
	t.Run("stack at the bottom of memory", func(t *testing.T) {
		vm, _ := solo5VM(t, solo5Start(0x8), 8)
		x := run(t, vm)
		require.Equal(t, vcpu.ExitFault, x.Kind, "%+v", x)
		assert.EqualValues(t, x86.VecPF, x.Vector)
		assert.EqualValues(t, codeAddr+8, x.RIP, "the first push, at address 0")
		assert.EqualValues(t, 0, x.CR2)
	})
	t.Run("read-only stack", func(t *testing.T) {
		vm, _ := solo5VM(t, solo5Start(0x8), roAddr+0x800)
		x := run(t, vm)
		require.Equal(t, vcpu.ExitFault, x.Kind, "%+v", x)
		assert.EqualValues(t, x86.VecPF, x.Vector)
		assert.EqualValues(t, codeAddr+8, x.RIP, "the first push")
		assert.EqualValues(t, roAddr+0x800-8, x.CR2)
	})
}
