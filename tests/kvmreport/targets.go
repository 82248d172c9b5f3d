package main

import (
	"errors"
	"fmt"
	"strings"
)

// target is one performance target of an issue, checked on each of its
// backends. Its figure is a metric (a ratio a benchmark reports, or an
// absolute figure), or the ratio of two figures (over set).
type target struct {
	issue, name, threshold string
	backends               []string
	// shown are the figures printed in the "measured" column.
	shown []fig
	// value is compared with limit; divided by over when over is set.
	value fig
	over  *fig
	// ratio says the value is a ratio (printed in the ratio column).
	ratio bool
	// op is "<=", "<" or ">="; empty for a figure reported without a
	// threshold.
	op    string
	limit float64
	// pending, when set, is why the target has no figure (no benchmark
	// measures it yet).
	pending string
	// whenAbsent replaces the "not in the output" reason when the source of
	// value printed nothing at all.
	whenAbsent string
	// whenNoMetric replaces the reason when the source ran but did not
	// report value's metric (a benchmark that leaves out the rows whose
	// baseline this machine lacks).
	whenNoMetric string
}

// verdict of one target on one backend.
type verdict int

const (
	met verdict = iota
	notMet
	notMeasured
	reported
)

// row is one line of the report's table.
type row struct {
	issue, name, threshold, backend string
	measured, ratio                 string
	verdict                         verdict
	why                             string
}

func (r row) result() string {
	switch r.verdict {
	case met:
		return "met"
	case notMet:
		return "**NOT met**"
	case reported:
		return "reported (no threshold)"
	}
	return "not measured: " + r.why
}

// Formats of figures; a baseline's starts with vs, and the measured column
// is the figures' texts one after the other.
const (
	vs = " vs "
	us = "%.1f µs"
	ms = "%.2f ms"
	x  = "%.2fx"
)

// Figures the targets read, in the units the benchmarks report today. A
// renamed metric shows up as "metric X not found in Y output".
var (
	warmInvoke    = fig{src: "tests BenchmarkWarmInvoke/{be}", unit: "µs-invocation", format: us + " invocation"}
	warmHC        = fig{src: "tests BenchmarkWarmInvoke/{be}", unit: "µs-hypercall", format: vs + us + " hypercall"}
	warmRatio     = fig{src: "tests BenchmarkWarmInvoke/{be}", unit: "x-hypercall", format: x}
	thrRate       = fig{src: "tests BenchmarkWarmThroughput/{be}", unit: "invocations/s", format: "%.0f invocations/s"}
	thrProcs      = fig{src: "tests BenchmarkWarmThroughput/{be}", unit: "fork+exec/s", format: vs + "%.0f fork+exec/s"}
	thrRatio      = fig{src: "tests BenchmarkWarmThroughput/{be}", unit: "x-process", format: x}
	coldInvoke    = fig{src: "tests BenchmarkColdInvoke/{be}", unit: "µs-median", format: us}
	coldFloor     = fig{src: "tests BenchmarkColdInvoke/{be}", unit: "µs-c-floor", format: vs + us + " kvm_floor"}
	coldRatio     = fig{src: "tests BenchmarkColdInvoke/{be}", unit: "x-c-floor", format: x}
	execTender    = fig{src: "tests BenchmarkExec", unit: "µs-median-tender-{be}", scale: 1e-3, format: ms}
	execC         = fig{src: "tests BenchmarkExec", unit: "µs-median-static-c", scale: 1e-3, format: vs + ms + " static C"}
	execRatio     = fig{src: "tests BenchmarkExec", unit: "x-c-tender-{be}", format: x}
	execGo        = fig{src: "tests BenchmarkExec", unit: "µs-median-go-hello", scale: 1e-3, format: " (a static Go hello: " + ms + ")"}
	execVM        = fig{src: "tests BenchmarkExec", unit: "x-c-c-vm", format: " (a C program that only creates, enters and destroys one VM: " + x + ")"}
	execSpawn     = fig{src: "tests BenchmarkExec", unit: "x-c-go-spawn", format: " (a Go program that only runs the static C hello as its child: " + x + ")"}
	execRSS       = fig{src: "tests BenchmarkExec", unit: "KiB-peak-rss-tender-{be}", scale: 1.0 / 1024, format: "%.1f MiB"}
	bootMedian    = fig{src: "tests BenchmarkBoot/{be}", unit: "µs-median", format: us}
	bootFloor     = fig{src: "tests BenchmarkBoot/{be}", unit: "µs-c-floor", format: vs + us + " kvm_floor"}
	bootRatio     = fig{src: "tests BenchmarkBoot/{be}", unit: "x-c-floor", format: x}
	console       = fig{src: "tests BenchmarkHypercall/{be}", unit: "µs/call", format: us}
	exitC3        = fig{src: "tests BenchmarkHypercall/{be}", unit: "µs-c-exit-cpl3", format: vs + us + " C at CPL 3"}
	exitC0        = fig{src: "tests BenchmarkHypercall/{be}", unit: "µs-c-exit-cpl0", format: " (C at CPL 0, where Solo5's hvt guests run: " + us + ")"}
	exitCRatio    = fig{src: "tests BenchmarkHypercall/{be}", unit: "x-c-exit-cpl3", format: x}
	rawExitKVM    = fig{src: "monitor/kvm BenchmarkExitOut", unit: "ns/op", scale: 1e-3, format: vs + us + " raw exit"}
	rawExitProc   = fig{src: "monitor/process BenchmarkHypercall", unit: "ns/op", scale: 1e-3, format: vs + us + " raw exit"}
	shaGuest      = fig{src: "tests BenchmarkSHA256/{be}", unit: "ms-guest", format: "%.0f ms"}
	shaProc       = fig{src: "tests BenchmarkSHA256/{be}", unit: "ms-process", format: vs + "%.0f ms host process"}
	shaRatio      = fig{src: "tests BenchmarkSHA256/{be}", unit: "guest/process", format: x}
	idleKiB       = fig{src: "tests BenchmarkIdleInstances/{be}", unit: "KiB/instance", format: "%.0f KiB each"}
	idleN         = fig{src: "tests BenchmarkIdleInstances/{be}", unit: "instances", format: ", %.0f instances"}
	wrkRate       = fig{src: "wrk {be}", unit: "req/s", format: "%.0f req/s"}
	wrkP99        = fig{src: "wrk {be}", unit: "p99-ms", format: ", p99 %.2f ms"}
	plainRate     = fig{src: "wrk net/http", unit: "req/s", format: vs + "net/http %.0f req/s"}
	wrkRatio      = fig{src: "wrk {be}", unit: "x-baseline", format: x}
	plainP99      = fig{src: "wrk net/http", unit: "p99-ms", format: ", p99 %.2f ms"}
	childRate     = fig{src: "wrk " + childServer, unit: "req/s", format: "%.0f req/s"}
	childRatio    = fig{src: "wrk " + childServer, unit: "x-baseline", format: x}
	childFloor    = fig{src: "wrk " + childServer, unit: "x-baseline", format: " (a `net/http` echo passing each body through a child process: " + x + ")"}
	benchCold     = fig{src: "tender bench {be}/tender-cold", unit: "median-µs", scale: 1e-3, format: ms}
	benchFresh    = fig{src: "tender bench {be}/tender-fresh", unit: "median-µs", scale: 1e-3, format: ms}
	benchCrun     = fig{src: "tender bench {be}/crun-default", unit: "median-µs", scale: 1e-3, format: vs + ms + " crun"}
	both          = []string{"kvm", "process"}
	kvmOnly       = []string{"kvm"}
	freshInvoke   = fig{src: "tests BenchmarkFreshInvoke/{be}", unit: "µs-fresh", format: us + " fresh"}
	freshWarm     = fig{src: "tests BenchmarkFreshInvoke/{be}", unit: "µs-warm", format: vs + us + " warm"}
	freshCold     = fig{src: "tests BenchmarkFreshInvoke/{be}", unit: "µs-cold", format: vs + us + " cold"}
	freshRatio    = fig{src: "tests BenchmarkFreshInvoke/{be}", unit: "x-warm", format: x}
	freshThr      = fig{src: "tests BenchmarkFreshThroughput/{be}", unit: "invocations/s", format: "%.0f invocations/s"}
	freshProcs    = fig{src: "tests BenchmarkFreshThroughput/{be}", unit: "fork+exec/s", format: vs + "%.0f fork+exec/s"}
	freshThrRatio = fig{src: "tests BenchmarkFreshThroughput/{be}", unit: "x-process", format: x}
	freshMem      = fig{src: "tests BenchmarkFreshMemory/{be}", unit: "KiB/instance", format: "%.1f KiB each"}
	freshMemSnap  = fig{src: "tests BenchmarkFreshMemory/{be}", unit: "KiB-snapshot/instance", format: " (%.1f KiB snapshot"}
	freshMemPriv  = fig{src: "tests BenchmarkFreshMemory/{be}", unit: "KiB-private/instance", format: ", %.1f KiB private)"}
	s5Tender      = fig{src: "tests BenchmarkSolo5Exec", unit: "µs-median-tender-{be}-hvt", scale: 1e-3, format: ms}
	s5TenderQuiet = fig{src: "tests BenchmarkSolo5Exec", unit: "µs-median-tender-{be}-hvt-quiet", scale: 1e-3, format: ms}
	s5HVT         = fig{src: "tests BenchmarkSolo5Exec", unit: "µs-median-solo5-hvt", scale: 1e-3, format: vs + ms + " solo5-hvt"}
	s5HVTQuiet    = fig{src: "tests BenchmarkSolo5Exec", unit: "µs-median-solo5-hvt-quiet", scale: 1e-3, format: vs + ms + " solo5-hvt"}
	s5SPT         = fig{src: "tests BenchmarkSolo5Exec", unit: "µs-median-solo5-spt", scale: 1e-3, format: vs + ms + " solo5-spt"}
	s5QuietOwn    = fig{src: "tests BenchmarkSolo5Exec", unit: "x-solo5-hvt-quiet-tender-{be}-hello", format: " (tender's own hello.elf, no Solo5 boot traps: " + x + ")"}
	s5SPTSpawn    = fig{src: "tests BenchmarkSolo5Exec", unit: "x-solo5-spt-go-spawn", format: " (a Go program that only runs the static C hello as its child: " + x + ")"}
	s5HVTRatio    = fig{src: "tests BenchmarkSolo5Exec", unit: "x-solo5-hvt-tender-{be}", format: x}
	s5QuietRatio  = fig{src: "tests BenchmarkSolo5Exec", unit: "x-solo5-hvt-quiet-tender-{be}", format: x}
	s5SPTRatio    = fig{src: "tests BenchmarkSolo5Exec", unit: "x-solo5-spt-tender-{be}", format: x}
	s5Own         = fig{src: "tests BenchmarkSolo5Exec", unit: "µs-median-tender-{be}-s5hello", scale: 1e-3, format: ms}
	s5OwnHello    = fig{src: "tests BenchmarkSolo5Exec", unit: "µs-median-tender-{be}-hello", scale: 1e-3, format: vs + ms + " hello.elf"}
	s5OwnRatio    = fig{src: "tests BenchmarkSolo5Exec", unit: "x-hello-tender-{be}-s5hello", format: x}
	s5Compute     = fig{src: "tests BenchmarkSolo5Compute/{be}", unit: "ms-guest", format: "%.1f ms"}
	s5ComputeC    = fig{src: "tests BenchmarkSolo5Compute/{be}", unit: "ms-process", format: vs + "%.1f ms host process"}
	s5ComputeX    = fig{src: "tests BenchmarkSolo5Compute/{be}", unit: "guest/process", format: x}
	s5Console     = fig{src: "tests BenchmarkSolo5Console/{be}", unit: "µs/call-solo5", format: us + " Solo5 puts"}
	s5ConsoleOwn  = fig{src: "tests BenchmarkSolo5Console/{be}", unit: "µs/call-tender", format: vs + us + " tender console write"}
	s5ConsoleX    = fig{src: "tests BenchmarkSolo5Console/{be}", unit: "x-tender", format: x}
)

// noSolo5 is why issue 14's comparisons with Solo5 are not measured when
// the machine has no Solo5 build the benchmark can find.
const noSolo5 = "set SOLO5_TESTS (Solo5's tests/ directory), SOLO5_HVT and SOLO5_SPT (its tenders), absolute paths (docs/solo5.md)"

// noBaseline is why a serve ratio is missing when tender serve was measured
// and the plain net/http echo was not (its own row says why).
const noBaseline = "the net/http echo was not measured in the same rounds (see wrk net/http)"

// suiteTarget is the table's first row; its figures come from the test runs.
const suiteTarget = "full suite with TENDER_REQUIRE_KVM=1"

// targets are the performance targets of the real-KVM issue (11), the core
// monitor (2), function invocations (3), fresh instances (12) and Solo5
// guests (14).
var targets = []target{
	{issue: "11", name: "warm invocation / one hypercall round trip", threshold: "≤ 1.1x", backends: both,
		shown: []fig{warmInvoke, warmHC}, value: warmRatio, ratio: true, op: "<=", limit: 1.1},
	{issue: "11", name: "warm throughput, 2 callers, vs fork+exec of the static C echo", threshold: "≥ 12x", backends: kvmOnly,
		shown: []fig{thrRate, thrProcs}, value: thrRatio, ratio: true, op: ">=", limit: 12},
	{issue: "11", name: "cold invocation in the library vs kvm_floor", threshold: "≤ 1.3x", backends: kvmOnly,
		shown: []fig{coldInvoke, coldFloor}, value: coldRatio, ratio: true, op: "<=", limit: 1.3},
	{issue: "11", name: "`tender run hello.elf` exec to exit vs static C", threshold: "≤ 3.5x", backends: kvmOnly,
		shown: []fig{execTender, execC, execGo, execVM}, value: execRatio, ratio: true, op: "<=", limit: 3.5},
	{issue: "11", name: "`tender run hello.elf` exec to exit vs static C", threshold: "≤ 3.5x", backends: []string{"process"},
		shown: []fig{execTender, execC, execGo, execSpawn}, value: execRatio, ratio: true, op: "<=", limit: 3.5},
	{issue: "11", name: "`tender bench`: cold (library) vs crun default, times faster", threshold: "≥ 6x", backends: kvmOnly,
		shown: []fig{benchCold, benchCrun}, value: benchCrun, over: &benchCold, ratio: true, op: ">=", limit: 6},
	{issue: "11", name: "idle warm instance, 1,000 in one process", threshold: "≤ 256 KiB", backends: kvmOnly,
		shown: []fig{idleKiB, idleN}, value: idleKiB, op: "<=", limit: 256},
	{issue: "11", name: "`tender serve` vs `net/http` echo, wrk -t2 -c64", threshold: "≥ 0.25x", backends: kvmOnly,
		shown: []fig{wrkRate, plainRate}, value: wrkRatio, ratio: true, op: ">=", limit: 0.25, whenNoMetric: noBaseline},
	{issue: "11", name: "`tender serve` vs `net/http` echo, wrk -t2 -c64", threshold: "≥ 0.6x", backends: []string{"process"},
		shown: []fig{wrkRate, plainRate, childFloor}, value: wrkRatio, ratio: true, op: ">=", limit: 0.6, whenNoMetric: noBaseline},
	{issue: "11", name: "a `net/http` echo passing each body through a child process and back (the floor of the process backend's serve) vs `net/http` echo", threshold: "report", backends: []string{"process"},
		shown: []fig{childRate, plainRate}, value: childRatio, ratio: true, whenNoMetric: noBaseline},

	{issue: "2", name: "`tender run hello.elf` exec to exit, median", threshold: "≤ 2 ms", backends: both,
		shown: []fig{execTender}, value: execTender, op: "<=", limit: 2},
	{issue: "2", name: "`tender run hello.elf` exec to exit vs static C", threshold: "≤ 4x", backends: both,
		shown: []fig{execTender, execC}, value: execRatio, ratio: true, op: "<=", limit: 4},
	{issue: "2", name: "in-library create + boot + run + close of hello vs kvm_floor", threshold: "≤ 1.25x", backends: kvmOnly,
		shown: []fig{bootMedian, bootFloor}, value: bootRatio, ratio: true, op: "<=", limit: 1.25},
	{issue: "2", name: "console-write round trip vs the raw exit", threshold: "≤ 1.2x", backends: kvmOnly,
		shown: []fig{console, rawExitKVM}, value: console, over: &rawExitKVM, ratio: true, op: "<=", limit: 1.2},
	{issue: "2", name: "console-write round trip vs the raw exit", threshold: "≤ 1.2x", backends: []string{"process"},
		shown: []fig{console, rawExitProc}, value: console, over: &rawExitProc, ratio: true, op: "<=", limit: 1.2},
	{issue: "2", name: "console-write round trip below Solo5's", threshold: "< 26.5 µs", backends: both,
		shown: []fig{console}, value: console, op: "<", limit: 26.5},
	{issue: "2", name: "console-write round trip vs a C monitor's exit at the guest's CPL (kvm_floor exits)", threshold: "report", backends: kvmOnly,
		shown: []fig{console, exitC3, exitC0}, value: exitCRatio, ratio: true},
	{issue: "2", name: "sha256 of 64 MiB in the guest vs the same C as a host process", threshold: "≤ 1.1x", backends: both,
		shown: []fig{shaGuest, shaProc}, value: shaRatio, ratio: true, op: "<=", limit: 1.1},
	{issue: "2", name: "peak RSS of `tender run hello.elf`", threshold: "≤ 8 MiB", backends: both,
		shown: []fig{execRSS}, value: execRSS, op: "<=", limit: 8},
	{issue: "2", name: "512 MiB guest touching 1 MiB costs about 1 MiB", threshold: "≈ 1 MiB", backends: both,
		pending: "no benchmark: TestLazy (monitor/guestmem) checks it in the test runs"},

	{issue: "3", name: "warm invocation of echo / one hypercall round trip", threshold: "≤ 1.2x", backends: both,
		shown: []fig{warmInvoke, warmHC}, value: warmRatio, ratio: true, op: "<=", limit: 1.2},
	{issue: "3", name: "warm throughput, 2 callers, vs fork+exec of the static C echo", threshold: "≥ 10x", backends: both,
		shown: []fig{thrRate, thrProcs}, value: thrRatio, ratio: true, op: ">=", limit: 10},
	{issue: "3", name: "cold invocation vs kvm_floor", threshold: "≤ 1.3x", backends: kvmOnly,
		shown: []fig{coldInvoke, coldFloor}, value: coldRatio, ratio: true, op: "<=", limit: 1.3},
	{issue: "3", name: "idle warm instance of echo", threshold: "≤ 256 KiB", backends: both,
		shown: []fig{idleKiB}, value: idleKiB, op: "<=", limit: 256},
	{issue: "3", name: "1,000 idle warm instances in one process", threshold: "1,000", backends: both,
		shown: []fig{idleN}, value: idleN, op: ">=", limit: 1000},
	{issue: "3", name: "`serve` under wrk vs a plain `net/http` echo: req/s and p99", threshold: "report", backends: both,
		shown: []fig{wrkRate, wrkP99, plainRate, plainP99}, value: wrkRatio, ratio: true, whenNoMetric: noBaseline},

	{issue: "12", name: "fresh invocation vs warm invocation (echo)", threshold: "≤ 2x", backends: both,
		shown: []fig{freshInvoke, freshWarm}, value: freshRatio, ratio: true, op: "<=", limit: 2},
	{issue: "12", name: "fresh invocation vs cold invocation, times faster", threshold: "≥ 15x", backends: both,
		shown: []fig{freshInvoke, freshCold}, value: freshCold, over: &freshInvoke, ratio: true, op: ">=", limit: 15},
	{issue: "12", name: "fresh throughput, 2 callers, vs fork+exec of the static C echo", threshold: "≥ 10x", backends: both,
		shown: []fig{freshThr, freshProcs}, value: freshThrRatio, ratio: true, op: ">=", limit: 10},
	{issue: "12", name: "memory per extra fresh instance of fn_echo (dirtied pages included)", threshold: "≤ 64 KiB + dirtied pages", backends: both,
		shown: []fig{freshMem, freshMemSnap, freshMemPriv}, value: freshMem, op: "<=", limit: 64},
	{issue: "12", name: "`tender bench`: fresh vs crun default, times faster", threshold: "≥ 100x", backends: both,
		shown: []fig{benchFresh, benchCrun}, value: benchCrun, over: &benchFresh, ratio: true, op: ">=", limit: 100,
		whenAbsent: "`tender bench` reported no tender-fresh row"},

	{issue: "14", name: "Solo5 `test_hello` exec to exit under `tender run` vs `solo5-hvt`", threshold: "≤ 0.35x", backends: kvmOnly,
		shown: []fig{s5Tender, s5HVT}, value: s5HVTRatio, ratio: true, op: "<=", limit: 0.35, whenNoMetric: noSolo5},
	{issue: "14", name: "the same, both with `--solo5:quiet`", threshold: "≤ 0.75x", backends: kvmOnly,
		shown: []fig{s5TenderQuiet, s5HVTQuiet, s5QuietOwn}, value: s5QuietRatio, ratio: true, op: "<=", limit: 0.75, whenNoMetric: noSolo5},
	{issue: "14", name: "Solo5 `test_hello` exec to exit under `tender run` vs `solo5-spt`", threshold: "≤ 2x", backends: []string{"process"},
		shown: []fig{s5Tender, s5SPT, s5SPTSpawn}, value: s5SPTRatio, ratio: true, op: "<=", limit: 2, whenNoMetric: noSolo5},
	{issue: "14", name: "tender's Solo5-ABI hello vs its own hello.elf, exec to exit", threshold: "report", backends: both,
		shown: []fig{s5Own, s5OwnHello}, value: s5OwnRatio, ratio: true},
	{issue: "14", name: "a compute loop in a Solo5 guest vs the same C as a host process", threshold: "≤ 1.1x", backends: both,
		shown: []fig{s5Compute, s5ComputeC}, value: s5ComputeX, ratio: true, op: "<=", limit: 1.1},
	{issue: "14", name: "console write round trip of a Solo5 guest vs a tender guest", threshold: "≤ 1.1x", backends: both,
		shown: []fig{s5Console, s5ConsoleOwn}, value: s5ConsoleX, ratio: true, op: "<=", limit: 1.1},
}

// evaluate makes the target's row for one backend.
func (t target) evaluate(f *figures, be string) row {
	r := row{issue: t.issue, name: t.name, threshold: t.threshold, backend: be, measured: "–", ratio: "–"}
	if t.pending != "" {
		r.verdict, r.why = notMeasured, t.pending
		return r
	}
	var parts []string
	for _, g := range t.shown {
		g = g.at(be)
		if v, err := g.get(f); err == nil {
			parts = append(parts, fmt.Sprintf(g.format, v))
		}
	}
	if len(parts) > 0 {
		r.measured = strings.TrimPrefix(strings.TrimPrefix(strings.Join(parts, ""), vs), ", ")
	}
	v, err := t.value.at(be).get(f)
	if err == nil && t.over != nil {
		var d float64
		d, err = t.over.at(be).get(f)
		if err == nil && d <= 0 {
			err = fmt.Errorf("%s is %g, not a baseline to divide by", t.over.at(be).src, d)
		}
		v /= d
	}
	if err != nil {
		r.verdict, r.why = notMeasured, err.Error()
		var m *missingError
		switch {
		case errors.As(err, &m) && m.absent && t.whenAbsent != "":
			r.why = t.whenAbsent
		case errors.As(err, &m) && m.noMetric && t.whenNoMetric != "":
			r.why = t.whenNoMetric
		}
		return r
	}
	if t.ratio {
		r.ratio = fmt.Sprintf("%.2fx", v)
		if t.op != "" && r.ratio == fmt.Sprintf("%.2fx", t.limit) && v != t.limit {
			// 0.351x against ≤ 0.35x must not read as 0.35x, not met.
			r.ratio = fmt.Sprintf("%.3fx", v)
		}
	}
	ok := false
	switch t.op {
	case "":
		r.verdict = reported
		return r
	case "<=":
		ok = v <= t.limit
	case "<":
		ok = v < t.limit
	case ">=":
		ok = v >= t.limit
	}
	r.verdict = notMet
	if ok {
		r.verdict = met
	}
	return r
}

// suiteRow is the table's row for the test runs: met when there were at
// least need runs and all of them passed.
func suiteRow(runs []suiteRun, need int) row {
	r := row{issue: "11", name: suiteTarget, threshold: fmt.Sprintf("0 failures in %d runs in a row", need), backend: "both", ratio: "–"}
	passed := 0
	var failed []string
	for i, s := range runs {
		if s.OK() {
			passed++
		} else {
			failed = append(failed, fmt.Sprintf("run %d: %s", i+1, s.summary()))
		}
	}
	r.measured = fmt.Sprintf("%d of %d runs passed", passed, len(runs))
	if len(failed) > 0 {
		r.measured += " (" + strings.Join(failed, "; ") + ")"
	}
	switch {
	case len(failed) > 0:
		r.verdict = notMet
	case len(runs) < need:
		r.verdict, r.why = notMeasured, fmt.Sprintf("%d runs made (-runs), %d needed", len(runs), need)
	default:
		r.verdict = met
	}
	return r
}

// rows evaluates every target on each of its backends.
func rows(f *figures, runs []suiteRun, need int) []row {
	out := []row{suiteRow(runs, need)}
	for _, t := range targets {
		for _, be := range t.backends {
			out = append(out, t.evaluate(f, be))
		}
	}
	return out
}
