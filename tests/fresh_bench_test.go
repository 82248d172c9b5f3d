package tests

import (
	"bytes"
	"context"
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
