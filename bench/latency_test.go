package bench

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// callRunner records when each request started; it fails the one numbered
// failAt (from 1), if set.
type callRunner struct {
	starts   []time.Time
	failAt   int
	closeErr error
}

func (r *callRunner) enter() error { return nil }
func (r *callRunner) once(context.Context) error {
	r.starts = append(r.starts, time.Now())
	if len(r.starts) == r.failAt {
		return errors.New("request failed")
	}
	return nil
}
func (r *callRunner) memory(context.Context) (float64, string, error) { return 0, "", nil }
func (r *callRunner) close() error                                    { return r.closeErr }
func (r *callRunner) timesRequests()                                  {}

// TestLatencyWarmup: the timed requests start only after the Warmup
// requests and minWarmup have both passed (when they are fast, more run),
// there are N of them, and the progress steps count Warmup + N requests
// whatever the warm-up's length.
func TestLatencyWarmup(t *testing.T) {
	r := &callRunner{}
	steps := 0
	begin := time.Now()
	samples, err := latency(context.Background(), Config{N: 5, Warmup: 2}, r, func() { steps++ })
	require.NoError(t, err)
	assert.Len(t, samples, 5)
	assert.Equal(t, 7, steps)
	assert.GreaterOrEqual(t, r.starts[len(r.starts)-5].Sub(begin), minWarmup, "the first timed request")

	_, err = latency(context.Background(), Config{N: 5, Warmup: 2}, &callRunner{failAt: 1}, func() {})
	assert.Error(t, err, "a failed warm-up request")
}

// TestMeasureCleanupError: the error of a row's cleanup is reported whether
// the row succeeded (in its notes) or failed (after why it failed).
func TestMeasureCleanupError(t *testing.T) {
	cfg := Config{N: 2, Warmup: 1, Duration: 10 * time.Millisecond, Concurrency: 1}
	leftover := errors.New("container left behind")
	mk := func(run *callRunner) row {
		return row{key: "k", name: "k", setup: func(context.Context) (runner, error) { return run, nil }}
	}
	m := measure(context.Background(), cfg, mk(&callRunner{failAt: 1, closeErr: leftover}), noProgress{})
	assert.Equal(t, "failed: request failed; cleanup: container left behind", m.Unavailable)

	m = measure(context.Background(), cfg, mk(&callRunner{closeErr: leftover}), noProgress{})
	assert.True(t, m.OK(), m.Unavailable)
	assert.Equal(t, "cleanup: container left behind", m.Notes)
}

// slowRetrier is a callRunner whose first request takes long enough to be
// the whole warm-up, and whose requests numbered in retryAt (from 1) are
// made again, which takes retryDelay.
type slowRetrier struct {
	callRunner
	retryAt    map[int]bool
	retryDelay time.Duration
	n          int64
}

func (r *slowRetrier) once(ctx context.Context) error {
	err := r.callRunner.once(ctx)
	switch i := len(r.starts); {
	case i == 1:
		time.Sleep(minWarmup + time.Millisecond)
	case r.retryAt[i]:
		r.n++
		time.Sleep(r.retryDelay)
	}
	return err
}
func (r *slowRetrier) retried() int64 { return r.n }

// TestLatencyRetried: a timed request that the runner made again is not a
// sample (its time covers two runs); another one is timed in its place, and
// the progress steps still count Warmup + N requests. A runner that makes
// more than N of them again fails.
func TestLatencyRetried(t *testing.T) {
	const delay = 200 * time.Millisecond
	r := &slowRetrier{retryAt: map[int]bool{3: true, 5: true}, retryDelay: delay}
	steps := 0
	samples, err := latency(context.Background(), Config{N: 4, Warmup: 1}, r, func() { steps++ })
	require.NoError(t, err)
	assert.Len(t, samples, 4)
	assert.Equal(t, 5, steps)
	assert.Len(t, r.starts, 7, "one warm-up request, 4 timed, 2 made again")
	for _, d := range samples {
		assert.Less(t, d, delay)
	}

	all := map[int]bool{}
	for i := 2; i < 20; i++ {
		all[i] = true
	}
	_, err = latency(context.Background(), Config{N: 4, Warmup: 1}, &slowRetrier{retryAt: all}, func() {})
	assert.ErrorContains(t, err, "more than 4 timed requests were made again")
}
