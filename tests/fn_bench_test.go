package tests

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tendervm/tender/bench"
	"github.com/tendervm/tender/monitor"
)

func benchPool(b *testing.B, h *monitor.Host, fn string, cfg monitor.PoolConfig) *monitor.Pool {
	b.Helper()
	cfg.Guest.ELF = readGuest(b, fn)
	p, err := h.NewPool(cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { p.Close() })
	return p
}

// BenchmarkWarmInvoke measures a warm invocation of fn_echo (64 bytes) through
// the library, beside one raw hypercall round trip of the same backend, in
// rounds (sideBySide): x-hypercall is the median of the rounds' ratios.
func BenchmarkWarmInvoke(b *testing.B) {
	body := bytes.Repeat([]byte("x"), 64)
	for _, be := range benchBackends(b) {
		b.Run(string(be), func(b *testing.B) {
			h := newHost(b, be)
			p := benchPool(b, h, "fn_echo", monitor.PoolConfig{Mode: monitor.Warm, MaxInstances: 1})
			if _, err := p.Invoke(context.Background(), monitor.Request{Body: body}); err != nil {
				b.Fatal(err)
			}
			invoke := func(n int) time.Duration {
				start := time.Now()
				for range n {
					if _, err := p.Invoke(context.Background(), monitor.Request{Body: body}); err != nil {
						b.Fatal(err)
					}
				}
				return time.Since(start) / time.Duration(n)
			}
			hypercall := func(n int) time.Duration { return hypercallRoundTrip(b, h, max(n, 200)) }
			b.ResetTimer()
			r := sideBySide(b, invoke, hypercall)
			b.ReportMetric(float64(r.op.Nanoseconds())/1e3, "µs-invocation")
			b.ReportMetric(float64(r.base.Nanoseconds())/1e3, "µs-hypercall")
			b.ReportMetric(r.ratio, "x-hypercall")
		})
	}
}

// sideBy are the figures of sideBySide: one operation of each and their
// ratio, each the median of the rounds' (so the three tell the same story
// when one round was slowed).
type sideBy struct {
	op, base time.Duration
	ratio    float64
}

// sideBySide times b.N operations of op in up to ten rounds, each followed
// by base for as many operations with the timer stopped, so that drift on a
// shared machine hits both alike; op and base do n operations and return
// the time of one. A ratio of two figures measured minutes apart moved by
// 10-15% between reports here; the median of the rounds' ratios does not.
func sideBySide(b *testing.B, op, base func(n int) time.Duration) sideBy {
	rounds := min(b.N, 10)
	var ops, bases []time.Duration
	ratios := make([]float64, 0, rounds)
	for r := range rounds {
		n := b.N/rounds + btoi(r < b.N%rounds)
		o := op(n)
		b.StopTimer()
		bt := base(n)
		b.StartTimer()
		ops, bases = append(ops, o), append(bases, bt)
		ratios = append(ratios, float64(o)/float64(bt))
	}
	b.StopTimer()
	return sideBy{op: median(ops), base: median(bases), ratio: median(ratios)}
}

// BenchmarkWarmInvokePrinting measures a warm invocation of a function that
// prints one console line per request (fn_flood), with the console on
// /dev/null: the line is delivered before the reply.
func BenchmarkWarmInvokePrinting(b *testing.B) {
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer null.Close()
	body := bytes.Repeat([]byte("x"), 64)
	for _, be := range benchBackends(b) {
		b.Run(string(be), func(b *testing.B) {
			h := newHost(b, be)
			p := benchPool(b, h, "fn_flood", monitor.PoolConfig{Mode: monitor.Warm, MaxInstances: 1, Guest: monitor.Config{Console: null}})
			if _, err := p.Invoke(context.Background(), monitor.Request{Body: body}); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for range b.N {
				if _, err := p.Invoke(context.Background(), monitor.Request{Body: body}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// forkExecRate runs the static C echo as a process per request from workers
// goroutines for d, and returns requests per second.
func forkExecRate(b *testing.B, workers int, d time.Duration) float64 {
	echo := filepath.Join(root, "bin", "guest", "host", "fn_echo_host")
	var n atomic.Int64
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				cmd := exec.Command(echo)
				cmd.Stdin = strings.NewReader("hello")
				out, err := cmd.Output()
				if err != nil || string(out) != "hello" {
					b.Errorf("%s: %q %v", echo, out, err)
					return
				}
				n.Add(1)
			}
		}()
	}
	start := time.Now()
	wg.Wait()
	return float64(n.Load()) / time.Since(start).Seconds()
}

// BenchmarkWarmThroughput measures warm invocations per second with two
// concurrent callers, beside fork+exec of the static C echo with two workers.
func BenchmarkWarmThroughput(b *testing.B) {
	for _, be := range benchBackends(b) {
		b.Run(string(be), func(b *testing.B) {
			h := newHost(b, be)
			p := benchPool(b, h, "fn_echo", monitor.PoolConfig{Mode: monitor.Warm, MaxInstances: 2})
			benchThroughput(b, p)
		})
	}
}

// benchThroughput measures b.N invocations of p's fn_echo from two
// concurrent callers, and reports their rate beside fork+exec of the static
// C echo with two workers.
func benchThroughput(b *testing.B, p *monitor.Pool) {
	var wg sync.WaitGroup
	var next atomic.Int64
	b.ResetTimer()
	start := time.Now()
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				if _, err := p.Invoke(context.Background(), monitor.Request{Body: []byte("hello")}); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	rate := float64(b.N) / time.Since(start).Seconds()
	b.StopTimer()
	procs := forkExecRate(b, 2, time.Second)
	b.ReportMetric(rate, "invocations/s")
	b.ReportMetric(procs, "fork+exec/s")
	b.ReportMetric(rate/procs, "x-process")
}

// BenchmarkColdInvoke measures a cold invocation (fresh VM per request),
// beside the C create/run/destroy floor where KVM exists (besideFloor).
func BenchmarkColdInvoke(b *testing.B) {
	for _, be := range benchBackends(b) {
		b.Run(string(be), func(b *testing.B) {
			h := newHost(b, be)
			p := benchPool(b, h, "fn_echo", monitor.PoolConfig{Mode: monitor.Cold, MaxInstances: 1})
			b.ResetTimer()
			besideFloor(b, be, monitor.DefaultMemSize>>20, func() {
				if _, err := p.Invoke(context.Background(), monitor.Request{Body: []byte("hello")}); err != nil {
					b.Fatal(err)
				}
			}).report(b)
		})
	}
}

func btoi(v bool) int {
	if v {
		return 1
	}
	return 0
}

// rssKiB sums VmRSS of this process and of the given processes.
func rssKiB(pids ...int) int64 {
	var total int64
	for _, pid := range append([]int{os.Getpid()}, pids...) {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
				n, _ := strconv.ParseInt(f[1], 10, 64)
				total += n
			}
		}
	}
	return total
}

// BenchmarkIdleInstances prewarms 1,000 fn_echo instances, leaves them idle
// and reports the host memory each costs (RSS of the monitor, plus the
// guest processes on the process backend, whose figure includes the guest pages).
func BenchmarkIdleInstances(b *testing.B) {
	const n = 1000
	for _, be := range benchBackends(b) {
		b.Run(string(be), func(b *testing.B) {
			for range b.N {
				h := newHost(b, be)
				p := benchPool(b, h, "fn_echo", monitor.PoolConfig{Mode: monitor.Warm, MaxInstances: n, IdleTimeout: -1})
				before := rssKiB()
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
				if err := p.Prewarm(ctx, n); err != nil {
					b.Fatal(err)
				}
				cancel()
				st := p.Stats()
				after := rssKiB(bench.ChildPIDs(os.Getpid())...)
				b.ReportMetric(float64(st.Live), "instances")
				b.ReportMetric(float64(after-before)/float64(st.Live), "KiB/instance")
				p.Close()
			}
		})
	}
}
