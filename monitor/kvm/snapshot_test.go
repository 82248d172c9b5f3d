package kvm

import (
	"encoding/binary"
	"runtime"
	"testing"
	"unsafe"

	gokvm "github.com/bobuhiro11/gokvm/kvm"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tendervm/tender/monitor/guestmem"
	"github.com/tendervm/tender/monitor/vcpu"
)

func getSregs(t *testing.T, vm *VCPU) gokvm.Sregs {
	t.Helper()
	var s gokvm.Sregs
	require.NoError(t, ioctlErr(vm.vcpufd, reqGetSregs, unsafe.Pointer(&s)))
	return s
}

// TestRestoreSregs: special registers changed after Snapshot are back after
// Restore and the next entry, whether they reach KVM through kvm_run (sync
// regs) or KVM_SET_SREGS; unchanged, they stay as they are.
func TestRestoreSregs(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	vm, _ := rawVM(t, system(t), codeOutLoop)
	run(t, vm)
	var st State
	require.NoError(t, vm.Snapshot(&st))
	want := getSregs(t, vm)
	for _, change := range []bool{false, true, false} {
		if change {
			s := getSregs(t, vm)
			s.CR2 = 0x1234000
			require.NoError(t, ioctlErr(vm.vcpufd, reqSetSregs, unsafe.Pointer(&s)))
		}
		run(t, vm)
		if change {
			require.EqualValues(t, 0x1234000, getSregs(t, vm).CR2, "the change lasts until Restore")
		}
		require.NoError(t, vm.Restore(&st))
		run(t, vm)
		assert.Equal(t, want, getSregs(t, vm), "changed: %v", change)
	}
}

// TestRestoreAtOut: Restore at a hypercall exit sets the state without
// entering KVM unless the vCPU's RIP in kvm_run is the snapshot's: then,
// on a host that skips an `out` at the next entry only if RIP is still
// that `out`'s, that skip would be wrong, and Restore finishes the exit
// first. Either way the guest goes on from the snapshot: the `out` after
// it runs, with the snapshot's registers.
func TestRestoreAtOut(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	// mov $0x502,%dx; 1: out %eax,%dx; out %eax,%dx; inc %eax; jmp 1b
	vm, _ := rawVM(t, system(t), []byte{0x66, 0xba, 0x02, 0x05, 0xef, 0xef, 0xff, 0xc0, 0xeb, 0xfa})
	arg := func() uint64 {
		t.Helper()
		x := run(t, vm)
		require.Equal(t, vcpu.ExitHypercall, x.Kind)
		return x.Arg
	}
	require.EqualValues(t, 0, arg())
	var st State
	require.NoError(t, vm.Snapshot(&st)) // next: the second out, EAX 0
	// Restored at the second out's exit, the first's, the second's.
	for _, exits := range []int{1, 0, 1} {
		for range exits {
			arg()
		}
		n, same := vm.entries, vm.rip() == st.regs.RIP
		require.NoError(t, vm.Restore(&st))
		if same {
			assert.Equal(t, n+1, vm.entries, "at the snapshot's RIP: the exit is finished")
		} else {
			assert.Equal(t, n, vm.entries, "elsewhere: no entry")
		}
		assert.EqualValues(t, 0, arg(), "the second out runs, with the snapshot's EAX")
		assert.EqualValues(t, 1, arg())
	}
}

// TestRestorePage: on a vCPU booted for snapshots, Restore puts the SSE
// registers back without KVM_SET_FPU or KVM_SET_XSAVE, through the restore
// page (x86.RestoreAddr), and the guest goes on at the snapshot's RIP with
// its general registers.
func TestRestorePage(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	s := system(t)
	mem, err := guestmem.New(4 << 20)
	require.NoError(t, err)
	t.Cleanup(func() { mem.Close() })
	// mov $0x502,%dx; movq %rdx,%xmm0; 1: out %eax,%dx; movq %xmm0,%rax;
	// mov %rax,0x101000; pcmpeqd %xmm0,%xmm0; jmp 1b
	code := []byte{0x66, 0xba, 0x02, 0x05, 0x66, 0x48, 0x0f, 0x6e, 0xc2, 0xef, 0x66, 0x48, 0x0f, 0x7e, 0xc0,
		0x48, 0x89, 0x04, 0x25, 0x00, 0x10, 0x10, 0x00, 0x66, 0x0f, 0x76, 0xc0, 0xeb, 0xec}
	require.NoError(t, mem.Write(codeAddr, code))
	vm, err := s.NewVCPU(mem, vcpu.Boot{
		Regions: []vcpu.Region{
			{Addr: codeAddr, Size: 0x1000, Perm: vcpu.Read | vcpu.Exec},
			{Addr: dataAddr, Size: mem.Size() - dataAddr, Perm: vcpu.Read | vcpu.Write},
		},
		Entry: codeAddr, StackTop: mem.Size(), Snapshot: true,
	})
	require.NoError(t, err)
	t.Cleanup(func() { vm.Close() })
	arg := func() uint64 {
		t.Helper()
		x := run(t, vm)
		require.Equal(t, vcpu.ExitHypercall, x.Kind, "%+v", x)
		return x.Arg
	}
	require.EqualValues(t, 0, arg())
	var st State
	require.NoError(t, vm.Snapshot(&st)) // XMM0 0x502, RAX 0
	for range 2 {
		arg()
		require.EqualValues(t, 0xFFFFFFFF, arg(), "XMM0 all ones since the first pass")
		require.NoError(t, vm.Restore(&st))
		assert.EqualValues(t, 0x502, arg(), "XMM0 is the snapshot's again")
		v, err := mem.Uint64(dataAddr)
		require.NoError(t, err)
		assert.EqualValues(t, 0x502, v)
	}
	assert.Zero(t, vm.fpuSets, "no KVM_SET_FPU or KVM_SET_XSAVE")
}

// TestSnapshotTR: a TR that KVM reports busy, as it does on SVM for the
// available TSS tender loads on AMD, is recorded with the type tender
// loads, and Restore does not count the busy bit as a change: set back
// busy, QEMU's emulated SVM made every hypercall after a reset a #GP. The
// guest never runs with a busy TR here, which that host would not survive.
func TestSnapshotTR(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	vm, _ := rawVM(t, system(t), codeOutLoop)
	run(t, vm)
	busy := getSregs(t, vm) // on SVM, busy already
	busy.TR.Typ |= trBusy
	require.NoError(t, ioctlErr(vm.vcpufd, reqSetSregs, unsafe.Pointer(&busy)))
	var st State
	require.NoError(t, vm.Snapshot(&st)) // reads TR busy, enters no guest code
	assert.Equal(t, vm.sys.cpu.trType, st.sregs.TR.Typ)
	loaded := st.sregs // TR as tender loads it
	require.NoError(t, ioctlErr(vm.vcpufd, reqSetSregs, unsafe.Pointer(&loaded)))
	if vm.syncSregs {
		// What KVM on SVM stores in kvm_run at an exit.
		seen := st.sregs
		seen.TR.Typ |= trBusy
		*(*gokvm.Sregs)(unsafe.Pointer(&vm.run[runSyncSregs])) = seen
		require.NoError(t, vm.Restore(&st))
		assert.Zero(t, binary.LittleEndian.Uint64(vm.run[runDirtyRegs:])&syncX86Sregs, "TR's busy bit is no change")
	}
	assert.Equal(t, vcpu.ExitHypercall, run(t, vm).Kind)
}

// TestSnapshotKicked: a vCPU kicked at a hypercall exit (a call's deadline
// firing while a fresh pool takes its first snapshot) is snapshot after its
// `out` all the same, as every host would then restore it: on hosts that
// leave RIP on the `out` until the next entry (bare-metal and emulated SVM),
// a snapshot taken without finishing the exit re-ran the `out` in every
// instance restored from it.
func TestSnapshotKicked(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	// mov $0x502,%dx; 1: out %eax,%dx; jmp 1b
	vm, _ := rawVM(t, system(t), codeOutLoop)
	x := run(t, vm)
	require.Equal(t, vcpu.ExitHypercall, x.Kind)
	vm.Kick()
	var st State
	require.NoError(t, vm.Snapshot(&st))
	assert.EqualValues(t, codeAddr+5, st.regs.RIP, "the snapshot is after the out (at jmp)")
	x, err := vm.Run()
	require.NoError(t, err)
	assert.Equal(t, vcpu.ExitKicked, x.Kind, "the vCPU stays kicked")
}
