package tests

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"

	"github.com/tendervm/tender/monitor"
)

// BenchmarkFreshInvoke measures a fresh invocation of fn_echo (64 bytes:
// the call, then the reset to the snapshot) on KVM, and reports it against
// a warm and a cold invocation of the same function measured in the same
// run: x-warm is fresh/warm, cold-x is cold/fresh. The process backend
// refuses fresh instances (monitor.ErrFreshUnsupported).
func BenchmarkFreshInvoke(b *testing.B) {
	if ok, _ := kvmAvailable(); !ok {
		b.Skip("fresh instances need KVM")
	}
	b.Run(string(monitor.BackendKVM), benchFresh)
}

func benchFresh(b *testing.B) {
	body := bytes.Repeat([]byte("x"), 64)
	h := newHost(b, monitor.BackendKVM)
	per := func(mode monitor.Mode, n int) time.Duration {
		p := benchPool(b, h, "fn_echo", monitor.PoolConfig{Mode: mode, MaxInstances: 1})
		defer p.Close()
		if mode != monitor.Cold { // boot (and snapshot) outside the measure
			if _, err := p.Invoke(context.Background(), monitor.Request{Body: body}); err != nil {
				b.Fatal(err)
			}
		}
		start := time.Now()
		for range n {
			if _, err := p.Invoke(context.Background(), monitor.Request{Body: body}); err != nil {
				b.Fatal(err)
			}
		}
		return time.Since(start) / time.Duration(n)
	}
	b.ResetTimer()
	fresh := per(monitor.Fresh, b.N)
	b.StopTimer()
	warm := per(monitor.Warm, max(b.N, 1000))
	cold := per(monitor.Cold, 50)
	b.ReportMetric(float64(fresh.Nanoseconds())/1e3, "µs-fresh")
	b.ReportMetric(float64(warm.Nanoseconds())/1e3, "µs-warm")
	b.ReportMetric(float64(cold.Nanoseconds())/1e3, "µs-cold")
	b.ReportMetric(float64(fresh)/float64(warm), "x-warm")
	b.ReportMetric(float64(cold)/float64(fresh), "cold-x")
}

// BenchmarkFreshThroughput measures fresh invocations per second of fn_echo
// with two concurrent callers on two instances, beside fork+exec of the
// static C echo with two workers (as BenchmarkWarmThroughput does for warm).
func BenchmarkFreshThroughput(b *testing.B) {
	if ok, _ := kvmAvailable(); !ok {
		b.Skip("fresh instances need KVM")
	}
	b.Run(string(monitor.BackendKVM), func(b *testing.B) {
		h := newHost(b, monitor.BackendKVM)
		p := benchPool(b, h, "fn_echo", monitor.PoolConfig{Mode: monitor.Fresh, MaxInstances: 2})
		if err := p.Prewarm(context.Background(), 2); err != nil {
			b.Fatal(err)
		}
		benchThroughput(b, p)
	})
}

// BenchmarkFreshMemory prewarms 200 fresh instances of fn_echo (each booted
// to its snapshot), serves one request on every one of them, and reports the
// growth of the process's RSS per instance: what an extra fresh instance
// costs, the pages its request dirtied included (KVM's own memory for the VM
// is kernel memory, outside RSS).
func BenchmarkFreshMemory(b *testing.B) {
	if ok, _ := kvmAvailable(); !ok {
		b.Skip("fresh instances need KVM")
	}
	const n = 200
	b.Run(string(monitor.BackendKVM), func(b *testing.B) {
		for range b.N {
			h := newHost(b, monitor.BackendKVM)
			p := benchPool(b, h, "fn_echo", monitor.PoolConfig{Mode: monitor.Fresh, MaxInstances: n, IdleTimeout: -1})
			before := rssKiB()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			if err := p.Prewarm(ctx, n); err != nil {
				b.Fatal(err)
			}
			cancel()
			// n callers at once: each takes an instance of its own.
			var wg sync.WaitGroup
			for range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if _, err := p.Invoke(context.Background(), monitor.Request{Body: []byte("hello")}); err != nil {
						b.Error(err)
					}
				}()
			}
			wg.Wait()
			st := p.Stats()
			after := rssKiB()
			b.ReportMetric(float64(st.Live), "instances")
			b.ReportMetric(float64(after-before)/float64(st.Live), "KiB/instance")
			p.Close()
		}
	})
}
