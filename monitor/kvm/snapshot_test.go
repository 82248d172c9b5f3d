package kvm

import (
	"runtime"
	"testing"
	"unsafe"

	gokvm "github.com/bobuhiro11/gokvm/kvm"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
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
