package main

import (
	"bytes"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tendervm/tender/bench"
)

// sampleFigures are the figures of the captured outputs in testdata.
func sampleFigures(t *testing.T) *figures {
	t.Helper()
	f := newFigures()
	f.addBench("monitor/kvm", parseBench(readTestdata(t, "bench-kvm.txt"), 2))
	f.addBench("monitor/process", parseBench(readTestdata(t, "bench-process.txt"), 2))
	f.addBench("tests", parseBench(readTestdata(t, "bench-tests.txt"), 2))
	rep, err := bench.ReadJSON(filepath.Join("testdata", "tender-bench.json"))
	require.NoError(t, err)
	addTenderBench(f, "kvm", rep)
	w, err := parseWrk(readTestdata(t, "wrk.txt"))
	require.NoError(t, err)
	f.put("wrk kvm", w)
	return f
}

// find returns the row of the target named name (prefix) of issue on
// backend be.
func find(t *testing.T, rs []row, issue, name, be string) row {
	t.Helper()
	for _, r := range rs {
		if r.issue == issue && strings.HasPrefix(r.name, name) && r.backend == be {
			return r
		}
	}
	t.Fatalf("no row %s %q %s", issue, name, be)
	return row{}
}

func TestTargetsFromSamples(t *testing.T) {
	rs := rows(sampleFigures(t), nil, 3)

	warm := find(t, rs, "11", "warm invocation", "kvm")
	assert.Equal(t, "54.0 µs invocation vs 49.0 µs hypercall", warm.measured)
	assert.Equal(t, "1.103x", warm.ratio, "rounded to its threshold, it shows the digit that fails it")
	assert.Equal(t, notMet, warm.verdict, "1.103 is above 1.1")
	assert.Equal(t, met, find(t, rs, "3", "warm invocation", "kvm").verdict, "1.103 is within 1.2")
	assert.Equal(t, met, find(t, rs, "11", "warm invocation", "process").verdict, "0.878")

	// A ratio of two benchmarks: tests' console write over monitor/kvm's raw exit.
	cw := find(t, rs, "2", "console-write round trip vs", "kvm")
	assert.Equal(t, "37.6 µs vs 49.7 µs raw exit", cw.measured)
	assert.Equal(t, "0.76x", cw.ratio)
	assert.Equal(t, met, cw.verdict)
	assert.Equal(t, notMet, find(t, rs, "2", "console-write round trip below", "kvm").verdict, "37.6 µs is not below 26.5 µs")

	// tender bench: crun's median over tender cold's, times faster.
	tb := find(t, rs, "11", "`tender bench`", "kvm")
	assert.Equal(t, "1.45 ms vs 8.59 ms crun", tb.measured)
	assert.Equal(t, "5.94x", tb.ratio)
	assert.Equal(t, notMet, tb.verdict)

	idle := find(t, rs, "3", "idle warm instance", "process")
	assert.Equal(t, "55 KiB each", idle.measured)
	assert.Equal(t, "–", idle.ratio, "an absolute figure")
	assert.Equal(t, met, idle.verdict)
	assert.Equal(t, notMet, find(t, rs, "11", "idle warm instance", "kvm").verdict, "592 KiB")

	// wrk ran against kvm only here: the plain baseline is missing.
	serve := find(t, rs, "11", "`tender serve`", "kvm")
	assert.Equal(t, notMeasured, serve.verdict)
	assert.Equal(t, noBaseline, serve.why)

	assert.Equal(t, "not measured: tests BenchmarkFreshInvoke/process not in the output", find(t, rs, "12", "fresh invocation vs warm", "process").result())
	assert.Equal(t, "not measured: tests BenchmarkFreshThroughput/process not in the output", find(t, rs, "12", "fresh throughput", "process").result())
	assert.Equal(t, "not measured: `tender bench` reported no tender-fresh row", find(t, rs, "12", "`tender bench`", "kvm").result())
}

func TestServeRounds(t *testing.T) {
	// wrk in three rounds: net/http, then kvm and process; the machine got
	// busier in round 2. The ratio is the median of the rounds' ratios
	// (0.30, 0.75, 0.28 for kvm: 0.30), not the ratio of the medians
	// (19.6/64: 0.31).
	wrk := func(rate, p99 float64, n int64) *result {
		r := &result{N: n}
		r.add("req/s", rate)
		r.add("p99-ms", p99)
		r.add("requests", float64(n))
		return r
	}
	rounds := [][]*result{
		{wrk(64000, 6, 64000), wrk(19200, 30, 19200), wrk(38400, 9, 38400)},
		{wrk(40000, 9, 40000), wrk(30000, 40, 30000), wrk(26000, 12, 26000)},
		{wrk(70000, 5, 70000), wrk(19600, 35, 19600), wrk(40000, 8, 40000)},
	}
	got := combineRounds(rounds, []bool{true, true, true})
	require.Len(t, got, 3)
	assert.Equal(t, 64000.0, got[0].Metrics["req/s"])
	assert.NotContains(t, got[0].Metrics, "x-baseline", "the baseline has no ratio")
	assert.Equal(t, 19600.0, got[1].Metrics["req/s"])
	assert.Equal(t, 35.0, got[1].Metrics["p99-ms"])
	assert.Equal(t, int64(68800), got[1].N)
	assert.Equal(t, 68800.0, got[1].Metrics["requests"])
	assert.InDelta(t, 0.30, got[1].Metrics["x-baseline"], 1e-9)
	assert.InDelta(t, 0.60, got[2].Metrics["x-baseline"], 1e-9, "38400/64000, 26000/40000=0.65, 40000/70000=0.571")

	f := newFigures()
	f.put("wrk net/http", *got[0])
	f.put("wrk kvm", *got[1])
	f.put("wrk process", *got[2])
	rs := rows(f, nil, 3)
	kvm := find(t, rs, "11", "`tender serve`", "kvm")
	assert.Equal(t, "19600 req/s vs net/http 64000 req/s", kvm.measured)
	assert.Equal(t, "0.30x", kvm.ratio)
	assert.Equal(t, met, kvm.verdict)
	assert.Equal(t, met, find(t, rs, "11", "`tender serve`", "process").verdict, "0.60 is not below 0.6")
	assert.Equal(t, "not measured: wrk "+childServer+" not in the output", find(t, rs, "11", "a `net/http` echo passing", "process").result(),
		"no floor server measured")

	// The floor server (net/http through a child process) is shown beside
	// the process backend's serve, and reported in a row of its own.
	floor := combineRounds([][]*result{
		{rounds[0][0], wrk(32000, 8, 32000)}, {wrk(40000, 9, 40000), wrk(22000, 11, 22000)}, {rounds[2][0], wrk(36400, 7, 36400)},
	}, []bool{true, true})
	f.put("wrk "+childServer, *floor[1])
	rs = rows(f, nil, 3)
	proc := find(t, rs, "11", "`tender serve`", "process")
	assert.Equal(t, "38400 req/s vs net/http 64000 req/s (a `net/http` echo passing each body through a child process: 0.52x)", proc.measured,
		"0.50, 0.55, 0.52: the median of the floor's rounds")
	child := find(t, rs, "11", "a `net/http` echo passing", "process")
	assert.Equal(t, "32000 req/s vs net/http 64000 req/s", child.measured)
	assert.Equal(t, "0.52x", child.ratio)
	assert.Equal(t, reported, child.verdict)

	// A server that failed a round, or was never live, has no figures; a
	// round without the baseline leaves the others without a ratio.
	rounds[1][2] = nil
	got = combineRounds(rounds, []bool{true, true, false})
	assert.Nil(t, got[2])
	rounds[1][0] = nil
	got = combineRounds(rounds, []bool{false, true, false})
	assert.Nil(t, got[0])
	assert.NotContains(t, got[1].Metrics, "x-baseline")
	assert.Equal(t, 19600.0, got[1].Metrics["req/s"])
}

func TestMissingMetric(t *testing.T) {
	// A benchmark renamed its metric: the row says which and what it has.
	f := newFigures()
	f.addBench("tests", parseBench("BenchmarkWarmInvoke/kvm-2 \t 100 \t 5000 ns/op \t 5.0 µs-invocation \t 1.0 x-hyper\n", 2))
	r := find(t, rows(f, nil, 3), "11", "warm invocation", "kvm")
	assert.Equal(t, notMeasured, r.verdict)
	assert.Equal(t, `metric "x-hypercall" not found in tests BenchmarkWarmInvoke/kvm output (it reports ns/op, µs-invocation, x-hyper)`, r.why)
	assert.Equal(t, "5.0 µs invocation", r.measured, "the figures that are there are shown")
	_, err := f.metric("tests BenchmarkWarmInvoke/kvm", "x-hypercall")
	var m *missingError
	require.True(t, errors.As(err, &m))
	assert.False(t, m.absent)
}

func TestFailedBenchmark(t *testing.T) {
	f := newFigures()
	f.addBench("tests", parseBench(readTestdata(t, "bench-fail.txt"), 2))
	r := find(t, rows(f, nil, 3), "11", "cold invocation", "kvm")
	assert.Equal(t, notMeasured, r.verdict)
	assert.Equal(t, "tests BenchmarkColdInvoke/kvm: benchmark failed: b_test.go:20: kvm_floor: exit status 1", r.why)

	// A whole run that failed is named for the benchmarks it should have
	// produced.
	f.runError("wrk", errNoWrk)
	r = find(t, rows(f, nil, 3), "11", "`tender serve`", "process")
	assert.Equal(t, "wrk process not in the output (wrk not in PATH (Debian: apt-get install wrk, or make bench-deps))", r.why)
}

func TestFreshRows(t *testing.T) {
	f := newFigures()
	f.addBench("tests", parseBench("BenchmarkFreshInvoke/kvm-2 \t 2000 \t 130725 ns/op \t 9.934 cold-x \t 3.283 x-warm \t 1287 µs-cold \t 129.5 µs-fresh \t 39.45 µs-warm\n", 2))
	rs := rows(f, nil, 3)
	w := find(t, rs, "12", "fresh invocation vs warm", "kvm")
	assert.Equal(t, "129.5 µs fresh vs 39.5 µs warm", w.measured)
	assert.Equal(t, "3.28x", w.ratio)
	assert.Equal(t, notMet, w.verdict)
	c := find(t, rs, "12", "fresh invocation vs cold", "kvm")
	assert.Equal(t, "129.5 µs fresh vs 1287.0 µs cold", c.measured)
	assert.Equal(t, "9.94x", c.ratio)
	assert.Equal(t, notMet, c.verdict)
	// The invocation benchmark does not measure throughput: that row names
	// the one it reads.
	assert.Equal(t, "tests BenchmarkFreshThroughput/kvm not in the output", find(t, rs, "12", "fresh throughput", "kvm").why)
	assert.Equal(t, "tests BenchmarkFreshThroughput/process not in the output", find(t, rs, "12", "fresh throughput", "process").why)

	f.addBench("tests", parseBench("BenchmarkFreshThroughput/kvm-2 \t 5000 \t 41632 ns/op \t 2513 fork+exec/s \t 24020 invocations/s \t 9.560 x-process\n"+
		"BenchmarkFreshMemory/kvm-2 \t 1 \t 198995229 ns/op \t 3.400 KiB-private/instance \t 2.820 KiB-snapshot/instance \t 6.220 KiB/instance \t 200.0 instances\n", 2))
	rs = rows(f, nil, 3)
	th := find(t, rs, "12", "fresh throughput", "kvm")
	assert.Equal(t, "24020 invocations/s vs 2513 fork+exec/s", th.measured)
	assert.Equal(t, notMet, th.verdict)
	m := find(t, rs, "12", "memory per extra fresh instance", "kvm")
	assert.Equal(t, "6.2 KiB each (2.8 KiB snapshot, 3.4 KiB private)", m.measured)
	assert.Equal(t, met, m.verdict)

	// The process backend's rows read its own benchmarks.
	f.addBench("tests", parseBench("BenchmarkFreshInvoke/process-2 \t 2000 \t 32780 ns/op \t 55.25 cold-x \t 3.267 x-warm \t 1778 µs-cold \t 32.18 µs-fresh \t 9.851 µs-warm\n", 2))
	rs = rows(f, nil, 3)
	p := find(t, rs, "12", "fresh invocation vs warm", "process")
	assert.Equal(t, "32.2 µs fresh vs 9.9 µs warm", p.measured)
	assert.Equal(t, notMet, p.verdict)
	assert.Equal(t, met, find(t, rs, "12", "fresh invocation vs cold", "process").verdict)
}

func TestSuiteRow(t *testing.T) {
	pass := suiteRun{suiteResult: suiteResult{Passed: 10}}
	fail := suiteRun{suiteResult: suiteResult{Failed: []string{"tests TestNoLeaks"}}}
	broken := suiteRun{err: errors.New("go test: exit status 2")}

	r := suiteRow([]suiteRun{pass, pass, pass}, 3)
	assert.Equal(t, met, r.verdict)
	assert.Equal(t, "3 of 3 runs passed", r.measured)

	r = suiteRow([]suiteRun{pass, fail, broken}, 3)
	assert.Equal(t, notMet, r.verdict)
	assert.Equal(t, "1 of 3 runs passed (run 2: failed tests TestNoLeaks; run 3: go test: exit status 2)", r.measured)

	r = suiteRow([]suiteRun{pass}, 3)
	assert.Equal(t, "not measured: 1 runs made (-runs), 3 needed", r.result())
}

func TestMarkdown(t *testing.T) {
	f := sampleFigures(t)
	rep := &report{machine: "test machine", commit: "abc", figures: f, need: 3,
		runs: []suiteRun{{suiteResult: suiteResult{Passed: 3}}}, failures: []string{"tests BenchmarkX: boom"}}
	rep.rows = rows(f, rep.runs, 3)
	md := rep.markdown()
	assert.Contains(t, md, "| 11 | warm invocation / one hypercall round trip | ≤ 1.1x | kvm | 54.0 µs invocation vs 49.0 µs hypercall | 1.103x | **NOT met** |\n")
	assert.Contains(t, md, "- run 1: passed in 0 s: 3 tests passed\n")
	assert.NotContains(t, md, "Load average")
	rep.loads = []string{"3.79 at the start", "5.10 at the end"}
	assert.Contains(t, rep.markdown(), "test machine; commit abc; elapsed 0s.\nLoad average (1 min) 3.79 at the start, 5.10 at the end: on a shared machine")
	rep.runs[0].Skipped = []string{"tests TestSoak"}
	assert.Contains(t, rep.markdown(), "- run 1: passed in 0 s: 3 tests passed, 1 skipped (tests TestSoak)\n")
	assert.Contains(t, md, "### Benchmark failures\n\n- tests BenchmarkX: boom\n")
	assert.Contains(t, md, "- tests BenchmarkWarmInvoke/kvm (n=2000): 54027 ns/op, 54.02 µs-invocation, 48.97 µs-hypercall, 1.103 x-hypercall\n")
	assert.NotContains(t, md, "bare VM", "no kvm_floor to compare BenchmarkCreateRunClose with")
	floor, err := parseKVMFloor("kvm_floor n=500 mem=4MiB median_us=816.5 mean_us=1424.9")
	require.NoError(t, err)
	f.put("kvm_floor 4MiB", floor)
	assert.Contains(t, rep.markdown(), "- bare VM of `monitor/kvm` (4 MiB) create + first exit + close vs kvm_floor 4 MiB, means: 2973 µs vs 1425 µs: 2.09x\n")
}

func TestNoKVM(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := run([]string{"-kvm", filepath.Join(t.TempDir(), "kvm")}, &stdout, &stderr)
	assert.Equal(t, 2, code)
	assert.Contains(t, stderr.String(), "make kvm-report needs /dev/kvm; without it CI runs make test-kvm-emulated")
	assert.Contains(t, stderr.String(), "no such file or directory")
	assert.Empty(t, stdout.String())
}

// TestSolo5Targets: issue 14's comparisons with solo5-hvt and solo5-spt
// come from BenchmarkSolo5Exec when it ran beside a Solo5 build; without
// one (the sample) they say which variables to set, and tender's own Solo5
// hello is still reported.
func TestSolo5Targets(t *testing.T) {
	rs := rows(sampleFigures(t), nil, 3)
	for _, c := range []struct{ name, be string }{
		{"Solo5 `test_hello` exec to exit under `tender run` vs `solo5-hvt`", "kvm"},
		{"the same, both with", "kvm"},
		{"Solo5 `test_hello` exec to exit under `tender run` vs `solo5-spt`", "process"},
	} {
		assert.Equal(t, "not measured: "+noSolo5, find(t, rs, "14", c.name, c.be).result(), c.name)
	}
	own := find(t, rs, "14", "tender's Solo5-ABI hello", "kvm")
	assert.Equal(t, "4.78 ms vs 4.41 ms hello.elf", own.measured)
	assert.Equal(t, "1.08x", own.ratio)
	assert.Equal(t, reported, own.verdict)

	f := newFigures()
	f.addBench("tests", parseBench("BenchmarkSolo5Exec-2   \t      30\t  67465945 ns/op\t         0.4444 x-solo5-hvt-tender-kvm\t         1.005 x-solo5-hvt-quiet-tender-kvm\t         3.080 x-solo5-spt-tender-process\t"+
		"     16207 µs-median-solo5-hvt\t      5886 µs-median-solo5-hvt-quiet\t      1447 µs-median-solo5-spt\t      7202 µs-median-tender-kvm-hvt\t      5916 µs-median-tender-kvm-hvt-quiet\t      4457 µs-median-tender-process-hvt\n", 2))
	rs = rows(f, nil, 3)
	hvt := find(t, rs, "14", "Solo5 `test_hello` exec to exit under `tender run` vs `solo5-hvt`", "kvm")
	assert.Equal(t, "7.20 ms vs 16.21 ms solo5-hvt", hvt.measured)
	assert.Equal(t, notMet, hvt.verdict, "0.44x is above 0.35x")
	assert.Equal(t, notMet, find(t, rs, "14", "the same, both with", "kvm").verdict)
	spt := find(t, rs, "14", "Solo5 `test_hello` exec to exit under `tender run` vs `solo5-spt`", "process")
	assert.Equal(t, "4.46 ms vs 1.45 ms solo5-spt", spt.measured)
	assert.Equal(t, "3.08x", spt.ratio)
}

// TestTenderBenchPlan: every `tender bench` row a target reads, on each of
// its backends, is measured by a run of tenderBenchPlan.
func TestTenderBenchPlan(t *testing.T) {
	const prefix = "tender bench {be}/"
	for _, tg := range targets {
		figs := append([]fig{tg.value}, tg.shown...)
		if tg.over != nil {
			figs = append(figs, *tg.over)
		}
		for _, fg := range figs {
			key, ok := strings.CutPrefix(fg.src, prefix)
			if !ok {
				continue
			}
			for _, be := range tg.backends {
				measured := false
				for _, b := range tenderBenchPlan {
					measured = measured || b.backend == be && b.selects(key)
				}
				assert.True(t, measured, "%s: no tender bench run measures %s on %s", tg.name, key, be)
			}
		}
	}
}

// TestSolo5LoopTargets: issue 14's compute loop and console round trip come
// from BenchmarkSolo5Compute and BenchmarkSolo5Console on each backend.
func TestSolo5LoopTargets(t *testing.T) {
	rs := rows(sampleFigures(t), nil, 3)
	c := find(t, rs, "14", "a compute loop in a Solo5 guest", "kvm")
	assert.Equal(t, "68.4 ms vs 66.9 ms host process", c.measured)
	assert.Equal(t, "1.02x", c.ratio)
	assert.Equal(t, met, c.verdict)
	c = find(t, rs, "14", "a compute loop in a Solo5 guest", "process")
	assert.Equal(t, "1.12x", c.ratio)
	assert.Equal(t, notMet, c.verdict, "1.123 is above 1.1")

	w := find(t, rs, "14", "console write round trip of a Solo5 guest", "kvm")
	assert.Equal(t, "52.1 µs Solo5 puts vs 50.3 µs tender console write", w.measured)
	assert.Equal(t, "1.04x", w.ratio)
	assert.Equal(t, met, w.verdict)
	w = find(t, rs, "14", "console write round trip of a Solo5 guest", "process")
	assert.Equal(t, "9.5 µs Solo5 puts vs 10.0 µs tender console write", w.measured)
	assert.Equal(t, met, w.verdict)

	// Without the benchmarks' output the rows say which is missing.
	rs = rows(newFigures(), nil, 3)
	assert.Equal(t, "not measured: tests BenchmarkSolo5Compute/kvm not in the output", find(t, rs, "14", "a compute loop", "kvm").result())
	assert.Equal(t, "not measured: tests BenchmarkSolo5Console/process not in the output", find(t, rs, "14", "console write round trip", "process").result())
}

func TestFloorsShown(t *testing.T) {
	// The floors print beside the targets they bound, from the same
	// benchmark run.
	f := newFigures()
	f.addBench("tests", parseBench("BenchmarkExec-2 \t 100 \t 1 ns/op \t 500 µs-median-static-c \t 2800 µs-median-tender-process \t 5.6 x-c-tender-process \t 3.4 x-c-go-spawn\n"+
		"BenchmarkSolo5Exec-2 \t 50 \t 1 ns/op \t 3000 µs-median-tender-process-hvt \t 1000 µs-median-solo5-spt \t 3.0 x-solo5-spt-tender-process \t 1.9 x-solo5-spt-go-spawn \t "+
		"4000 µs-median-tender-kvm-hvt-quiet \t 4200 µs-median-solo5-hvt-quiet \t 0.95 x-solo5-hvt-quiet-tender-kvm \t 0.8 x-solo5-hvt-quiet-tender-kvm-hello\n", 2))
	rs := rows(f, nil, 3)
	exec := find(t, rs, "11", "`tender run hello.elf` exec to exit vs static C", "process")
	assert.Equal(t, "2.80 ms vs 0.50 ms static C (a Go program that only runs the static C hello as its child: 3.40x)", exec.measured)
	assert.Equal(t, notMet, exec.verdict)
	assert.NotContains(t, find(t, rs, "11", "`tender run hello.elf` exec to exit vs static C", "kvm").measured, "child",
		"the process backend's floor is not KVM's")
	spt := find(t, rs, "14", "Solo5 `test_hello` exec to exit under `tender run` vs `solo5-spt`", "process")
	assert.Equal(t, "3.00 ms vs 1.00 ms solo5-spt (a Go program that only runs the static C hello as its child: 1.90x)", spt.measured)
	quiet := find(t, rs, "14", "the same, both with `--solo5:quiet`", "kvm")
	assert.Equal(t, "4.00 ms vs 4.20 ms solo5-hvt (tender's own hello.elf, no Solo5 boot traps: 0.80x)", quiet.measured)
	assert.Equal(t, "0.95x", quiet.ratio)

	// A ratio that rounds to its threshold shows the digit that decides.
	f.addBench("tests", parseBench("BenchmarkSolo5Exec-2 \t 50 \t 1 ns/op \t 0.3512 x-solo5-hvt-tender-kvm\n", 2))
	hvt := find(t, rows(f, nil, 3), "14", "Solo5 `test_hello` exec to exit under `tender run` vs `solo5-hvt`", "kvm")
	assert.Equal(t, "0.351x", hvt.ratio)
	assert.Equal(t, notMet, hvt.verdict)
}
