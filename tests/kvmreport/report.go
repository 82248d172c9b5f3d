package main

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// report is everything the Markdown output shows.
type report struct {
	date     time.Time
	machine  string
	commit   string
	runs     []suiteRun
	need     int
	rows     []row
	figures  *figures
	failures []string
	phases   []string
	// loads are the load averages noted during the run.
	loads   []string
	elapsed time.Duration
}

// cell makes s safe inside a Markdown table cell.
func cell(s string) string {
	return strings.NewReplacer("|", `\|`, "\n", " ").Replace(s)
}

// markdown renders the report: the targets table first, then the test runs,
// the benchmark failures and every figure measured.
func (rep *report) markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "## make kvm-report, %s\n\n", rep.date.UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "%s; commit %s; elapsed %s.\n", rep.machine, rep.commit, rep.elapsed.Round(time.Second))
	if len(rep.loads) > 0 {
		fmt.Fprintf(&b, "Load average (1 min) %s: on a shared machine, compare ratios, and rerun before trusting one near its threshold.\n", strings.Join(rep.loads, ", "))
	}
	b.WriteString("\n")
	b.WriteString("| issue | target | threshold | backend | measured | ratio | result |\n")
	b.WriteString("|---|---|---|---|---|---:|---|\n")
	for _, r := range rep.rows {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s |\n", r.issue, cell(r.name), cell(r.threshold), r.backend,
			cell(r.measured), r.ratio, cell(r.result()))
	}
	b.WriteString("\nA target not met does not fail `make kvm-report`; a failed test run or benchmark does.\n")

	b.WriteString("\n### Test runs (`go test -count=1 ./...`, TENDER_REQUIRE_KVM=1)\n\n")
	for i, s := range rep.runs {
		verdict := "passed"
		if !s.OK() {
			verdict = "FAILED"
		}
		fmt.Fprintf(&b, "- run %d: %s in %.0f s: %s\n", i+1, verdict, s.elapsed.Seconds(), s.summary())
	}
	if len(rep.runs) == 0 {
		b.WriteString("- none (-runs 0)\n")
	}
	if len(rep.failures) > 0 {
		b.WriteString("\n### Benchmark failures\n\n")
		for _, f := range rep.failures {
			fmt.Fprintf(&b, "- %s\n", f)
		}
	}
	b.WriteString("\n### Every figure of this run\n\n")
	for _, src := range rep.figures.order {
		r := rep.figures.results[src]
		var parts []string
		for _, u := range r.Units {
			parts = append(parts, number(r.Metrics[u])+" "+u)
		}
		fmt.Fprintf(&b, "- %s (n=%d): %s\n", src, r.N, strings.Join(parts, ", "))
	}
	if crc, err := rep.figures.metric("monitor/kvm BenchmarkCreateRunClose", "ns/op"); err == nil {
		if fl, err := rep.figures.metric("kvm_floor 4MiB", "µs-mean"); err == nil && fl > 0 {
			fmt.Fprintf(&b, "- bare VM of `monitor/kvm` (4 MiB) create + first exit + close vs kvm_floor 4 MiB, means: %.0f µs vs %.0f µs: %.2fx\n",
				crc/1e3, fl, crc/1e3/fl)
		}
	}
	if len(rep.phases) > 0 {
		b.WriteString("\n### Phases\n\n")
		for _, p := range rep.phases {
			fmt.Fprintf(&b, "- %s\n", p)
		}
	}
	return b.String()
}

// describeMachine says what the report ran on, in one line.
func describeMachine() string {
	var u unix.Utsname
	kernel := "?"
	if unix.Uname(&u) == nil {
		kernel = unix.ByteSliceToString(u.Release[:])
	}
	cpu := "?"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for l := range strings.Lines(string(b)) {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	kvm := "?"
	for _, m := range []string{"kvm_pvm", "kvm_intel", "kvm_amd"} {
		if _, err := os.Stat("/sys/module/" + m); err == nil {
			kvm = m
		}
	}
	return fmt.Sprintf("%s, %d CPUs, Linux %s, KVM module %s, %s", cpu, runtime.NumCPU(), kernel, kvm, runtime.Version())
}

// gitCommit is the short commit of the work tree, "+dirty" when it has
// changes.
func gitCommit(ctx context.Context) string {
	out, err := commandContext(ctx, "git", "describe", "--always", "--dirty=+dirty").Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}

// number prints v with 4 significant digits, without an exponent.
func number(v float64) string {
	if v >= 1000 || v <= -1000 {
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return strconv.FormatFloat(v, 'g', 4, 64)
}

// loadAvg is the 1-minute load average, "?" where it cannot be read.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) > 0 {
		return f[0]
	}
	return "?"
}
