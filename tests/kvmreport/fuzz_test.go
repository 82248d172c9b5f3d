package main

import (
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// addTestdata seeds f with the captured outputs in testdata.
func addTestdata(f *testing.F, pattern string) {
	f.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", pattern))
	if err != nil || len(files) == 0 {
		f.Fatalf("no testdata %s: %v", pattern, err)
	}
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(b))
	}
}

// checkFinite fails t unless every figure of r is finite and listed once in
// its Units: a NaN or an infinity would reach the report's tables and ratios.
func checkFinite(t *testing.T, what string, r result) {
	t.Helper()
	if len(r.Units) != len(r.Metrics) {
		t.Fatalf("%s: units %q for %d metrics", what, r.Units, len(r.Metrics))
	}
	for _, u := range r.Units {
		v, ok := r.Metrics[u]
		if !ok {
			t.Fatalf("%s: unit %q without a metric", what, u)
		}
		if math.IsNaN(v) || math.IsInf(v, 0) {
			t.Fatalf("%s: %s = %v", what, u, v)
		}
	}
}

func FuzzParseWrk(f *testing.F) {
	addTestdata(f, "wrk.txt")
	for _, s := range []string{
		"Requests/sec: NaN\n",
		"Requests/sec: +Inf\n",
		"Requests/sec: 1e400\n",
		"Requests/sec: 1\n  50% 1e308m\n",
		"Requests/sec: 1\n  Socket errors: connect 1e308, read 1e308, write 0, timeout 0\n",
		"Requests/sec: 1\n  Non-2xx or 3xx responses: inf\n",
		"Requests/sec: 1\n  99% nanms\n",
		"Requests/sec: 1\n  Non-2xx or 3xx responses:\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		r, err := parseWrk(text)
		if err != nil {
			return
		}
		checkFinite(t, "wrk", r)
		if _, ok := r.Metrics["req/s"]; !ok {
			t.Fatalf("%q: accepted without req/s", text)
		}
	})
}

func FuzzParseKVMFloor(f *testing.F) {
	for _, s := range []string{
		"kvm_floor n=500 mem=4MiB median_us=816.5 mean_us=1424.9\n",
		"kvm_floor n=5 median_us=fast",
		"kvm_floor n=many median_us=1",
		"kvm_floor n=5 median_us=NaN",
		"kvm_floor n=5 median_us=1 mean_us=Inf",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		r, err := parseKVMFloor(text)
		if err != nil {
			return
		}
		checkFinite(t, "kvm_floor", r)
	})
}

// TestKVMFloorBadCount: a count that is no number is an error, not n=0.
func TestKVMFloorBadCount(t *testing.T) {
	if r, err := parseKVMFloor("kvm_floor n=many median_us=1"); err == nil {
		t.Fatalf("n=many accepted as %+v", r)
	}
}

func FuzzParseBench(f *testing.F) {
	addTestdata(f, "bench-*.txt")
	for _, s := range []string{
		"BenchmarkX-4 \t 100\t NaN ns/op\n",
		"BenchmarkX \t 100\t 1 ns/op\t Inf B/op\n",
		"BenchmarkX\n--- FAIL: BenchmarkX\n    boom\n",
		"BenchmarkX/a-4\n 5 1 ns/op\n--- FAIL: BenchmarkX\n--- FAIL: BenchmarkX/a\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		for _, procs := range []int{1, 4} {
			out := parseBench(text, procs)
			if len(out.Order) != len(out.Results) {
				t.Fatalf("order %q for %d results", out.Order, len(out.Results))
			}
			for i, name := range out.Order {
				r, ok := out.Results[name]
				if !ok || slices.Index(out.Order, name) != i {
					t.Fatalf("%q listed wrongly in %q", name, out.Order)
				}
				if len(r.Units) == 0 {
					t.Fatalf("%s: a result without figures", name)
				}
				checkFinite(t, name, r)
			}
		}
	})
}
