package tests

import (
	"bytes"
	"context"
	"errors"
	"fmt"
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
	"github.com/tendervm/tender/monitor/process"
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
		if !r.OK() {
			t.Logf("%s: %s", r.Key, r.Unavailable)
		}
	}
	checkBenchRows(t, rep.Rows, thisBenchMachine())
	for _, k := range bench.RowKeys() {
		assert.Contains(t, got, k, "every row is reported")
	}
	if ok, kvmErr := kvmAvailable(); ok {
		assert.Equal(t, string(monitor.BackendKVM), rep.Backend)
	} else {
		assert.Equal(t, string(monitor.BackendProcess), rep.Backend)
		for _, k := range []string{"tender-invoke-cold-kvm", "tender-cold-kvm", "tender-warm-kvm", "tender-fresh-kvm"} {
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

// benchMachine is what the rows of `tender bench` need from the machine.
type benchMachine struct {
	root       bool
	crun, runc bool // in PATH
	// kvm: tender runs on KVM; fresh: the backend it runs on has fresh
	// instances (KVM, or the process backend on Linux 6.7).
	kvm, fresh bool
}

func thisBenchMachine() benchMachine {
	_, crunErr := exec.LookPath("crun")
	_, runcErr := exec.LookPath("runc")
	kvm, _ := kvmAvailable()
	return benchMachine{root: os.Geteuid() == 0, crun: crunErr == nil, runc: runcErr == nil, kvm: kvm,
		fresh: kvm || process.CanTrack() == nil}
}

// checkBenchRows checks each row of a report: a row whose needs this
// machine meets must have a result (a "failed" row, or one reported
// unavailable although its runtime is installed, is an error); any other
// row must say why it is unavailable. KVM's rows are checked by the caller.
func checkBenchRows(t assert.TestingT, rows []bench.RowResult, h benchMachine) {
	needs := func(key string) (bool, string) {
		switch {
		case strings.HasSuffix(key, "-kvm"):
			return false, "" // only listed when KVM is missing
		case strings.HasPrefix(key, "crun-"):
			return h.crun && h.root, "crun installed and root"
		case strings.HasPrefix(key, "runc-"):
			return h.runc && h.root, "runc installed and root"
		case strings.HasPrefix(key, "microcontainer"):
			return h.root, "root"
		case key == "tender-fresh":
			return h.fresh, "KVM, or Linux 6.7 for the process backend"
		}
		return true, "nothing beyond `make all`" // process and tender rows
	}
	for _, r := range rows {
		assert.False(t, strings.HasPrefix(r.Unavailable, "failed"), "%s: %s", r.Key, r.Unavailable)
		if met, what := needs(r.Key); met {
			assert.True(t, r.OK(), "%s needs %s, which this machine has: %s", r.Key, what, r.Unavailable)
		} else if !r.OK() {
			assert.True(t, strings.HasPrefix(r.Unavailable, "unavailable: "), "%s: reason %q", r.Key, r.Unavailable)
		}
		if r.OK() {
			assert.Positive(t, r.Latency.Median, r.Key)
			assert.Positive(t, r.Latency.N, r.Key)
			assert.LessOrEqual(t, r.Latency.Median, r.Latency.P99, r.Key)
			assert.Positive(t, r.Throughput, r.Key)
			assert.Positive(t, r.Requests, r.Key)
		}
	}
}

// recorder is an assert.TestingT that keeps the failures.
type recorder struct{ errs []string }

func (r *recorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

// TestBenchRowsCheck: checkBenchRows fails a failed row, and a row reported
// unavailable although its runtime is installed; it accepts a row whose
// runtime is missing.
func TestBenchRowsCheck(t *testing.T) {
	ok := bench.RowResult{Key: "process", Requests: 1, Throughput: 1, Latency: bench.Summary{N: 1, Median: 1, P99: 1}}
	crunFailed := bench.RowResult{Key: "crun-default", Unavailable: "failed: exit status 1"}
	runcDoesNotRun := bench.RowResult{Key: "runc-minimal", Unavailable: "unavailable: runc does not run here: exit status 1"}
	crunMissing := bench.RowResult{Key: "crun-default", Unavailable: "unavailable: crun not installed (`make bench-deps` installs crun and runc)"}
	microFailed := bench.RowResult{Key: "microcontainer", Unavailable: "failed (throughput): clone: EPERM"}
	all := benchMachine{root: true, crun: true, runc: true, kvm: true}
	for _, c := range []struct {
		name string
		rows []bench.RowResult
		host benchMachine
		errs int
	}{
		{"all fine", []bench.RowResult{ok}, all, 0},
		{"crun failed", []bench.RowResult{ok, crunFailed}, all, 2},
		{"crun failed, crun not installed", []bench.RowResult{crunFailed}, benchMachine{root: true}, 2},
		{"runc installed but does not run", []bench.RowResult{runcDoesNotRun}, all, 1},
		{"crun not installed", []bench.RowResult{crunMissing}, benchMachine{root: true}, 0},
		{"microcontainer failed as root", []bench.RowResult{microFailed}, all, 2},
		{"the process row unavailable", []bench.RowResult{{Key: "process", Unavailable: "unavailable: x"}}, benchMachine{}, 1},
	} {
		var r recorder
		checkBenchRows(&r, c.rows, c.host)
		assert.Len(t, r.errs, c.errs, "%s: %q", c.name, r.errs)
	}
}
