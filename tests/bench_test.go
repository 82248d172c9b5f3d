package tests

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tendervm/tender/monitor"
)

// benchBackends lists the backends this machine has, KVM first.
func benchBackends(b *testing.B) []monitor.Backend {
	bs := []monitor.Backend{monitor.BackendProcess}
	if ok, _ := kvmAvailable(); ok {
		bs = append([]monitor.Backend{monitor.BackendKVM}, bs...)
	} else {
		b.Logf("no KVM here: only the process backend is measured")
	}
	return bs
}

// BenchmarkBoot measures in-library create + boot + run + close of hello and,
// on KVM, its baseline in the same run: bin/bench/kvm_floor, the same cycle
// in C for a one-instruction guest with as much memory (64 MiB). The process
// backend has no C floor of its own mechanism, so it reports its time alone.
func BenchmarkBoot(b *testing.B) {
	image := readGuest(b, "hello")
	for _, be := range benchBackends(b) {
		b.Run(string(be), func(b *testing.B) {
			h := newHost(b, be)
			var first time.Duration
			b.ResetTimer()
			r := besideFloor(b, be, monitor.DefaultMemSize>>20, func() {
				vm, err := h.New(monitor.Config{ELF: image})
				if err != nil {
					b.Fatal(err)
				}
				res, err := vm.Run(context.Background())
				if err != nil || res.Status != 0 {
					b.Fatalf("status %d: %v", res.Status, err)
				}
				first += res.Stats.FirstHypercall
				vm.Close()
			})
			b.ReportMetric(float64(first.Microseconds())/float64(b.N), "µs-to-first-hypercall")
			r.report(b)
		})
	}
}

// floorFigures are a cycle's median beside kvm_floor's (besideFloor).
type floorFigures struct {
	median time.Duration
	// floor is kvm_floor's median cycle in µs, ratio the median of the
	// rounds' ratios; both 0 without KVM.
	floor, ratio float64
}

// report adds µs-median and, with a floor, µs-c-floor and x-c-floor.
func (f floorFigures) report(b *testing.B) {
	b.ReportMetric(float64(f.median.Nanoseconds())/1e3, "µs-median")
	if f.floor > 0 {
		b.ReportMetric(f.floor, "µs-c-floor")
		b.ReportMetric(f.ratio, "x-c-floor")
	}
}

// besideFloor times b.N calls of cycle. On KVM it runs them in up to five
// rounds, each followed by kvm_floor for as many VMs of mib MiB, so that drift
// on a shared machine hits both alike, and takes the median of the rounds'
// ratios; the timer is stopped while kvm_floor runs.
func besideFloor(b *testing.B, be monitor.Backend, mib uint64, cycle func()) floorFigures {
	rounds := 1
	if be == monitor.BackendKVM {
		rounds = min(b.N, 5)
	}
	var all []time.Duration
	var floors, ratios []float64
	for r := range rounds {
		n := b.N/rounds + btoi(r < b.N%rounds)
		ts := make([]time.Duration, 0, n)
		for range n {
			t := time.Now()
			cycle()
			ts = append(ts, time.Since(t))
		}
		all = append(all, ts...)
		if be == monitor.BackendKVM {
			b.StopTimer()
			f := kvmFloor(b, max(n, 20), mib)
			b.StartTimer()
			floors = append(floors, f)
			ratios = append(ratios, float64(median(ts).Nanoseconds())/1e3/f)
		}
	}
	b.StopTimer()
	fig := floorFigures{median: median(all)}
	if len(floors) > 0 {
		fig.floor, fig.ratio = median(floors), median(ratios)
	}
	return fig
}

// kvmFloor runs bin/bench/kvm_floor for n cycles of a VM with mib MiB and
// returns its median in microseconds.
func kvmFloor(b *testing.B, n int, mib uint64) float64 {
	b.Helper()
	fig := runKVMFloor(b, strconv.Itoa(n), strconv.FormatUint(mib, 10))
	if fig["median_us"] <= 0 {
		b.Fatalf("kvm_floor: no median in %v", fig)
	}
	return fig["median_us"]
}

// runKVMFloor runs bin/bench/kvm_floor with args and returns the figures of
// the key=value fields it prints.
func runKVMFloor(b *testing.B, args ...string) map[string]float64 {
	b.Helper()
	out, err := exec.Command(filepath.Join(root, "bin", "bench", "kvm_floor"), args...).Output()
	if err != nil {
		b.Fatalf("kvm_floor %s: %v", strings.Join(args, " "), withStderr(err))
	}
	fig := map[string]float64{}
	for _, f := range strings.Fields(string(out)) {
		if k, v, ok := strings.Cut(f, "="); ok {
			if x, err := strconv.ParseFloat(v, 64); err == nil {
				fig[k] = x
			}
		}
	}
	return fig
}

// withStderr adds what a failed command printed on stderr (kvm_floor's
// perror) to its error.
func withStderr(err error) error {
	var ee *exec.ExitError
	if errors.As(err, &ee) && len(ee.Stderr) > 0 {
		return fmt.Errorf("%w: %s", err, strings.TrimSpace(string(ee.Stderr)))
	}
	return err
}

// median returns the median of v (the upper one of an even count), leaving
// v as it is.
func median[T cmp.Ordered](v []T) T {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// hypercallRoundTrip runs hcloop with n (at least 2) console writes of
// length 0 and returns the time of one round trip as the guest measured it,
// from the return of its first write to the return of its last: no boot, no
// exit, no VM teardown.
func hypercallRoundTrip(b *testing.B, h *monitor.Host, n int) time.Duration {
	b.Helper()
	return consoleRoundTrip(b, h, readGuest(b, "hcloop"), "console_write", n)
}

// consoleRoundTrip runs a guest that makes n (at least 2) console writes of
// length 0, served as the hypercall named call, then reports them in one
// more write, "NAME: N calls, T ns first to last" (hcloop, Solo5's
// putsloop), and returns T/(n-1).
func consoleRoundTrip(b *testing.B, h *monitor.Host, image []byte, call string, n int) time.Duration {
	b.Helper()
	n = max(n, 2)
	var out lockedBuffer
	vm, err := h.New(monitor.Config{ELF: image, Args: []string{strconv.Itoa(n)}, Console: &out})
	if err != nil {
		b.Fatal(err)
	}
	defer vm.Close()
	res, err := vm.Run(context.Background())
	if err != nil || res.Status != 0 {
		b.Fatalf("status %d: %v", res.Status, err)
	}
	if got := res.Stats.HypercallCounts()[call]; got != uint64(n)+1 {
		b.Fatalf("%d calls: %d %s served", n, got, call)
	}
	var name string
	var calls, ns int64
	if _, err := fmt.Sscanf(out.String(), "%s %d calls, %d ns first to last", &name, &calls, &ns); err != nil || calls != int64(n) {
		b.Fatalf("%d calls: %q: %v", n, out.String(), err)
	}
	return time.Duration(ns) / time.Duration(n-1)
}

// BenchmarkHypercall measures one console-write hypercall round trip (length
// 0) inside a running guest: hcloop makes b.N of them. ns/op includes boot
// and teardown spread over b.N; µs/call times the hypercalls alone.
func BenchmarkHypercall(b *testing.B) {
	for _, be := range benchBackends(b) {
		b.Run(string(be), func(b *testing.B) {
			h := newHost(b, be)
			b.ResetTimer()
			per := hypercallRoundTrip(b, h, b.N)
			b.StopTimer()
			b.ReportMetric(float64(per.Nanoseconds())/1e3, "µs/call")
			if be != monitor.BackendKVM {
				return
			}
			// The same exit from C, at the guest's privilege level and at
			// CPL 0, where Solo5's hvt guests run (docs/performance.md).
			cpl0, cpl3 := kvmExitFloor(b, max(b.N, 1000))
			b.ReportMetric(cpl0, "µs-c-exit-cpl0")
			b.ReportMetric(cpl3, "µs-c-exit-cpl3")
			b.ReportMetric(float64(per.Nanoseconds())/1e3/cpl3, "x-c-exit-cpl3")
		})
	}
}

// kvmExitFloor runs `bin/bench/kvm_floor exits n` and returns its medians of
// one exit and re-entry at CPL 0 and CPL 3, in microseconds.
func kvmExitFloor(b *testing.B, n int) (cpl0, cpl3 float64) {
	b.Helper()
	fig := runKVMFloor(b, "exits", strconv.Itoa(n))
	cpl0, cpl3 = fig["cpl0_median_us"], fig["cpl3_median_us"]
	if cpl0 <= 0 || cpl3 <= 0 {
		b.Fatalf("kvm_floor exits: %v", fig)
	}
	return cpl0, cpl3
}

// BenchmarkConsoleWrite measures one console write of a 64-byte line inside
// a running guest, with the console on /dev/null: the hypercall round trip
// plus what the monitor does to deliver the bytes to Config.Console.
func BenchmarkConsoleWrite(b *testing.B) {
	image := readGuest(b, "hcloop")
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer null.Close()
	for _, be := range benchBackends(b) {
		b.Run(string(be), func(b *testing.B) {
			h := newHost(b, be)
			vm, err := h.New(monitor.Config{ELF: image, Args: []string{strconv.Itoa(b.N), "64"}, Console: null, ConsoleLimit: -1})
			if err != nil {
				b.Fatal(err)
			}
			defer vm.Close()
			b.ResetTimer()
			res, err := vm.Run(context.Background())
			b.StopTimer()
			if err != nil || res.Status != 0 {
				b.Fatalf("status %d: %v", res.Status, err)
			}
			calls := res.Stats.Total - res.Stats.FirstHypercall
			b.ReportMetric(float64(calls.Nanoseconds())/float64(b.N)/1e3, "µs/call-after-boot")
		})
	}
}

// BenchmarkSHA256 hashes 64 MiB inside the guest and, side by side, in the
// same C code run as a host process, alternately; it reports the medians and
// the median of the pairs' ratios, so that one run slowed by the shared
// machine does not make the figure (run it 3x or more).
func BenchmarkSHA256(b *testing.B) {
	image := readGuest(b, "sha256")
	host := filepath.Join(root, "bin", "guest", "host", "sha256_host")
	for _, be := range benchBackends(b) {
		b.Run(string(be), func(b *testing.B) {
			h := newHost(b, be)
			var guest, native []time.Duration
			var ratios []float64
			for range b.N {
				t := time.Now()
				if out, err := exec.Command(host, "64").Output(); err != nil || !strings.HasPrefix(string(out), "sha256 64MiB") {
					b.Fatalf("%s: %q %v", host, out, err)
				}
				native = append(native, time.Since(t))
				vm, err := h.New(monitor.Config{ELF: image, Args: []string{"64"}})
				if err != nil {
					b.Fatal(err)
				}
				t = time.Now()
				if res, err := vm.Run(context.Background()); err != nil || res.Status != 0 {
					b.Fatalf("status %d: %v", res.Status, err)
				}
				guest = append(guest, time.Since(t))
				vm.Close()
				ratios = append(ratios, float64(guest[len(guest)-1])/float64(native[len(native)-1]))
			}
			b.ReportMetric(float64(median(guest).Microseconds())/1e3, "ms-guest")
			b.ReportMetric(float64(median(native).Microseconds())/1e3, "ms-process")
			b.ReportMetric(median(ratios), "guest/process")
		})
	}
}

// peakRSS runs argv once under bin/bench/maxrss and returns its peak RSS in
// KiB. Measured directly, the figure would include this test process's
// memory: Linux records the old address space's peak at exec, and Go starts
// children with vfork semantics; maxrss forks from its own tiny address space.
func peakRSS(b *testing.B, argv []string) int64 {
	r, w, err := os.Pipe()
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	cmd := exec.Command(filepath.Join(root, "bin", "bench", "maxrss"), append([]string{"3"}, argv...)...)
	cmd.ExtraFiles = []*os.File{w}
	err = cmd.Run()
	w.Close()
	if err != nil {
		b.Fatalf("%v: %v", argv, err)
	}
	out, _ := io.ReadAll(r)
	kib, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
	if err != nil {
		b.Fatalf("maxrss: %q: %v", out, err)
	}
	return kib
}

// BenchmarkExec runs whole processes from exec to exit: `tender run hello`
// on each backend beside the static C hello, a static Go hello, with the
// process backend the Go hello starting the C hello as a child, and with
// KVM kvm_floor for one VM, in the same run. It reports the medians, the
// ratio to C, and tender's peak RSS.
func BenchmarkExec(b *testing.B) {
	tender := filepath.Join(root, "bin", "tender")
	c := filepath.Join(root, "bin", "guest", "host", "hello_host")
	type row struct {
		name string
		argv []string
		t    []time.Duration
		rss  int64
	}
	// A static Go hello: the runtime's own start and exit, which every
	// `tender run` pays before and after the monitor's work.
	gohello := filepath.Join(root, "bin", "bench", "gohello")
	rows := []*row{{name: "static-c", argv: []string{c}}, {name: "go-hello", argv: []string{gohello}}}
	if slices.Contains(benchBackends(b), monitor.BackendProcess) {
		// The same Go program starting the C hello and waiting for it:
		// what the process backend's run pays before its own work.
		rows = append(rows, &row{name: "go-spawn", argv: []string{gohello, c}})
	}
	for _, be := range benchBackends(b) {
		if be == monitor.BackendKVM {
			// A C program that creates, enters and destroys one VM of
			// tender's default size: what any KVM monitor's run pays.
			rows = append(rows, &row{name: "c-vm", argv: []string{filepath.Join(root, "bin", "bench", "kvm_floor"), "1", strconv.FormatUint(monitor.DefaultMemSize>>20, 10)}})
		}
		rows = append(rows, &row{name: "tender-" + string(be), argv: []string{tender, "run", "--backend=" + string(be), guestPath("hello")}})
	}
	for range b.N {
		for _, r := range rows { // interleaved, so drift hits every row alike
			cmd := exec.Command(r.argv[0], r.argv[1:]...)
			t := time.Now()
			if err := cmd.Run(); err != nil {
				b.Fatalf("%v: %v", r.argv, err)
			}
			r.t = append(r.t, time.Since(t))
		}
	}
	for _, r := range rows {
		r.rss = peakRSS(b, r.argv)
	}
	base := median(rows[0].t)
	for _, r := range rows {
		m := median(r.t)
		b.ReportMetric(float64(m.Microseconds()), fmt.Sprintf("µs-median-%s", r.name))
		if r != rows[0] {
			b.ReportMetric(float64(m)/float64(base), fmt.Sprintf("x-c-%s", r.name))
			b.ReportMetric(float64(r.rss), fmt.Sprintf("KiB-peak-rss-%s", r.name))
		}
	}
}
