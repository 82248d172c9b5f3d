package tests

import (
	"context"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tendervm/tender/internal/proctest"
	"github.com/tendervm/tender/monitor"
)

// usage is what a process holds that a leak would grow.
type usage struct {
	fds, goroutines, threads int
	rssKiB, heapKiB          int64
}

func measure(t *testing.T) usage {
	t.Helper()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	u := usage{fds: openFDs(t), goroutines: runtime.NumGoroutine(), heapKiB: int64(ms.HeapAlloc >> 10)}
	th, err := proctest.Field(os.Getpid(), "Threads")
	require.NoError(t, err)
	u.threads, err = strconv.Atoi(th)
	require.NoError(t, err)
	rss, err := proctest.Field(os.Getpid(), "VmRSS")
	require.NoError(t, err)
	u.rssKiB, err = strconv.ParseInt(strings.TrimSuffix(rss, " kB"), 10, 64)
	require.NoError(t, err)
	return u
}

// TestFreshNoGrowth: 10,000 fresh invocations (each one a reset) leave the
// process with the descriptors, goroutines and threads it had after the
// first 500 (threads within the Go runtime's own margin), and its memory
// within a margin far below what keeping one
// page per request would take (40 MiB).
func TestFreshNoGrowth(t *testing.T) {
	forFresh(t, func(t *testing.T, h *monitor.Host) {
		p := newPool(t, h, "fn_state", monitor.PoolConfig{Mode: monitor.Fresh, MaxInstances: 1})
		call := func(n int) {
			for i := range n {
				rep, err := p.Invoke(context.Background(), monitor.Request{Body: []byte("stash:" + strconv.Itoa(i))})
				require.NoError(t, err)
				require.Empty(t, rep.Body, "request %d saw another request's data", i)
			}
		}
		call(500) // the instance, its pages and the Go runtime's threads settle
		before := measure(t)
		call(10000)
		after := measure(t)
		assert.Equal(t, before.fds, after.fds, "open descriptors")
		assert.LessOrEqual(t, settledGoroutines(before.goroutines), before.goroutines, "goroutines")
		// The Go runtime may start a thread or two for a blocked system call
		// at any time; a thread kept per call or reset would be thousands.
		assert.LessOrEqual(t, after.threads, before.threads+4, "threads")
		// 16 MiB: well under one page per request (40 MiB), above what
		// the Go runtime's own growth reached under emulated KVM (4.1 MiB).
		assert.Less(t, after.rssKiB-before.rssKiB, int64(16<<10), "resident memory grew by %d KiB", after.rssKiB-before.rssKiB)
		assert.Less(t, after.heapKiB-before.heapKiB, int64(1<<10), "Go heap grew by %d KiB", after.heapKiB-before.heapKiB)
		assert.EqualValues(t, 10500, p.Stats().Resets)
	})
}
