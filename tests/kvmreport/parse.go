package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
)

// result is one measurement: a benchmark's line of `go test -bench` output,
// or a figure of an outside tool (kvm_floor, wrk, tender bench), with every
// figure it printed by unit ("ns/op", "x-hypercall", "req/s", ...).
type result struct {
	N       int64
	Metrics map[string]float64
	// Units are the metrics' units in the order printed.
	Units []string
}

func (r *result) add(unit string, v float64) {
	if r.Metrics == nil {
		r.Metrics = map[string]float64{}
	}
	if _, ok := r.Metrics[unit]; !ok {
		r.Units = append(r.Units, unit)
	}
	r.Metrics[unit] = v
}

// benchOutput is what one `go test -bench` run printed: the results and the
// benchmarks that failed, each with the first lines of its message.
type benchOutput struct {
	Results map[string]result
	Order   []string
	Failed  map[string]string
}

// parseBench reads `go test -bench` text output. procs is the GOMAXPROCS the
// benchmarks ran with: Go appends "-procs" to each name when it is above 1,
// and that suffix is removed. A result line may come apart from its name when
// something printed in between; the numbers are then matched with the last
// name seen without them.
func parseBench(text string, procs int) benchOutput {
	out := benchOutput{Results: map[string]result{}, Failed: map[string]string{}}
	suffix := ""
	if procs > 1 {
		suffix = "-" + strconv.Itoa(procs)
	}
	name := func(s string) string { return strings.TrimSuffix(s, suffix) }
	pending := ""    // a benchmark name printed without its figures yet
	failing := ""    // the benchmark whose failure message is being read
	var msg []string // its lines
	endFailure := func() {
		if failing != "" {
			out.Failed[failing] = strings.Join(msg, "; ")
		}
		failing, msg = "", nil
	}
	for line := range strings.Lines(text) {
		line = strings.TrimRight(line, "\r\n")
		if i := strings.Index(line, "--- FAIL: "); i >= 0 {
			endFailure()
			f := strings.Fields(line[i+len("--- FAIL: "):])
			if len(f) > 0 {
				failing = name(f[0])
				if pending == failing {
					pending = ""
				}
			}
			continue
		}
		if failing != "" && strings.HasPrefix(line, "    ") && !strings.Contains(line, "--- ") {
			if len(msg) < 3 {
				msg = append(msg, strings.TrimSpace(line))
			}
			continue
		}
		endFailure()
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if strings.HasPrefix(f[0], "Benchmark") {
			pending = name(f[0])
			f = f[1:]
		}
		if pending == "" || len(f) < 3 {
			continue
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			continue
		}
		r := result{N: n}
		for i := 1; i+1 < len(f); i += 2 {
			v, err := parseFigure(f[i])
			if err != nil {
				break
			}
			r.add(f[i+1], v)
		}
		if len(r.Units) == 0 {
			continue
		}
		if _, seen := out.Results[pending]; !seen {
			out.Order = append(out.Order, pending)
		}
		out.Results[pending], pending = r, ""
	}
	endFailure()
	// A parent benchmark fails when a sub-benchmark does: name the leaves.
	for n := range out.Failed {
		for m := range out.Failed {
			if strings.HasPrefix(m, n+"/") {
				delete(out.Failed, n)
				break
			}
		}
	}
	return out
}

// suiteResult is one `go test -json ./...` run.
type suiteResult struct {
	// Failed are the failed tests, the innermost only ("tests
	// TestFaults/syscall", not also "tests TestFaults").
	Failed []string
	// FailedPackages failed without a failing test: a build error, a panic
	// outside a test, a timeout, TestMain.
	FailedPackages []string
	// Skipped are the tests that skipped ("tests TestSoak").
	Skipped []string
	Passed  int
}

// OK reports whether nothing failed.
func (s suiteResult) OK() bool { return len(s.Failed) == 0 && len(s.FailedPackages) == 0 }

// module is stripped from package paths in the report.
const module = "github.com/tendervm/tender/"

type testEvent struct {
	Action  string
	Package string
	Test    string
}

// parseSuite reads the event stream of `go test -json`. Lines that are not
// events are skipped (go prints some build output as plain text).
func parseSuite(r io.Reader) (suiteResult, error) {
	var res suiteResult
	failedTests := map[string][]string{} // package -> failed tests
	var failedPkgs []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for sc.Scan() {
		var ev testEvent
		if json.Unmarshal(sc.Bytes(), &ev) != nil {
			continue
		}
		pkg := strings.TrimPrefix(ev.Package, module)
		switch {
		case ev.Action == "fail" && ev.Test != "":
			failedTests[pkg] = append(failedTests[pkg], ev.Test)
		case ev.Action == "fail":
			failedPkgs = append(failedPkgs, pkg)
		case ev.Action == "pass" && ev.Test != "":
			res.Passed++
		case ev.Action == "skip" && ev.Test != "":
			res.Skipped = append(res.Skipped, pkg+" "+ev.Test)
		}
	}
	if err := sc.Err(); err != nil {
		return res, fmt.Errorf("reading go test -json output: %w", err)
	}
	for pkg, tests := range failedTests {
		for _, t := range tests {
			leaf := !slices.ContainsFunc(tests, func(u string) bool { return strings.HasPrefix(u, t+"/") })
			if leaf {
				res.Failed = append(res.Failed, pkg+" "+t)
			}
		}
	}
	for _, pkg := range failedPkgs {
		if len(failedTests[pkg]) == 0 {
			res.FailedPackages = append(res.FailedPackages, pkg)
		}
	}
	slices.Sort(res.Failed)
	slices.Sort(res.FailedPackages)
	slices.Sort(res.Skipped)
	return res, nil
}

// parseKVMFloor reads the line bin/bench/kvm_floor prints:
// "kvm_floor n=500 mem=4MiB median_us=816.5 mean_us=1424.9".
func parseKVMFloor(text string) (result, error) {
	r := result{}
	for _, f := range strings.Fields(text) {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			continue
		}
		switch k {
		case "n":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return r, fmt.Errorf("kvm_floor: %s in %q", f, text)
			}
			r.N = n
		case "median_us", "mean_us":
			x, err := parseFigure(v)
			if err != nil {
				return r, fmt.Errorf("kvm_floor: %s in %q", f, text)
			}
			r.add("µs-"+strings.TrimSuffix(k, "_us"), x)
		}
	}
	if _, ok := r.Metrics["µs-median"]; !ok {
		return r, fmt.Errorf("kvm_floor: no median_us in %q", strings.TrimSpace(text))
	}
	return r, nil
}

// parseWrk reads the report of `wrk --latency`: requests/s, the 50th and
// 99th percentile latencies (ms), the requests made and those answered with
// a status other than 2xx or 3xx, and socket errors.
func parseWrk(text string) (result, error) {
	r := result{}
	for line := range strings.Lines(text) {
		f := strings.Fields(line)
		switch {
		case len(f) == 2 && f[0] == "Requests/sec:":
			v, err := parseFigure(f[1])
			if err != nil {
				return r, fmt.Errorf("wrk: %q", line)
			}
			r.add("req/s", v)
		case len(f) == 2 && (f[0] == "50%" || f[0] == "99%"):
			ms, err := wrkMillis(f[1])
			if err != nil {
				return r, err
			}
			r.add("p"+strings.TrimSuffix(f[0], "%")+"-ms", ms)
		case len(f) >= 3 && f[1] == "requests" && f[2] == "in":
			n, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return r, fmt.Errorf("wrk: %q", line)
			}
			r.N = n
			r.add("requests", float64(n))
		case strings.HasPrefix(strings.TrimSpace(line), "Non-2xx or 3xx responses:"):
			n, err := parseFigure(f[len(f)-1])
			if err != nil {
				return r, fmt.Errorf("wrk: %q", line)
			}
			r.add("non-2xx", n)
		case len(f) > 0 && f[0] == "Socket" && len(f) > 2 && f[1] == "errors:":
			var total float64
			for _, x := range f[2:] {
				if v, err := parseFigure(strings.TrimSuffix(x, ",")); err == nil {
					total += v
				}
			}
			if math.IsInf(total, 0) {
				return r, fmt.Errorf("wrk: %q", line)
			}
			r.add("socket-errors", total)
		}
	}
	if _, ok := r.Metrics["req/s"]; !ok {
		return r, fmt.Errorf("wrk: no Requests/sec in its output")
	}
	return r, nil
}

// wrkMillis converts one of wrk's latencies ("850.00us", "6.66ms", "1.20s")
// to milliseconds.
func wrkMillis(s string) (float64, error) {
	for _, u := range []struct {
		suffix string
		scale  float64
	}{{"us", 1e-3}, {"ms", 1}, {"s", 1e3}, {"m", 60e3}} {
		if v, ok := strings.CutSuffix(s, u.suffix); ok {
			x, err := parseFigure(v)
			if err != nil || math.IsInf(x*u.scale, 0) {
				break
			}
			return x * u.scale, nil
		}
	}
	return 0, fmt.Errorf("wrk: latency %q", s)
}

// parseFigure parses a printed figure, which is finite: ParseFloat also
// accepts "NaN" and "Inf", which no tool prints for a measurement and which
// would spread through the report's sums and ratios.
func parseFigure(s string) (float64, error) {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, err
	}
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, fmt.Errorf("%q is no figure", s)
	}
	return v, nil
}
