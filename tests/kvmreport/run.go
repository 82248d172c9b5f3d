package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tendervm/tender/bench"
)

// runner runs the suite and the benchmarks from the repository root and
// keeps their raw output in logs.
type runner struct {
	ctx  context.Context
	logs string
	env  []string
	// say reports progress.
	say func(format string, args ...any)
	// benchFailures are the benchmarks and benchmark runs that failed.
	benchFailures []string
	// binaries are the test binaries built, by package.
	binaries map[string]string
}

// suiteRun is one run of the whole suite.
type suiteRun struct {
	suiteResult
	// err is set when go test failed in a way its events do not show.
	err     error
	elapsed time.Duration
}

// OK reports whether the run passed.
func (s suiteRun) OK() bool { return s.err == nil && s.suiteResult.OK() }

func (s suiteRun) summary() string {
	var parts []string
	if len(s.Failed) > 0 {
		parts = append(parts, "failed "+strings.Join(s.Failed, ", "))
	}
	if len(s.FailedPackages) > 0 {
		parts = append(parts, "package failed without a failing test (build error, panic, timeout; see the log) "+strings.Join(s.FailedPackages, ", "))
	}
	if s.err != nil {
		parts = append(parts, s.err.Error())
	}
	if len(parts) == 0 {
		sum := fmt.Sprintf("%d tests passed", s.Passed)
		if len(s.Skipped) > 0 {
			sum += fmt.Sprintf(", %d skipped (%s)", len(s.Skipped), strings.Join(s.Skipped, ", "))
		}
		return sum
	}
	return strings.Join(parts, "; ")
}

// cancelGrace is how long a command has, once the report is interrupted,
// to clean up after SIGINT before it is killed and its pipes are closed.
var cancelGrace = 30 * time.Second

// commandContext is exec.CommandContext for every command the report runs.
// The command gets a process group of its own, and ctx's end sends SIGINT
// to that group, as Ctrl-C in a terminal does, rather than SIGKILL to the
// command: tender-bench then removes its bundles, state and cgroups, and go
// test's binaries get the signal too (go test does not pass it on). After
// cancelGrace, the command is killed and Wait no longer waits for whatever
// still holds its output.
func commandContext(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGINT) }
	cmd.WaitDelay = cancelGrace
	return cmd
}

// command runs name with args in dir, stdout and stderr together into the
// log file, and returns what it printed.
func (r *runner) command(log, dir, name string, args ...string) (string, error) {
	cmd := commandContext(r.ctx, name, args...)
	cmd.Dir, cmd.Env = dir, r.env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if werr := os.WriteFile(filepath.Join(r.logs, log), out.Bytes(), 0o644); werr != nil && err == nil {
		err = werr
	}
	return out.String(), err
}

// suite runs `go test -count=1 -json ./...` once.
func (r *runner) suite(i int) suiteRun {
	start := time.Now()
	log := fmt.Sprintf("suite-%d.json", i)
	out, err := r.command(log, ".", "go", "test", "-count=1", "-json", "./...")
	res, perr := parseSuite(strings.NewReader(out))
	run := suiteRun{suiteResult: res, elapsed: time.Since(start)}
	switch {
	case perr != nil:
		run.err = perr
	case err != nil && res.OK():
		run.err = fmt.Errorf("go test: %v (%s)", err, filepath.Join(r.logs, log))
	}
	return run
}

// benchStep is one run of a package's test binary: the benchmarks matching
// re, each for benchtime; then, with floorMiB set, bin/bench/kvm_floor for a
// VM of that size.
type benchStep struct {
	pkg, re, benchtime string
	floorMiB           int
}

// testBinary builds the test binary of pkg (a directory relative to the
// root) into the log directory, once.
func (r *runner) testBinary(pkg string) (string, error) {
	if bin, ok := r.binaries[pkg]; ok {
		return bin, nil
	}
	bin, err := filepath.Abs(filepath.Join(r.logs, strings.ReplaceAll(pkg, "/", "-")+".test"))
	if err != nil {
		return "", err
	}
	log := "build-" + strings.ReplaceAll(pkg, "/", "-") + ".txt"
	if out, err := r.command(log, ".", "go", "test", "-c", "-o", bin, "./"+pkg); err != nil {
		return "", fmt.Errorf("go test -c ./%s: %v: %s", pkg, err, lastLine(out))
	}
	r.binaries[pkg] = bin
	return bin, nil
}

// benchmark runs one step and adds its results to f. A failed benchmark is
// recorded in f and r.benchFailures.
func (r *runner) benchmark(f *figures, i int, st benchStep) {
	start := time.Now()
	bin, err := r.testBinary(st.pkg)
	if err != nil {
		f.runError(st.pkg, err)
		r.benchFailures = append(r.benchFailures, err.Error())
		return
	}
	log := fmt.Sprintf("bench-%d-%s.txt", i+1, strings.ReplaceAll(st.pkg, "/", "-"))
	out, err := r.command(log, st.pkg, bin, "-test.run", "^$", "-test.bench", st.re, "-test.benchtime", st.benchtime)
	parsed := parseBench(out, runtime.GOMAXPROCS(0))
	f.addBench(st.pkg, parsed)
	for name, why := range parsed.Failed {
		r.benchFailures = append(r.benchFailures, fmt.Sprintf("%s %s: %s", st.pkg, name, why))
	}
	if err != nil && len(parsed.Failed) == 0 {
		err = fmt.Errorf("%s -test.bench %s: %v: %s (%s)", st.pkg, st.re, err, lastLine(out), filepath.Join(r.logs, log))
		f.runError(st.pkg, err)
		r.benchFailures = append(r.benchFailures, err.Error())
	}
	r.say("  %s %s -benchtime %s: %d results (%.1f s)", st.pkg, st.re, st.benchtime, len(parsed.Results), time.Since(start).Seconds())
	if st.floorMiB > 0 {
		r.kvmFloor(f, 500, st.floorMiB)
	}
}

// kvmFloor runs bin/bench/kvm_floor for n cycles of a VM with mib MiB.
func (r *runner) kvmFloor(f *figures, n, mib int) {
	src := fmt.Sprintf("kvm_floor %dMiB", mib)
	out, err := r.command(fmt.Sprintf("kvm_floor-%dMiB.txt", mib), ".", filepath.Join("bin", "bench", "kvm_floor"), strconv.Itoa(n), strconv.Itoa(mib))
	if err != nil {
		f.failed[src] = fmt.Sprintf("kvm_floor failed: %v: %s", err, lastLine(out))
		r.benchFailures = append(r.benchFailures, src+": "+f.failed[src])
		return
	}
	res, err := parseKVMFloor(out)
	if err != nil {
		f.failed[src] = err.Error()
		return
	}
	f.put(src, res)
}

// tenderBenchRun is one run of `tender bench -quick`: on backend, of the
// rows whose keys start with one of rows (all when empty).
type tenderBenchRun struct {
	backend string
	rows    []string
}

// tenderBenchPlan is the `tender bench -quick` runs: the whole table on
// KVM, and on the process backend tender's rows and crun's default config,
// which the fresh target compares (the other rows do not depend on the
// backend).
var tenderBenchPlan = []tenderBenchRun{
	{backend: "kvm"},
	{backend: "process", rows: []string{"tender", "crun-default"}},
}

// selects says the run measures the row key.
func (b tenderBenchRun) selects(key string) bool {
	for _, r := range b.rows {
		if strings.HasPrefix(key, r) {
			return true
		}
	}
	return len(b.rows) == 0
}

// tenderBench runs `tender bench -quick` as b says and adds each row's
// median latency (µs), throughput and memory per instance as
// "tender bench BACKEND/ROW".
func (r *runner) tenderBench(f *figures, b tenderBenchRun) {
	backend := b.backend
	js := filepath.Join(r.logs, "tender-bench-"+backend+".json")
	args := []string{"-quick", "-quiet", "-backend", backend, "-json", js}
	if len(b.rows) > 0 {
		args = append(args, "-rows", strings.Join(b.rows, ","))
	}
	out, err := r.command("tender-bench-"+backend+".md", ".", filepath.Join("bin", "tender-bench"), args...)
	if err != nil {
		err = fmt.Errorf("tender bench -backend %s: %v: %s", backend, err, lastLine(out))
		f.runError("tender", err)
		r.benchFailures = append(r.benchFailures, err.Error())
		return
	}
	rep, err := bench.ReadJSON(js)
	if err != nil {
		f.runError("tender", err)
		return
	}
	addTenderBench(f, backend, rep)
}

func addTenderBench(f *figures, backend string, rep *bench.Report) {
	for _, row := range rep.Rows {
		src := "tender bench " + backend + "/" + row.Key
		if !row.OK() {
			f.failed[src] = "row unavailable: " + row.Unavailable
			continue
		}
		res := result{N: int64(row.Latency.N)}
		res.add("median-µs", float64(row.Latency.Median)/1e3)
		res.add("p99-µs", float64(row.Latency.P99)/1e3)
		res.add("throughput/s", row.Throughput)
		if row.MemoryKiB >= 0 {
			res.add("KiB/instance", row.MemoryKiB)
		}
		f.put(src, res)
	}
}

// lastLine is the last non-empty line of out, for error messages.
func lastLine(out string) string {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// errNoWrk is why the serve targets are not measured on a machine without wrk.
var errNoWrk = errors.New("wrk not in PATH (Debian: apt-get install wrk, or make bench-deps)")
