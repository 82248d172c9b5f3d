package kvm

import (
	"runtime"
	"testing"
	"unsafe"

	gokvm "github.com/bobuhiro11/gokvm/kvm"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

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
