package cli

import (
	"os"
	"runtime"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tendervm/tender/monitor"
)

// TestProcs: GOMAXPROCS doubles for the process backend, whose guests
// compute aside, stays for KVM, and $GOMAXPROCS always wins.
func TestProcs(t *testing.T) {
	t.Setenv("GOMAXPROCS", "")
	os.Unsetenv("GOMAXPROCS")
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	host := func(b monitor.Backend) *monitor.Host {
		h, err := monitor.NewHost(monitor.HostConfig{Backend: b})
		if b == monitor.BackendKVM && err != nil && os.Getenv("TENDER_REQUIRE_KVM") != "1" {
			t.Skipf("KVM unusable: %v", err)
		}
		require.NoError(t, err)
		t.Cleanup(func() { h.Close() })
		return h
	}
	before := runtime.GOMAXPROCS(0)
	p := host(monitor.BackendProcess)
	assert.True(t, p.GuestsAside())
	assert.Equal(t, 2*before, Procs(p))
	assert.Equal(t, 2*before, runtime.GOMAXPROCS(0))

	runtime.GOMAXPROCS(before)
	t.Setenv("GOMAXPROCS", "1")
	assert.Equal(t, before, Procs(p), "$GOMAXPROCS set: left as it is")
	assert.Equal(t, before, runtime.GOMAXPROCS(0))

	os.Unsetenv("GOMAXPROCS")
	k := host(monitor.BackendKVM)
	assert.False(t, k.GuestsAside())
	assert.Equal(t, before, Procs(k))
	assert.Equal(t, before, runtime.GOMAXPROCS(0))
}
