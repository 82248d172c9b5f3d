package tests

import (
	"context"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tendervm/tender/monitor"
	"github.com/tendervm/tender/monitor/process"
)

// TestFreshXState: a fresh instance's reset puts back every register state
// the guest has, not only what KVM says it has (on kvm_pvm a guest runs
// under the host's XCR0: AVX and AVX-512 whatever KVM's CPUID says), so
// data a request leaves in YMM, ZMM or opmask registers never reaches the
// next request; and the restore page's data, which holds register values
// the guest chose, cannot be executed. A warm instance shows the guest
// really wrote those registers.
func TestFreshXState(t *testing.T) {
	secret := hex.EncodeToString([]byte("SECRET-REQUEST-A"))
	for _, b := range backends(t) {
		if b == monitor.BackendProcess && process.CanTrack() != nil {
			continue // fresh instances need Linux 6.7 there
		}
		h := newHost(t, b)
		call := func(p *monitor.Pool, body string) (string, error) {
			t.Helper()
			rep, err := p.Invoke(context.Background(), monitor.Request{Body: []byte(body)})
			return string(rep.Body), err
		}
		w := newPool(t, h, "fn_xstate", monitor.PoolConfig{Mode: monitor.Warm, MaxInstances: 1})
		initial, err := call(w, "get")
		require.NoError(t, err, b)
		if initial == "none" {
			t.Logf("%s: the guest has no AVX: nothing to leak", b)
			continue
		}
		_, err = call(w, "set:SECRET-REQUEST-A")
		require.NoError(t, err, b)
		got, err := call(w, "get")
		require.NoError(t, err, b)
		require.Contains(t, got, secret, "%s: the warm instance keeps its registers", b)

		f := newPool(t, h, "fn_xstate", monitor.PoolConfig{Mode: monitor.Fresh, MaxInstances: 1})
		for range 2 {
			got, err := call(f, "get")
			require.NoError(t, err, b)
			assert.Equal(t, initial, got, "%s: a fresh request finds the first's state", b)
			_, err = call(f, "set:SECRET-REQUEST-A")
			require.NoError(t, err, b)
			got, err = call(f, "get")
			require.NoError(t, err, b)
			assert.False(t, strings.Contains(got, secret), "%s: a request read the previous one's registers: %s", b, got)
		}
		if b == monitor.BackendKVM { // the process backend has no restore page
			got, err = call(f, "jit")
			fe, ok := as[*monitor.FaultError](err)
			require.True(t, ok, "%s: the restore page's data ran, or held no code: %q, %v", b, got, err)
			assert.EqualValues(t, 14, fe.Vector, b)
		}
	}
}
