package kvm

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// vmFDs counts this process's open VM descriptors.
func vmFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	n := 0
	for _, e := range ents {
		if l, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name())); err == nil && l == "anon_inode:kvm-vm" {
			n++
		}
	}
	return n
}

// TestTeardown closes many VMs at once: at most maxTeardowns are left being
// destroyed in the background, and System.Close returns only once every one
// is gone.
func TestTeardown(t *testing.T) {
	s := system(t)
	// Held back, the background closes cannot end before Close looks.
	s.teardown.delay = 50 * time.Millisecond
	before := vmFDs(t)
	vms := make([]*VCPU, 3*maxTeardowns)
	for i := range vms {
		vms[i], _ = rawVM(t, s, codeTwoHypercalls)
		run(t, vms[i])
	}
	for _, vm := range vms {
		require.NoError(t, vm.Close())
	}
	assert.LessOrEqual(t, vmFDs(t)-before, maxTeardowns, "VMs still being destroyed")
	require.NoError(t, s.Close())
	assert.Equal(t, before, vmFDs(t), "VMs left after System.Close")
}
