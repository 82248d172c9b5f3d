package tests

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tendervm/tender/monitor"
)

// These tests race a guest's reply against its call's deadline or its
// caller's cancellation, with the stop timed around the median invocation
// time so that both sides often come within microseconds of each other.
// Either may win, but every invocation must end in exactly one outcome: the
// guest's reply, or a StoppedError with the stop's cause. A reply lost to a
// stop that had begun but not yet recorded itself showed as "invocation N
// left unanswered" (warm) or as a ProtocolError blaming the guest (cold).

// raceCalls is how many invocations one sweep makes.
func raceCalls(mode monitor.Mode) int {
	n := 20000 // warm: tens of microseconds each
	if mode == monitor.Cold {
		n = 1000 // about a millisecond each
	}
	if testing.Short() {
		n /= 10
	}
	return n
}

// medianInvoke measures the median time of an fn_echo invocation in p.
func medianInvoke(t *testing.T, p *monitor.Pool) time.Duration {
	t.Helper()
	ds := make([]time.Duration, 101)
	for i := range ds {
		start := time.Now()
		_, err := p.Invoke(context.Background(), monitor.Request{Body: []byte("measure")})
		ds[i] = time.Since(start)
		require.NoError(t, err)
	}
	slices.Sort(ds)
	return ds[len(ds)/2]
}

// stopper starts invocation i of n: it returns the context and request to
// invoke with, whose stop falls at a factor of median swept from 0.5 to 2,
// and a function to call afterwards.
type stopper func(i, n int, median time.Duration, req *monitor.Request) (context.Context, func())

// sweep makes raceCalls invocations of fn_echo from two callers, each with
// its stop set by stop, and checks that each ends with its own reply or a
// StoppedError whose cause is want.
//
// A sweep that saw only one outcome raced nothing, so it goes on for more
// rounds (re-measuring the median, which a busy host may have moved) until
// both have happened, and fails if they still have not.
func sweep(t *testing.T, p *monitor.Pool, mode monitor.Mode, stop stopper, want error) {
	t.Helper()
	const rounds = 5
	var answered, stopped int
	for r := 0; r < rounds && (answered == 0 || stopped == 0); r++ {
		a, s := sweepRound(t, p, mode, stop, want)
		answered, stopped = answered+a, stopped+s
	}
	assert.Positive(t, answered, "no invocation answered in %d rounds: nothing raced", rounds)
	assert.Positive(t, stopped, "no invocation stopped in %d rounds: nothing raced", rounds)

	// The pool is unharmed: a call with time to spare is answered.
	rep, err := p.Invoke(context.Background(), monitor.Request{Body: []byte("after")})
	require.NoError(t, err)
	assert.Equal(t, "after", string(rep.Body))
}

// sweepRound is one round of sweep: it returns how many invocations were
// answered and how many stopped.
func sweepRound(t *testing.T, p *monitor.Pool, mode monitor.Mode, stop stopper, want error) (answered, stopped int) {
	t.Helper()
	median := medianInvoke(t, p)
	n := raceCalls(mode)
	var (
		mu   sync.Mutex
		bad  []string
		seen = map[uint64]bool{}
		wg   sync.WaitGroup
	)
	for w := range 2 {
		wg.Go(func() {
			var last uint64
			for i := w; i < n; i += 2 {
				body := []byte(fmt.Sprintf("call %d", i))
				req := monitor.Request{Body: body}
				ctx, done := stop(i, n, median, &req)
				rep, err := p.Invoke(ctx, req)
				done()
				var why string
				switch se, ok := as[*monitor.StoppedError](err); {
				case err == nil && !bytes.Equal(rep.Body, body):
					why = fmt.Sprintf("reply %q", rep.Body)
				case err == nil && rep.ID <= last:
					why = fmt.Sprintf("reply id %d after %d", rep.ID, last)
				case err == nil:
					last = rep.ID
				case !ok:
					why = fmt.Sprintf("%T: %v", err, err)
				case !errors.Is(se.Cause, want):
					why = fmt.Sprintf("stopped by %v, want %v", se.Cause, want)
				}
				mu.Lock()
				switch {
				case why != "":
					bad = append(bad, fmt.Sprintf("call %d: %s", i, why))
				case err != nil:
					stopped++
				case seen[rep.ID]:
					bad = append(bad, fmt.Sprintf("call %d: reply id %d seen twice", i, rep.ID))
				default:
					seen[rep.ID] = true
					answered++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	t.Logf("median %v; %d of %d answered, %d stopped", median, answered, n, stopped)
	assert.Empty(t, bad, "invocations that ended in neither a reply nor a stop (%d of %d)", len(bad), n)
	return answered, stopped
}

// factor sweeps i of n from 0.5 to 2.
func factor(i, n int) float64 { return 0.5 + 1.5*float64(i)/float64(n) }

// TestDeadlineRace sweeps request deadlines around the median invocation
// time, warm and cold.
func TestDeadlineRace(t *testing.T) {
	deadline := func(i, n int, median time.Duration, req *monitor.Request) (context.Context, func()) {
		req.Deadline = time.Now().Add(time.Duration(factor(i, n) * float64(median)))
		return context.Background(), func() {}
	}
	for _, b := range backends(t) {
		h := newHost(t, b)
		for _, mode := range []monitor.Mode{monitor.Warm, monitor.Cold} {
			t.Run(fmt.Sprintf("%s/%s", b, mode), func(t *testing.T) {
				p := newPool(t, h, "fn_echo", monitor.PoolConfig{Mode: mode, MaxInstances: 2})
				sweep(t, p, mode, deadline, context.DeadlineExceeded)
			})
		}
	}
}

// TestCancelRace cancels callers' contexts around the median invocation
// time, warm and cold.
func TestCancelRace(t *testing.T) {
	cancelAt := func(i, n int, median time.Duration, _ *monitor.Request) (context.Context, func()) {
		ctx, cancel := context.WithCancel(context.Background())
		tm := time.AfterFunc(time.Duration(factor(i, n)*float64(median)), cancel)
		return ctx, func() { tm.Stop(); cancel() }
	}
	for _, b := range backends(t) {
		h := newHost(t, b)
		for _, mode := range []monitor.Mode{monitor.Warm, monitor.Cold} {
			t.Run(fmt.Sprintf("%s/%s", b, mode), func(t *testing.T) {
				p := newPool(t, h, "fn_echo", monitor.PoolConfig{Mode: mode, MaxInstances: 2})
				sweep(t, p, mode, cancelAt, context.Canceled)
			})
		}
	}
}
