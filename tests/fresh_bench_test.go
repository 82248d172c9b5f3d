package tests

import (
	"bytes"
	"context"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tendervm/tender/internal/proctest"
	"github.com/tendervm/tender/monitor"
	"github.com/tendervm/tender/monitor/process"
)

// BenchmarkFreshInvoke measures a fresh invocation of fn_echo (64 bytes:
// the call, then the reset to the snapshot) on each backend, and reports it
// against a warm and a cold invocation of the same function measured in the
// same run: x-warm is fresh/warm (the median of sideBySide's rounds), cold-x
// is cold/fresh; µs-reset is the monitor's part of the
// time a reset takes (PoolStats.ResetTime), part of the fresh invocation.
func BenchmarkFreshInvoke(b *testing.B) {
	for _, be := range freshBackends(b) {
		b.Run(string(be), func(b *testing.B) { benchFresh(b, be) })
	}
}

// freshBackends are the backends with fresh instances here: KVM where it is
// usable, and the process backend where the kernel tracks a guest process's
// writes (Linux 6.7).
func freshBackends(b *testing.B) []monitor.Backend {
	var bs []monitor.Backend
	for _, be := range benchBackends(b) {
		if be != monitor.BackendProcess || process.CanTrack() == nil {
			bs = append(bs, be)
		}
	}
	return bs
}

func benchFresh(b *testing.B, be monitor.Backend) {
	body := bytes.Repeat([]byte("x"), 64)
	h := newHost(b, be)
	pool := func(mode monitor.Mode) *monitor.Pool {
		return benchPool(b, h, "fn_echo", monitor.PoolConfig{Mode: mode, MaxInstances: 1})
	}
	per := func(p *monitor.Pool, n int) time.Duration {
		start := time.Now()
		for range n {
			if _, err := p.Invoke(context.Background(), monitor.Request{Body: body}); err != nil {
				b.Fatal(err)
			}
		}
		return time.Since(start) / time.Duration(n)
	}
	// Fresh and warm side by side, both booted (and snapshot) outside the
	// measure; then cold, far from its threshold, once.
	fresh, warm := pool(monitor.Fresh), pool(monitor.Warm)
	per(fresh, 1)
	per(warm, 1)
	b.ResetTimer()
	r := sideBySide(b, func(n int) time.Duration { return per(fresh, n) }, func(n int) time.Duration { return per(warm, max(n, 100)) })
	resets := fresh.Stats()
	fresh.Close()
	warm.Close()
	cp := pool(monitor.Cold)
	cold := per(cp, 50)
	cp.Close()
	b.ReportMetric(float64(r.op.Nanoseconds())/1e3, "µs-fresh")
	b.ReportMetric(float64(r.base.Nanoseconds())/1e3, "µs-warm")
	b.ReportMetric(float64(cold.Nanoseconds())/1e3, "µs-cold")
	b.ReportMetric(r.ratio, "x-warm")
	b.ReportMetric(float64(cold)/float64(r.op), "cold-x")
	if resets.Resets > 0 {
		b.ReportMetric(float64(resets.ResetTime.Nanoseconds())/float64(resets.Resets)/1e3, "µs-reset")
	}
}

// BenchmarkFreshThroughput measures fresh invocations per second of fn_echo
// with two concurrent callers on two instances, beside fork+exec of the
// static C echo with two workers (as BenchmarkWarmThroughput does for warm).
func BenchmarkFreshThroughput(b *testing.B) {
	for _, be := range freshBackends(b) {
		b.Run(string(be), func(b *testing.B) {
			h := newHost(b, be)
			p := benchPool(b, h, "fn_echo", monitor.PoolConfig{Mode: monitor.Fresh, MaxInstances: 2})
			if err := p.Prewarm(context.Background(), 2); err != nil {
				b.Fatal(err)
			}
			benchThroughput(b, p)
		})
	}
}

// BenchmarkFreshMemory prewarms 200 fresh instances of fn_echo (on KVM the
// first booted to its snapshot, the others started from it; on the process
// backend each boots, and all but the first then take the first's snapshot
// and keep no copy of their own), serves two requests on every one of
// them, and reports what an extra fresh instance costs in host memory: the
// guest memfds' allocated blocks (on KVM the image's, shared, and pages
// not mapped at the moment are outside RSS; on the process backend each
// instance's own guest memory) plus its private memory. On the process
// backend that is RssAnon: the pages its request dirtied, the monitor's
// own structures and, once for the pool, the copy of the snapshot. On KVM
// it counts only what belongs to the instances (kvmInstancesKiB): the
// guest pages they dirtied, their kvm_run and the live Go heap and
// stacks. KVM's own memory for the VM, and a guest process's page tables
// and signal stack, are outside both.
func BenchmarkFreshMemory(b *testing.B) {
	const n = 200
	for _, be := range freshBackends(b) {
		b.Run(string(be), func(b *testing.B) { benchFreshMemory(b, be, n) })
	}
}

func benchFreshMemory(b *testing.B, be monitor.Backend, n int) {
	for range b.N {
		h := newHost(b, be)
		p := benchPool(b, h, "fn_echo", monitor.PoolConfig{Mode: monitor.Fresh, MaxInstances: n, IdleTimeout: -1})
		anon0, snap0 := anonKiB(b), memfdKiB(b)
		guest0, heap0, _ := kvmInstancesKiB(b)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		if err := p.Prewarm(ctx, n); err != nil {
			b.Fatal(err)
		}
		cancel()
		// Twice n callers at once. The pool hands each the instance
		// used last, so a few instances serve most calls and many
		// none (on KVM instances-dirtied counts those holding pages
		// their requests dirtied).
		for range 2 {
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
		}
		// A caller has its reply before its instance's reset.
		for p.Stats().Resets < uint64(2*n) {
			time.Sleep(time.Millisecond)
		}
		live := float64(p.Stats().Live)
		anon, snap := float64(anonKiB(b)-anon0)/live, float64(memfdKiB(b)-snap0)/live
		if be == monitor.BackendKVM {
			guest, heap, dirtied := kvmInstancesKiB(b)
			anon = float64(guest-guest0+heap-heap0) / live
			b.ReportMetric(float64(dirtied), "instances-dirtied")
		}
		b.ReportMetric(live, "instances")
		b.ReportMetric(anon+snap, "KiB/instance")
		b.ReportMetric(snap, "KiB-snapshot/instance")
		b.ReportMetric(anon, "KiB-private/instance")
		p.Close()
	}
}

// anonKiB is this process's RssAnon.
func anonKiB(b testing.TB) int64 {
	v, err := proctest.Field(os.Getpid(), "RssAnon")
	if err != nil {
		b.Fatal(err)
	}
	n, err := strconv.ParseInt(strings.TrimSuffix(v, " kB"), 10, 64)
	if err != nil {
		b.Fatal(err)
	}
	return n
}

// memfdKiB sums the blocks allocated to the guest memory memfds this process
// holds open.
func memfdKiB(b testing.TB) int64 {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		b.Fatal(err)
	}
	var total int64
	for _, e := range ents {
		path := "/proc/self/fd/" + e.Name()
		if l, err := os.Readlink(path); err != nil || !strings.HasPrefix(l, "/memfd:tender-guest") {
			continue
		}
		var st unix.Stat_t
		if err := unix.Stat(path, &st); err == nil {
			total += st.Blocks / 2
		}
	}
	return total
}
