package tests

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tendervm/tender/monitor"
	"github.com/tendervm/tender/monitor/netdev"
	"github.com/tendervm/tender/monitor/process"
	"github.com/tendervm/tender/monitor/x86"
)

// forFresh runs f on a host of each backend, as a subtest named after it:
// KVM where it is usable, and the process backend, which is skipped on
// kernels that cannot track a guest process's writes (before Linux 6.7).
func forFresh(t *testing.T, f func(t *testing.T, h *monitor.Host)) {
	for _, b := range backends(t) {
		t.Run(string(b), func(t *testing.T) {
			if b == monitor.BackendProcess {
				if err := process.CanTrack(); err != nil {
					t.Skip(err)
				}
			}
			f(t, newHost(t, b))
		})
	}
}

func invoke(t *testing.T, p *monitor.Pool, body string) (string, error) {
	t.Helper()
	rep, err := p.Invoke(context.Background(), monitor.Request{Body: []byte(body)})
	return string(rep.Body), err
}

// TestFreshCounter: a static counter starts from its value at the first
// fn_next on every fresh request, and keeps counting under warm.
func TestFreshCounter(t *testing.T) {
	forFresh(t, func(t *testing.T, h *monitor.Host) {
		for _, c := range []struct {
			mode monitor.Mode
			want []string
		}{
			{monitor.Fresh, []string{"1", "1", "1", "1", "1"}},
			{monitor.Warm, []string{"1", "2", "3", "4", "5"}},
		} {
			p := newPool(t, h, "fn_state", monitor.PoolConfig{Mode: c.mode, MaxInstances: 1})
			var got []string
			for range c.want {
				out, err := invoke(t, p, "count")
				require.NoError(t, err, c.mode)
				got = append(got, out)
			}
			assert.Equal(t, c.want, got, c.mode)
			st := p.Stats()
			assert.EqualValues(t, 1, st.Started, "%s: one instance serves every call", c.mode)
			if c.mode == monitor.Fresh {
				assert.EqualValues(t, len(c.want), st.Resets, "a reset after every call")
				assert.Positive(t, st.ResetTime)
			} else {
				assert.Zero(t, st.Resets)
			}
		}
	})
}

// TestFreshNoLeak: a function that returns the body of the previous request
// it saw never returns another request's data under fresh: 10,000 requests
// from 64 concurrent callers on several instances.
func TestFreshNoLeak(t *testing.T) {
	forFresh(t, func(t *testing.T, h *monitor.Host) {
		p := newPool(t, h, "fn_state", monitor.PoolConfig{Mode: monitor.Fresh, MaxInstances: 4})
		const callers, total = 64, 10000
		var next, leaks, done atomic.Int64
		var wg sync.WaitGroup
		errs := make(chan error, callers)
		for w := range callers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := next.Add(1); i <= total; i = next.Add(1) {
					rep, err := p.Invoke(context.Background(), monitor.Request{Body: []byte(fmt.Sprintf("stash:caller %d request %d", w, i))})
					if err != nil {
						errs <- err
						return
					}
					if len(rep.Body) != 0 {
						leaks.Add(1)
					}
					done.Add(1)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
		assert.EqualValues(t, total, done.Load())
		assert.Zero(t, leaks.Load(), "requests that saw another request's body")

		// The same function under warm does pass data on: the test can fail.
		w := newPool(t, h, "fn_state", monitor.PoolConfig{Mode: monitor.Warm, MaxInstances: 1})
		_, err := invoke(t, w, "stash:secret")
		require.NoError(t, err)
		out, err := invoke(t, w, "stash:next")
		require.NoError(t, err)
		assert.Equal(t, "secret", out)
	})
}

// TestFreshManyPages: a request that writes more pages than a reset copies
// back (guestmem.CopyBackPages), which the reset drops instead, leaves them
// as the snapshot had them for the next.
func TestFreshManyPages(t *testing.T) {
	forFresh(t, func(t *testing.T, h *monitor.Host) {
		for _, c := range []struct {
			mode monitor.Mode
			want []string
		}{
			{monitor.Fresh, []string{"clean", "clean", "clean"}},
			{monitor.Warm, []string{"clean", "dirty", "dirty"}},
		} {
			p := newPool(t, h, "fn_state", monitor.PoolConfig{Mode: c.mode, MaxInstances: 1})
			var got []string
			for range c.want {
				out, err := invoke(t, p, "scribble")
				require.NoError(t, err)
				got = append(got, out)
			}
			assert.Equal(t, c.want, got, c.mode)
		}
	})
}

// TestFreshRegisters: an SSE register one request leaves set is back to its
// snapshot value for the next under fresh (and still set under warm).
func TestFreshRegisters(t *testing.T) {
	forFresh(t, func(t *testing.T, h *monitor.Host) {
		const pattern = "74656e6465722d7373652d6c65616b21" // "tender-sse-leak!"
		for _, mode := range []monitor.Mode{monitor.Fresh, monitor.Warm} {
			p := newPool(t, h, "fn_state", monitor.PoolConfig{Mode: mode, MaxInstances: 1})
			before, err := invoke(t, p, "sse-get")
			require.NoError(t, err)
			out, err := invoke(t, p, "sse-set")
			require.NoError(t, err)
			require.Equal(t, "set", out)
			after, err := invoke(t, p, "sse-get")
			require.NoError(t, err)
			if mode == monitor.Fresh {
				assert.Equal(t, before, after, "fresh: XMM15 after another request set it")
				assert.NotEqual(t, pattern, after)
			} else {
				assert.Equal(t, pattern, after, "warm: XMM15 keeps what the previous request left")
			}
		}
	})
}

// TestFreshSegments: a data segment selector one request loads is back to
// its snapshot value for the next, also where KVM cannot see or set it
// (kvm_pvm runs CPL 3 with the selectors the guest loads and reports
// others): the guest library reloads the first fn_next's selectors after
// each one, in every mode.
func TestFreshSegments(t *testing.T) {
	forFresh(t, func(t *testing.T, h *monitor.Host) {
		for _, mode := range []monitor.Mode{monitor.Fresh, monitor.Warm} {
			p := newPool(t, h, "fn_state", monitor.PoolConfig{Mode: mode, MaxInstances: 1})
			before, err := invoke(t, p, "seg-get")
			require.NoError(t, err)
			for range 2 {
				out, err := invoke(t, p, "seg-set")
				require.NoError(t, err)
				require.Equal(t, "set", out)
				after, err := invoke(t, p, "seg-get")
				require.NoError(t, err)
				assert.Equal(t, before, after, "%s: GS after another request loaded it", mode)
			}
		}
	})
}

// TestFreshBases: the FS and GS bases one request sets (wrfsbase,
// wrgsbase) are back to their snapshot values, which fn_bases set at
// start-up, for the next request under fresh (and stay set under warm).
// fn_bases does not reload its selectors, which on some CPUs would clear
// the bases anyway. Skipped where the guest cannot use FSGSBASE.
func TestFreshBases(t *testing.T) {
	forFresh(t, func(t *testing.T, h *monitor.Host) {
		const boot, set = "2000000 3000000", "1234000 5678000"
		for _, mode := range []monitor.Mode{monitor.Fresh, monitor.Warm} {
			p := newPool(t, h, "fn_bases", monitor.PoolConfig{Mode: mode, MaxInstances: 1})
			before, err := invoke(t, p, "get")
			if fe, ok := as[*monitor.FaultError](err); ok && fe.Vector == x86.VecUD {
				t.Skip("no FSGSBASE for the guest:", err)
			}
			require.NoError(t, err)
			require.Equal(t, boot, before)
			for range 2 {
				out, err := invoke(t, p, "set")
				require.NoError(t, err)
				require.Equal(t, "set", out)
				after, err := invoke(t, p, "get")
				require.NoError(t, err)
				if mode == monitor.Fresh {
					assert.Equal(t, boot, after, "fresh: the bases after another request set them")
				} else {
					assert.Equal(t, set, after, "warm: the bases keep what the previous request set")
				}
			}
		}
	})
}

// TestServeKeepsBases: tender_fn_serve loads only the data segment
// selectors a request changed, so the FS and GS bases a guest set before it
// served stay as they were, warm and fresh (reloading all four after every
// fn_next cleared them where a null selector load clears a base: AMD).
// fn_bases "serve" serves through tender_fn_serve. Skipped where the guest
// cannot use FSGSBASE.
func TestServeKeepsBases(t *testing.T) {
	forFresh(t, func(t *testing.T, h *monitor.Host) {
		const boot = "2000000 3000000"
		for _, mode := range []monitor.Mode{monitor.Warm, monitor.Fresh} {
			p := newPool(t, h, "fn_bases", monitor.PoolConfig{Mode: mode, MaxInstances: 1, Guest: monitor.Config{Args: []string{"serve"}}})
			for i := range 3 {
				out, err := invoke(t, p, "get")
				if fe, ok := as[*monitor.FaultError](err); ok && fe.Vector == x86.VecUD {
					t.Skip("no FSGSBASE for the guest:", err)
				}
				require.NoError(t, err)
				assert.Equal(t, boot, out, "%s: the bases at request %d", mode, i+1)
			}
		}
	})
}

// TestFreshFailures: after a request that faults, one that spins past its
// deadline and one that breaks the protocol, each failing with its own
// error, the next request on the same pool is answered from a pristine
// instance.
func TestFreshFailures(t *testing.T) {
	forFresh(t, func(t *testing.T, h *monitor.Host) {
		p := newPool(t, h, "fn_state", monitor.PoolConfig{Mode: monitor.Fresh, MaxInstances: 1})
		check := func(what string) {
			t.Helper()
			_, err := invoke(t, p, "stash:"+what)
			require.NoError(t, err, what)
			out, err := invoke(t, p, "count")
			require.NoError(t, err, what)
			assert.Equal(t, "1", out, "after %s", what)
		}
		check("start")

		_, err := invoke(t, p, "fault")
		fe, ok := as[*monitor.FaultError](err)
		require.True(t, ok, "fault: %v", err)
		assert.EqualValues(t, 14, fe.Vector)
		check("fault")

		rep, err := p.Invoke(context.Background(), monitor.Request{Body: []byte("spin"), Deadline: time.Now().Add(50 * time.Millisecond)})
		assert.Empty(t, rep.Body)
		se, ok := as[*monitor.StoppedError](err)
		require.True(t, ok, "spin: %v", err)
		assert.ErrorIs(t, se, context.DeadlineExceeded)
		check("spin")

		_, err = invoke(t, p, "violate")
		pe, ok := as[*monitor.ProtocolError](err)
		require.True(t, ok, "violate: %v", err)
		assert.Equal(t, "fn_next", pe.Hypercall)
		check("violate")
	})
}

// TestFreshPrewarm: a prewarmed fresh instance is snapshot at its first
// fn_next by Prewarm, and serves from it without booting again.
func TestFreshPrewarm(t *testing.T) {
	forFresh(t, func(t *testing.T, h *monitor.Host) {
		p := newPool(t, h, "fn_state", monitor.PoolConfig{Mode: monitor.Fresh, MaxInstances: 2})
		require.NoError(t, p.Prewarm(context.Background(), 2))
		assert.EqualValues(t, 2, p.Stats().Idle)
		assert.Zero(t, p.Stats().Resets, "nothing to reset before a call")
		for range 4 {
			out, err := invoke(t, p, "count")
			require.NoError(t, err)
			assert.Equal(t, "1", out)
		}
		st := p.Stats()
		assert.EqualValues(t, 2, st.Started)
		assert.EqualValues(t, 4, st.Resets)
	})
}

// guestMemfds counts the guest memory memfds this process holds open.
func guestMemfds(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	n := 0
	for _, e := range ents {
		if l, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && strings.HasPrefix(l, "/memfd:tender-guest") {
			n++
		}
	}
	return n
}

// TestFreshShared: instances a fresh pool starts after its first one took
// its snapshot share that snapshot: on KVM they start from it (one memfd
// for all, whose pages they share) instead of booting; on the process
// backend they boot (a memfd each) and then take it over, keeping no copy
// of their own. Each serves from the snapshot's state, isolated from the
// others, with the guest's clock going on.
func TestFreshShared(t *testing.T) {
	forFresh(t, func(t *testing.T, h *monitor.Host) { testFreshShared(t, h) })
}

func testFreshShared(t *testing.T, h *monitor.Host) {
	before := guestMemfds(t)
	p := newPool(t, h, "fn_state", monitor.PoolConfig{Mode: monitor.Fresh, MaxInstances: 3, IdleTimeout: -1})
	time.Sleep(20 * time.Millisecond) // the image's clock is older than the instances'
	require.NoError(t, p.Prewarm(context.Background(), 3))
	require.EqualValues(t, 3, p.Stats().Live)
	if h.Backend() == monitor.BackendKVM {
		assert.Equal(t, before+1, guestMemfds(t), "one snapshot memfd for three instances")
	}

	// Three callers at once hold the three instances.
	var wg sync.WaitGroup
	outs := make([][]string, 3)
	for i := range outs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, body := range []string{"count", "stash:" + strconv.Itoa(i), "stash:again", "clock"} {
				out, err := invoke(t, p, body)
				if !assert.NoError(t, err) {
					return
				}
				outs[i] = append(outs[i], out)
			}
		}()
	}
	wg.Wait()
	var clocks []int64
	for i, o := range outs {
		require.Len(t, o, 4)
		assert.Equal(t, []string{"1", "", ""}, o[:3], "caller %d", i)
		ns, err := strconv.ParseInt(o[3], 10, 64)
		require.NoError(t, err)
		clocks = append(clocks, ns)
	}
	// The instance that booted and those started from its snapshot tell
	// the same time (TestGuestClock checks it is the host's).
	for i, ns := range clocks[1:] {
		assert.InDelta(t, clocks[0], ns, float64(2*time.Second), "caller %d's guest clock against caller 0's", i+1)
	}
	assert.EqualValues(t, 3, p.Stats().Started)
}

// TestFreshInstanceMemory: an extra fresh instance of fn_echo that has
// served a request costs the monitor at most 64 KiB, the pages the request
// dirtied included (the target is 64 KiB beside them): a pool's
// instances share one snapshot, on both backends. Counted as
// BenchmarkFreshMemory counts: RssAnon and the guest memfds' blocks, after
// a garbage collection.
func TestFreshInstanceMemory(t *testing.T) {
	forFresh(t, func(t *testing.T, h *monitor.Host) {
		const n = 64
		p := newPool(t, h, "fn_echo", monitor.PoolConfig{Mode: monitor.Fresh, MaxInstances: n + 1, IdleTimeout: -1})
		_, err := invoke(t, p, "first") // the snapshot
		require.NoError(t, err)
		used := func() int64 {
			runtime.GC()
			debug.FreeOSMemory()
			return anonKiB(t) + memfdKiB(t)
		}
		before := used()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		require.NoError(t, p.Prewarm(ctx, n+1))
		var wg sync.WaitGroup
		for range n + 1 { // one call on each instance
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := invoke(t, p, "hello")
				assert.NoError(t, err)
			}()
		}
		wg.Wait()
		for p.Stats().Resets < n+2 { // a reply comes before its reset
			time.Sleep(time.Millisecond)
		}
		require.EqualValues(t, n+1, p.Stats().Live)
		per := float64(used()-before) / n
		t.Logf("%.1f KiB per extra instance", per)
		assert.LessOrEqual(t, per, 64.0, "KiB per extra instance")
	})
}

// TestFreshRequestBuffer: the bytes of a long request that the monitor
// wrote into the guest's request buffer are gone for a later, shorter one
// that reads the whole buffer under fresh (and still there under warm). On
// the process backend the monitor's writes do not show in the guest
// process's page tables, so this is the monitor's own log at work.
func TestFreshRequestBuffer(t *testing.T) {
	forFresh(t, func(t *testing.T, h *monitor.Host) {
		long := "echo this request is longer than the next: " + strings.Repeat("SECRET", 8)
		for _, mode := range []monitor.Mode{monitor.Fresh, monitor.Warm} {
			p := newPool(t, h, "fn_state", monitor.PoolConfig{Mode: mode, MaxInstances: 1})
			out, err := invoke(t, p, long)
			require.NoError(t, err)
			require.Equal(t, long, out)
			out, err = invoke(t, p, "residue")
			require.NoError(t, err)
			if mode == monitor.Fresh {
				assert.Empty(t, out, "fresh: the request buffer holds an earlier request's bytes")
			} else {
				assert.Equal(t, long[len("residue"):], out, "warm: the earlier request's tail is still there")
			}
		}
	})
}

// TestNetFreshRefused: a fresh pool puts back guest memory after each call,
// not what a network device carried, so it refuses a guest that declares one
// (docs/abi.md), as it does one with a block device (TestBlockFreshRefused).
func TestNetFreshRefused(t *testing.T) {
	forFresh(t, func(t *testing.T, h *monitor.Host) {
		dev, ep, err := netdev.NewPipe()
		require.NoError(t, err)
		defer dev.Close()
		defer ep.Close()
		_, err = h.NewPool(monitor.PoolConfig{Mode: monitor.Fresh, Guest: monitor.Config{ELF: readGuest(t, "net_udpfn"),
			Net: map[string]netdev.Device{"net0": dev}}})
		assert.ErrorIs(t, err, monitor.ErrFreshUnsupported)
		assert.ErrorContains(t, err, "the guest declares 1 devices (network or block)")
	})
}
