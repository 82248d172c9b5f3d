package tests

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tendervm/tender/bench"
	"github.com/tendervm/tender/monitor"
)

// TestBenchCommand runs `tender bench -quick` end to end: every row of the
// experiment must come back with a result (positive latency and throughput)
// or the reason it is unavailable here (crun or runc not installed, no KVM),
// and the table, JSON and plots must be written.
func TestBenchCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the whole experiment, briefly")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	dir := t.TempDir()
	jsonPath, plots := filepath.Join(dir, "results.json"), filepath.Join(dir, "plots")
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, filepath.Join(root, "bin", "tender"), "bench", "-quick", "-quiet", "-json", jsonPath, "-plots", plots)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	require.NoError(t, err, "stderr: %s", stderr.String())
	t.Logf("tender bench -quick took %v:\n%s", time.Since(start).Round(time.Millisecond), stdout.String())

	out := stdout.String()
	assert.True(t, strings.HasPrefix(out, "| row | median | p90 | p99 | throughput/s | memory/instance | notes |\n"), "the table comes first")
	assert.Contains(t, out, "Ratios (this run):")

	rep, err := bench.ReadJSON(jsonPath)
	require.NoError(t, err)
	got := make(map[string]bench.RowResult)
	for _, r := range rep.Rows {
		got[r.Key] = r
		if r.OK() {
			assert.Positive(t, r.Latency.Median, r.Key)
			assert.Positive(t, r.Latency.N, r.Key)
			assert.LessOrEqual(t, r.Latency.Median, r.Latency.P99, r.Key)
			assert.Positive(t, r.Throughput, r.Key)
			assert.Positive(t, r.Requests, r.Key)
		} else {
			assert.True(t, strings.HasPrefix(r.Unavailable, "unavailable: ") || strings.HasPrefix(r.Unavailable, "failed"),
				"%s: reason %q", r.Key, r.Unavailable)
			t.Logf("%s: %s", r.Key, r.Unavailable)
		}
	}
	for _, k := range bench.RowKeys() {
		assert.Contains(t, got, k, "every row is reported")
	}
	// What needs nothing beyond `make all` must work everywhere.
	for _, k := range []string{"process", "process-nolibc", "tender-invoke-cold", "tender-cold", "tender-warm"} {
		assert.True(t, got[k].OK(), "%s: %s", k, got[k].Unavailable)
	}
	if ok, kvmErr := kvmAvailable(); ok {
		assert.Equal(t, string(monitor.BackendKVM), rep.Backend)
	} else {
		assert.Equal(t, string(monitor.BackendProcess), rep.Backend)
		for _, k := range []string{"tender-invoke-cold-kvm", "tender-cold-kvm", "tender-warm-kvm"} {
			assert.Contains(t, got[k].Unavailable, kvmErr.Error(), "%s: KVM rows say why KVM is missing", k)
		}
	}
	if _, err := exec.LookPath("crun"); err != nil {
		assert.Contains(t, got["crun-default"].Unavailable, "crun not installed")
	}
	for _, f := range []string{"latency.png", "latency.svg", "throughput.png", "throughput.svg"} {
		st, err := os.Stat(filepath.Join(plots, f))
		if assert.NoError(t, err) {
			assert.Positive(t, st.Size(), f)
		}
	}
}

// TestBenchCommandUsage: an unknown row is a usage error, listing the rows.
func TestBenchCommandUsage(t *testing.T) {
	var stderr bytes.Buffer
	cmd := exec.Command(filepath.Join(root, "bin", "tender"), "bench", "-quiet", "-rows", "docker")
	cmd.Stderr = &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	require.True(t, errors.As(err, &ee), "%v", err)
	assert.Equal(t, monitor.ExitUsage, ee.ExitCode())
	assert.Contains(t, stderr.String(), `no row "docker"`)
	assert.Contains(t, stderr.String(), "crun-default")
}
