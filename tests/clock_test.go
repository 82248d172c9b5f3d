package tests

import (
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tendervm/tender/monitor"
	"github.com/tendervm/tender/monitor/process"
)

// TestGuestClock checks the clock a guest reads without an exit
// (tender_walltime_tsc_ns: the boot info's wall time plus its TSC since)
// against the host's, in every mode: the monitor must give the TSC the
// guest's counter had at that wall time, whatever the host's TSC offset (on
// kvm_pvm a guest's TSC is the host's, not one counting from 0).
func TestGuestClock(t *testing.T) {
	for _, be := range backends(t) {
		modes := []monitor.Mode{monitor.Cold, monitor.Warm}
		if be == monitor.BackendKVM || process.CanTrack() == nil {
			modes = append(modes, monitor.Fresh)
		}
		for _, mode := range modes {
			t.Run(string(be)+"/"+string(mode), func(t *testing.T) {
				p := newPool(t, newHost(t, be), "fn_state", monitor.PoolConfig{Mode: mode, MaxInstances: 1})
				for i := range 3 {
					before := time.Now()
					out, err := invoke(t, p, "clock")
					after := time.Now()
					require.NoError(t, err)
					ns, err := strconv.ParseInt(out, 10, 64)
					require.NoError(t, err, "%q", out)
					guest := time.Unix(0, ns)
					// A TSC rate measured to 0.02% drifts far less than this
					// over a test; a wrong boot TSC is off by the host's uptime.
					const slack = 100 * time.Millisecond
					assert.WithinRange(t, guest, before.Add(-slack), after.Add(slack),
						"call %d: the guest's clock is %v off the host's", i, guest.Sub(before))
					time.Sleep(10 * time.Millisecond)
				}
			})
		}
	}
}
