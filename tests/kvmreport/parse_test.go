package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The testdata files are captured output: bench-*.txt of the benchmarks on
// a kvm_pvm host (bench-fail.txt of a package written to fail the way
// BenchmarkCreateRunClose and a sub-benchmark fail), suite-fail.json of
// `go test -json` over packages with a failing subtest, a build error and a
// panic, wrk.txt of wrk against tender serve, tender-bench.json of
// `tender-bench -quick -json`.
func readTestdata(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	require.NoError(t, err)
	return string(b)
}

func TestParseBench(t *testing.T) {
	out := parseBench(readTestdata(t, "bench-tests.txt"), 2)
	assert.Empty(t, out.Failed)
	assert.Len(t, out.Results, 20)
	assert.Equal(t, []string{"BenchmarkHypercall/kvm", "BenchmarkHypercall/process", "BenchmarkWarmInvoke/kvm"}, out.Order[:3])
	wi := out.Results["BenchmarkWarmInvoke/kvm"]
	assert.Equal(t, int64(2000), wi.N)
	assert.Equal(t, map[string]float64{"ns/op": 54027, "µs-invocation": 54.02, "x-hypercall": 1.103, "µs-hypercall": 48.97}, wi.Metrics)
	assert.Equal(t, []string{"ns/op", "µs-invocation", "µs-hypercall", "x-hypercall"}, wi.Units)
	exec := out.Results["BenchmarkExec"]
	assert.Equal(t, 5004.0, exec.Metrics["µs-median-tender-kvm"])
	assert.Equal(t, 8.651, exec.Metrics["x-c-tender-kvm"])
	assert.Equal(t, 1000.0, out.Results["BenchmarkIdleInstances/process"].Metrics["instances"])
	assert.Equal(t, []string{"ns/op"}, out.Results["BenchmarkColdInvoke/process"].Units)
}

func TestParseBenchFailures(t *testing.T) {
	out := parseBench(readTestdata(t, "bench-fail.txt"), 2)
	// The parent of a failed sub-benchmark is not listed; the failure on
	// the line of the benchmark's name is.
	assert.Equal(t, map[string]string{
		"BenchmarkCreateRunClose": "b_test.go:11: KVM_CREATE_VM: interrupted system call",
		"BenchmarkColdInvoke/kvm": "b_test.go:20: kvm_floor: exit status 1",
	}, out.Failed)
	assert.Equal(t, []string{"BenchmarkColdInvoke/process"}, out.Order, "the failed ones have no result")
	assert.Equal(t, result{N: 3, Metrics: map[string]float64{"ns/op": 51253, "x-c-floor": 1.5}, Units: []string{"ns/op", "x-c-floor"}},
		out.Results["BenchmarkColdInvoke/process"])
}

func TestParseBenchSplitLine(t *testing.T) {
	// Something printed between a benchmark's name and its figures.
	text := "BenchmarkBoot/kvm-2     \tguest says hello\n     300\t   1315325 ns/op\t         1.219 x-c-floor\n"
	out := parseBench(text, 2)
	assert.Equal(t, map[string]float64{"ns/op": 1315325, "x-c-floor": 1.219}, out.Results["BenchmarkBoot/kvm"].Metrics)
}

func TestParseBenchProcs(t *testing.T) {
	// With GOMAXPROCS=1 Go appends no suffix: a name ending in -digits stays.
	text := "BenchmarkFrame/size-64 \t 10 \t 5 ns/op\n"
	assert.Contains(t, parseBench(text, 1).Results, "BenchmarkFrame/size-64")
	assert.Contains(t, parseBench(strings.Replace(text, "size-64", "size-64-8", 1), 8).Results, "BenchmarkFrame/size-64")
}

func TestParseSuite(t *testing.T) {
	res, err := parseSuite(strings.NewReader(readTestdata(t, "suite-fail.json")))
	require.NoError(t, err)
	assert.Equal(t, []string{"fails TestFaults/syscall", "fails TestNoLeaks", "panics TestBoom"}, res.Failed,
		"the failed leaves, not TestFaults for its subtest")
	assert.Equal(t, []string{"broken"}, res.FailedPackages, "the build failure")
	assert.Equal(t, 3, res.Passed)
	assert.Equal(t, []string{"ok TestSkipped"}, res.Skipped)
	assert.False(t, res.OK())

	ok, err := parseSuite(strings.NewReader(`{"Action":"pass","Package":"github.com/tendervm/tender/x","Test":"TestA"}
not an event
{"Action":"pass","Package":"github.com/tendervm/tender/x"}
`))
	require.NoError(t, err)
	assert.True(t, ok.OK())
	assert.Equal(t, 1, ok.Passed)
}

func TestParseKVMFloor(t *testing.T) {
	r, err := parseKVMFloor("kvm_floor n=500 mem=4MiB median_us=816.5 mean_us=1424.9\n")
	require.NoError(t, err)
	assert.Equal(t, result{N: 500, Metrics: map[string]float64{"µs-median": 816.5, "µs-mean": 1424.9}, Units: []string{"µs-median", "µs-mean"}}, r)
	_, err = parseKVMFloor("open /dev/kvm: No such file or directory\n")
	assert.ErrorContains(t, err, "no median_us")
	_, err = parseKVMFloor("kvm_floor n=5 median_us=fast")
	assert.ErrorContains(t, err, "median_us=fast")
}

func TestParseWrk(t *testing.T) {
	r, err := parseWrk(readTestdata(t, "wrk.txt"))
	require.NoError(t, err)
	assert.Equal(t, int64(25847), r.N)
	assert.Equal(t, map[string]float64{"req/s": 8603.42, "p50-ms": 6.07, "p99-ms": 135.94, "requests": 25847}, r.Metrics)

	bad := readTestdata(t, "wrk.txt")
	bad = strings.Replace(bad, "Requests/sec:", "  Non-2xx or 3xx responses: 17\n  Socket errors: connect 0, read 2, write 0, timeout 3\nRequests/sec:", 1)
	r, err = parseWrk(bad)
	require.NoError(t, err)
	assert.Equal(t, 17.0, r.Metrics["non-2xx"])
	assert.Equal(t, 5.0, r.Metrics["socket-errors"])

	_, err = parseWrk("unable to connect to 127.0.0.1:1 Connection refused\n")
	assert.ErrorContains(t, err, "no Requests/sec")
}

func TestWrkMillis(t *testing.T) {
	for in, want := range map[string]float64{"850.00us": 0.85, "6.66ms": 6.66, "1.20s": 1200, "1.50m": 90000} {
		got, err := wrkMillis(in)
		require.NoError(t, err, in)
		assert.InDelta(t, want, got, 1e-9, in)
	}
	_, err := wrkMillis("fast")
	assert.ErrorContains(t, err, `latency "fast"`)
}
