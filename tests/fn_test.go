package tests

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tendervm/tender/hypercall"
	"github.com/tendervm/tender/monitor"
	"github.com/tendervm/tender/monitor/vcpu"
)

func newPool(t testing.TB, h *monitor.Host, guest string, cfg monitor.PoolConfig) *monitor.Pool {
	t.Helper()
	cfg.Guest.ELF = readGuest(t, guest)
	cfg.Guest.Name = guest
	p, err := h.NewPool(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { p.Close() })
	return p
}

// TestFunctions checks every example function in both modes.
func TestFunctions(t *testing.T) {
	digest := sha256.Sum256([]byte("tender"))
	cases := []struct {
		fn, in, out string
	}{
		{"fn_echo", "hello, world", "hello, world"},
		{"fn_echo", "", ""},
		{"fn_upper", "Hello, Tender 42!", "HELLO, TENDER 42!"},
		{"fn_sha256", "tender", hex.EncodeToString(digest[:])},
		{"fn_wordcount", "one two\nthree  four five\n", "2 5 25"},
		{"fn_fault", "not a fault", "not a fault"},
		{"fn_spin", "no spin", "no spin"},
	}
	for _, b := range backends(t) {
		h := newHost(t, b)
		for _, mode := range []monitor.Mode{monitor.Cold, monitor.Warm} {
			for _, c := range cases {
				p := newPool(t, h, c.fn, monitor.PoolConfig{Mode: mode})
				for i := range 3 {
					rep, err := p.Invoke(context.Background(), monitor.Request{Body: []byte(c.in)})
					require.NoError(t, err, "%s %s %s", b, mode, c.fn)
					assert.Equal(t, c.out, string(rep.Body), "%s %s %s #%d", b, mode, c.fn, i)
					assert.Zero(t, rep.Status)
				}
			}
		}
	}
}

// TestWarmReuse checks that a warm pool serves sequential invocations one
// after another on the same instance, one exit each.
func TestWarmReuse(t *testing.T) {
	for _, b := range backends(t) {
		h := newHost(t, b)
		p := newPool(t, h, "fn_echo", monitor.PoolConfig{Mode: monitor.Warm})
		const n = 200
		for i := range n {
			body := []byte(fmt.Sprintf("request %d", i))
			rep, err := p.Invoke(context.Background(), monitor.Request{Body: body})
			require.NoError(t, err)
			require.Equal(t, body, rep.Body)
		}
		st := p.Stats()
		// One instance serves them all unless the machine is so loaded
		// that the vCPU thread missed a 2 ms hand-off; allow a few.
		assert.LessOrEqual(t, st.Started, uint64(5), "%s: instances booted for %d sequential calls", b, n)
		assert.EqualValues(t, st.Started, st.Live)
		assert.EqualValues(t, st.Started, st.Idle)
		// One fn_next per invocation, plus, per instance, the one that
		// returned its last reply and now waits for the next request.
		assert.EqualValues(t, n+st.Started, st.Exits[vcpu.ExitHypercall], "%s: exits", b)
	}
}

// TestWarmInvokeAllocs: a warm invocation allocates only its reply's body;
// the call it hands over is reused (issue 11: an allocation costs 70-180 ns
// on a small host).
func TestWarmInvokeAllocs(t *testing.T) {
	for _, b := range backends(t) {
		h := newHost(t, b)
		p := newPool(t, h, "fn_echo", monitor.PoolConfig{Mode: monitor.Warm, MaxInstances: 1})
		body := []byte("hello")
		allocs := testing.AllocsPerRun(200, func() {
			rep, err := p.Invoke(context.Background(), monitor.Request{Body: body})
			if err != nil || !bytes.Equal(rep.Body, body) {
				t.Fatalf("%s: %q, %v", b, rep.Body, err)
			}
		})
		assert.EqualValues(t, 1, allocs, "%s: allocations per warm invocation", b)
	}
}

// TestWarmIDs checks that request ids count up within the pool.
func TestWarmIDs(t *testing.T) {
	for _, b := range backends(t) {
		h := newHost(t, b)
		p := newPool(t, h, "fn_echo", monitor.PoolConfig{Mode: monitor.Warm, MaxInstances: 1})
		for i := range 20 {
			rep, err := p.Invoke(context.Background(), monitor.Request{Body: []byte("x")})
			require.NoError(t, err)
			require.EqualValues(t, i+1, rep.ID)
		}
	}
}

// TestColdIsFresh checks that every cold invocation gets its own instance.
func TestColdIsFresh(t *testing.T) {
	for _, b := range backends(t) {
		h := newHost(t, b)
		p := newPool(t, h, "fn_echo", monitor.PoolConfig{Mode: monitor.Cold})
		for i := range 5 {
			rep, err := p.Invoke(context.Background(), monitor.Request{Body: []byte("x")})
			require.NoError(t, err)
			assert.EqualValues(t, i+1, rep.ID, "ids are the pool's")
		}
		assert.EqualValues(t, 5, p.Stats().Started)
		require.Eventually(t, func() bool { return p.Stats().Live == 0 }, 5*time.Second, 5*time.Millisecond)
	}
}

// TestFunctionFailures checks the typed error of each way an invocation can
// fail, and that the pool keeps serving afterwards.
func TestFunctionFailures(t *testing.T) {
	for _, b := range backends(t) {
		h := newHost(t, b)
		for _, mode := range []monitor.Mode{monitor.Cold, monitor.Warm} {
			faulty := newPool(t, h, "fn_fault", monitor.PoolConfig{Mode: mode})
			_, err := faulty.Invoke(context.Background(), monitor.Request{Body: []byte("fault")})
			fe, ok := as[*monitor.FaultError](err)
			require.True(t, ok, "%s %s: %v", b, mode, err)
			assert.EqualValues(t, 14, fe.Vector)
			rep, err := faulty.Invoke(context.Background(), monitor.Request{Body: []byte("fine")})
			require.NoError(t, err, "the pool replaced the faulted instance")
			assert.Equal(t, "fine", string(rep.Body))

			// Requests that should succeed get the default 10 s; the spins
			// carry short deadlines of their own.
			spin := newPool(t, h, "fn_spin", monitor.PoolConfig{Mode: mode})
			_, err = spin.Invoke(context.Background(), monitor.Request{Body: []byte("spin"), Deadline: time.Now().Add(150 * time.Millisecond)})
			assert.ErrorIs(t, err, context.DeadlineExceeded, "%s %s", b, mode)
			_, ok = as[*monitor.StoppedError](err)
			assert.True(t, ok)
			rep, err = spin.Invoke(context.Background(), monitor.Request{Body: []byte("ok")})
			require.NoError(t, err)
			assert.Equal(t, "ok", string(rep.Body))
			// A request deadline shorter than the pool's.
			start := time.Now()
			_, err = spin.Invoke(context.Background(), monitor.Request{Body: []byte("spin"), Deadline: time.Now().Add(50 * time.Millisecond)})
			assert.ErrorIs(t, err, context.DeadlineExceeded)
			// A hang check with room for a busy 2-core host, not a latency
			// measurement.
			assert.Less(t, time.Since(start), 1500*time.Millisecond)

			_, err = faulty.Invoke(context.Background(), monitor.Request{Body: make([]byte, hypercall.FnRequestMax+1)})
			assert.ErrorIs(t, err, monitor.ErrTooLarge)
			big := bytes.Repeat([]byte("z"), hypercall.FnRequestMax)
			rep, err = faulty.Invoke(context.Background(), monitor.Request{Body: big})
			require.NoError(t, err, "a request of exactly the limit")
			assert.Equal(t, big, rep.Body)
		}
	}
}

// TestNotAFunction runs a guest that never asks for a request.
func TestNotAFunction(t *testing.T) {
	for _, b := range backends(t) {
		h := newHost(t, b)
		p := newPool(t, h, "hello", monitor.PoolConfig{})
		_, err := p.Invoke(context.Background(), monitor.Request{Body: []byte("x")})
		pe, ok := as[*monitor.ProtocolError](err)
		require.True(t, ok, "%v", err)
		assert.Contains(t, pe.Error(), "exited with status 0 before taking a request")
		// And fn_next from a guest run outside a pool.
		_, _, err = runGuest(context.Background(), t, h, monitor.Config{ELF: readGuest(t, "fn_echo")})
		assert.ErrorContains(t, err, "not being run as a function")
	}
}

// TestSaturation fails fast when every instance is busy and the queue full.
func TestSaturation(t *testing.T) {
	for _, b := range backends(t) {
		h := newHost(t, b)
		// The spin holds the one instance until its deadline; the refusal
		// is seen within a poll or two of the instance going live.
		p := newPool(t, h, "fn_spin", monitor.PoolConfig{MaxInstances: 1, QueueLimit: -1, Timeout: 500 * time.Millisecond})
		held := make(chan error, 1)
		go func() {
			_, err := p.Invoke(context.Background(), monitor.Request{Body: []byte("spin")})
			held <- err
		}()
		require.Eventually(t, func() bool { return p.Stats().Live == 1 }, 5*time.Second, time.Millisecond)
		var err error
		require.Eventually(t, func() bool {
			_, err = p.Invoke(context.Background(), monitor.Request{Body: []byte("x")})
			return errors.Is(err, monitor.ErrSaturated)
		}, 2*time.Second, 10*time.Millisecond, "last error: %v", err)
		assert.ErrorIs(t, <-held, context.DeadlineExceeded)
	}
}

// TestIdleRetire checks that idle warm instances retire after IdleTimeout.
func TestIdleRetire(t *testing.T) {
	for _, b := range backends(t) {
		h := newHost(t, b)
		p := newPool(t, h, "fn_echo", monitor.PoolConfig{IdleTimeout: 50 * time.Millisecond})
		_, err := p.Invoke(context.Background(), monitor.Request{Body: []byte("x")})
		require.NoError(t, err)
		require.Eventually(t, func() bool { return p.Stats().Live == 0 }, 5*time.Second, 5*time.Millisecond)
		_, err = p.Invoke(context.Background(), monitor.Request{Body: []byte("y")})
		require.NoError(t, err, "a retired pool grows again")
	}
}

// TestConcurrentWarm hammers a warm pool from many goroutines with a mix of
// good and faulting requests: every request gets its own correct answer.
func TestConcurrentWarm(t *testing.T) {
	for _, b := range backends(t) {
		h := newHost(t, b)
		p := newPool(t, h, "fn_fault", monitor.PoolConfig{MaxInstances: 4})
		var wg sync.WaitGroup
		var mu sync.Mutex
		counts := map[string]int{}
		for g := range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 25 {
					body := fmt.Sprintf("g%d-%d", g, i)
					if i%10 == 3 {
						body = "fault"
					}
					rep, err := p.Invoke(context.Background(), monitor.Request{Body: []byte(body)})
					outcome := "ok"
					switch {
					case body == "fault":
						if _, ok := as[*monitor.FaultError](err); !ok {
							outcome = fmt.Sprintf("fault request: %v", err)
						} else {
							outcome = "fault"
						}
					case err != nil:
						outcome = err.Error()
					case string(rep.Body) != body:
						outcome = fmt.Sprintf("wrong reply %q for %q", rep.Body, body)
					}
					mu.Lock()
					counts[outcome]++
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		assert.Equal(t, map[string]int{"ok": 16 * 22, "fault": 16 * 3}, counts, b)
	}
}

// TestPrewarm boots idle instances ahead of the first invocation.
func TestPrewarm(t *testing.T) {
	for _, b := range backends(t) {
		h := newHost(t, b)
		p := newPool(t, h, "fn_echo", monitor.PoolConfig{MaxInstances: 3, IdleTimeout: -1})
		require.NoError(t, p.Prewarm(context.Background(), 5))
		st := p.Stats()
		assert.EqualValues(t, 3, st.Live, "capped at MaxInstances")
		assert.EqualValues(t, 3, st.Idle)
		rep, err := p.Invoke(context.Background(), monitor.Request{Body: []byte("warm")})
		require.NoError(t, err)
		assert.Equal(t, "warm", string(rep.Body))
		assert.EqualValues(t, 3, p.Stats().Started, "served by a prewarmed instance")
		cold := newPool(t, h, "fn_echo", monitor.PoolConfig{Mode: monitor.Cold})
		assert.ErrorContains(t, cold.Prewarm(context.Background(), 1), "only a warm or fresh pool can be prewarmed")
	}
}

// TestPrewarmBootFails prewarms a guest that ends before its first fn_next:
// Prewarm returns the first instance's error and boots no more (it booted
// replacements for ever, GOMAXPROCS at a time, and Close waited for it), in
// warm and fresh pools.
func TestPrewarmBootFails(t *testing.T) {
	for _, b := range backends(t) {
		h := newHost(t, b)
		for _, mode := range []monitor.Mode{monitor.Warm, monitor.Fresh} {
			p, err := h.NewPool(monitor.PoolConfig{Mode: mode, MaxInstances: 16, Guest: monitor.Config{ELF: readGuest(t, "hello"), Name: "hello"}})
			if errors.Is(err, monitor.ErrFreshUnsupported) {
				t.Logf("%s %s: %v", b, mode, err)
				continue
			}
			require.NoError(t, err)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err = p.Prewarm(ctx, 16)
			require.NoError(t, ctx.Err(), "%s %s: Prewarm went on until its context ended", b, mode)
			cancel()
			pe, ok := as[*monitor.ProtocolError](err)
			require.True(t, ok, "%s %s: want a ProtocolError, got %v", b, mode, err)
			assert.Contains(t, pe.Error(), "exited with status 0 before taking a request")
			st := p.Stats()
			// At most the boots under way when the first failed.
			assert.LessOrEqual(t, st.Started, uint64(runtime.GOMAXPROCS(0)), "%s %s", b, mode)
			if mode == monitor.Fresh {
				assert.EqualValues(t, 1, st.Started, "%s: a fresh pool's first instance boots alone", b)
			}
			assert.Zero(t, st.Live, "%s %s", b, mode)
			within(t, string(b)+" "+string(mode)+" close", func() { p.Close() })
		}
	}
}

// TestPrewarmBootOutput: what a guest wrote before it failed during a
// Prewarm boot reaches a slow console before Prewarm returns (it was
// dropped: with no call handed over, nothing flushed it), and a console
// that takes nothing holds Prewarm only until its context ends.
func TestPrewarmBootOutput(t *testing.T) {
	for _, b := range backends(t) {
		h := newHost(t, b)
		var out slowWriter
		p := newPool(t, h, "exit", monitor.PoolConfig{Guest: monitor.Config{Args: []string{"x"}, Console: &out}})
		err := p.Prewarm(context.Background(), 1)
		pe, ok := as[*monitor.ProtocolError](err)
		require.True(t, ok, "%s: want a ProtocolError, got %v", b, err)
		assert.Contains(t, pe.Error(), "exited with status 2 before taking a request")
		assert.Equal(t, "usage: exit [STATUS]\n", out.String(), b)

		console, unblock := stalledConsole()
		p = newPool(t, h, "exit", monitor.PoolConfig{Guest: monitor.Config{Args: []string{"x"}, Console: console}})
		t.Cleanup(unblock)
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		within(t, string(b)+" prewarm, stalled console", func() { err = p.Prewarm(ctx, 1) })
		cancel()
		pe, ok = as[*monitor.ProtocolError](err)
		require.True(t, ok, "%s: want a ProtocolError, got %v", b, err)
		assert.Contains(t, pe.Error(), "exited with status 2 before taking a request")
	}
}

// TestWarmSequentialReuse keeps one caller busy for many calls with a pool
// that may grow: the hand-off must keep a single instance in use.
func TestWarmSequentialReuse(t *testing.T) {
	for _, b := range backends(t) {
		h := newHost(t, b)
		p := newPool(t, h, "fn_upper", monitor.PoolConfig{Mode: monitor.Warm, MaxInstances: 16})
		for range 500 {
			_, err := p.Invoke(context.Background(), monitor.Request{Body: []byte("a")})
			require.NoError(t, err)
		}
		assert.LessOrEqual(t, p.Stats().Started, uint64(5), b)
	}
}

// TestInvokeCancel cancels an invocation while the guest works on it: the
// caller gets a StoppedError soon, that instance is discarded, and the pool
// serves the next call.
func TestInvokeCancel(t *testing.T) {
	for _, b := range backends(t) {
		h := newHost(t, b)
		p := newPool(t, h, "fn_spin", monitor.PoolConfig{MaxInstances: 1})
		_, err := p.Invoke(context.Background(), monitor.Request{Body: []byte("warm")})
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(100*time.Millisecond, cancel)
		start := time.Now()
		_, err = p.Invoke(ctx, monitor.Request{Body: []byte("spin")})
		assert.ErrorIs(t, err, context.Canceled, "%s", b)
		_, ok := as[*monitor.StoppedError](err)
		assert.True(t, ok, "%s: %v", b, err)
		assert.Less(t, time.Since(start), 1500*time.Millisecond, "%s: cancelled after 100 ms", b)
		rep, err := p.Invoke(context.Background(), monitor.Request{Body: []byte("after")})
		require.NoError(t, err, "%s", b)
		assert.Equal(t, "after", string(rep.Body))
		assert.EqualValues(t, 2, p.Stats().Started, "%s: the cancelled instance was replaced", b)
	}
}

// TestQueueCancel gives up on a queued call: it fails with the caller's
// error, and the instance it might have been handed goes to the next caller.
func TestQueueCancel(t *testing.T) {
	for _, b := range backends(t) {
		h := newHost(t, b)
		p := newPool(t, h, "fn_spin", monitor.PoolConfig{MaxInstances: 1, Timeout: time.Minute})
		// The busy call has a deadline far beyond the queued one's, so the
		// queued call can only return in time by heeding its own context.
		busyCtx, stopBusy := context.WithCancel(context.Background())
		defer stopBusy()
		busy := make(chan error, 1)
		go func() {
			_, err := p.Invoke(busyCtx, monitor.Request{Body: []byte("spin"), Deadline: time.Now().Add(30 * time.Second)})
			busy <- err
		}()
		require.Eventually(t, func() bool { return p.Stats().Live == 1 }, 5*time.Second, time.Millisecond)
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		_, err := p.Invoke(ctx, monitor.Request{Body: []byte("queued")})
		assert.ErrorIs(t, err, context.DeadlineExceeded, "%s", b)
		select {
		case err := <-busy:
			t.Fatalf("%s: the busy call ended (%v) before the queued call gave up", b, err)
		default:
		}
		stopBusy()
		select {
		case err := <-busy:
			assert.ErrorIs(t, err, context.Canceled, "%s", b)
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: the busy call still running 10 s after its cancellation", b)
		}
		rep, err := p.Invoke(context.Background(), monitor.Request{Body: []byte("next")})
		require.NoError(t, err, "%s", b)
		assert.Equal(t, "next", string(rep.Body))
		assert.EqualValues(t, 1, p.Stats().Live, "%s", b)
	}
}

// TestLockedCallers invokes from goroutines locked to their threads, which
// then exit (ending those threads): instances booted or served on them go on
// serving other callers.
func TestLockedCallers(t *testing.T) {
	for _, b := range backends(t) {
		h := newHost(t, b)
		p := newPool(t, h, "fn_echo", monitor.PoolConfig{MaxInstances: 2})
		for i := range 8 {
			done := make(chan error)
			go func() {
				runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
				body := []byte(fmt.Sprint(i))
				rep, err := p.Invoke(context.Background(), monitor.Request{Body: body})
				if err == nil && !bytes.Equal(rep.Body, body) {
					err = fmt.Errorf("reply %q for %q", rep.Body, body)
				}
				done <- err
			}()
			require.NoError(t, <-done, "%s call %d", b, i)
		}
		assert.EqualValues(t, 1, p.Stats().Started, "%s: one instance served every call", b)
	}
}

// TestExpiredBeforeStart sends calls whose deadline has passed by the time
// an instance takes them: they fail as late without running, and the
// instance they were given does not linger (a cold pool's would otherwise
// hold its slot for ever).
func TestExpiredBeforeStart(t *testing.T) {
	for _, b := range backends(t) {
		h := newHost(t, b)
		for _, mode := range []monitor.Mode{monitor.Cold, monitor.Warm} {
			p := newPool(t, h, "fn_echo", monitor.PoolConfig{Mode: mode, MaxInstances: 1})
			_, err := p.Invoke(context.Background(), monitor.Request{Body: []byte("late"), Deadline: time.Now().Add(-time.Second)})
			assert.ErrorIs(t, err, context.DeadlineExceeded, "%s %s: refused at once", b, mode)
			for range 3 {
				// Expires while the instance boots (about 2 ms), unless
				// the machine boots faster than that.
				_, err := p.Invoke(context.Background(), monitor.Request{Body: []byte("late"), Deadline: time.Now().Add(300 * time.Microsecond)})
				if err != nil {
					assert.ErrorIs(t, err, context.DeadlineExceeded, "%s %s", b, mode)
				}
			}
			rep, err := p.Invoke(context.Background(), monitor.Request{Body: []byte("on time")})
			require.NoError(t, err, "%s %s", b, mode)
			assert.Equal(t, "on time", string(rep.Body))
			if mode == monitor.Cold {
				assert.EqualValues(t, 0, p.Stats().Live, "%s: no cold instance outlives its call", b)
			}
		}
	}
}
