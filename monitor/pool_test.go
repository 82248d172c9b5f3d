package monitor

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeVMs stands in for a backend's instances (lifecycle), so that the pool's
// own logic is tested without booting a guest. An instance echoes the
// request body; with hold set, each call waits for a token on it first.
type fakeVMs struct {
	hold    chan struct{}
	entered chan *call // every call an instance starts to serve
	fail    func(c *call) error
	// boot, when set, is start's outcome: an error fails the boot.
	boot func() error
	// stopping, when set, gets a token as stop starts, which then waits
	// for one on stopHold.
	stopping, stopHold chan struct{}

	started, stopped, ended atomic.Int64
	// alive counts the instances spawned and not yet ended or stopped,
	// and maxAlive is its highest value.
	alive, maxAlive atomic.Int64
}

// gone counts an instance that has ended or stopped.
func (vms *fakeVMs) gone() { vms.alive.Add(-1) }

type fakeVM struct {
	vms  *fakeVMs
	fn   *fnState
	done bool
	at   time.Time // when it parked
}

func (v *fakeVM) start(context.Context) error {
	if v.vms.boot != nil {
		if err := v.vms.boot(); err != nil {
			v.done = true
			v.vms.ended.Add(1)
			v.vms.gone()
			return err
		}
	}
	v.at = time.Now()
	return nil
}

func (v *fakeVM) parkedAt() time.Time { return v.at }

func (v *fakeVM) resume(c *call) bool {
	if v.done {
		panic("resume after the instance ended")
	}
	v.vms.entered <- c
	if v.vms.hold != nil {
		<-v.vms.hold
	}
	if v.vms.fail != nil {
		if err := v.vms.fail(c); err != nil {
			c.finish(Reply{}, err)
			v.done = true
			v.vms.ended.Add(1)
			v.vms.gone()
			return false
		}
	}
	c.finish(Reply{ID: c.id, Body: c.req.Body}, nil)
	v.at = time.Now()
	if v.fn.maxCalls == 1 { // a cold instance exits after its call
		v.done = true
		v.vms.ended.Add(1)
		v.vms.gone()
		return false
	}
	return true
}

func (v *fakeVM) stop() {
	if v.done {
		panic("stop after the instance ended")
	}
	v.done = true
	if v.vms.stopping != nil {
		v.vms.stopping <- struct{}{}
		<-v.vms.stopHold
	}
	v.vms.stopped.Add(1)
	v.vms.gone()
}

// fakePool returns a pool of cfg over fake instances, closed at the end of
// the test.
func fakePool(t *testing.T, cfg PoolConfig, vms *fakeVMs) *Pool {
	t.Helper()
	cfg, err := poolDefaults(cfg)
	require.NoError(t, err)
	if vms.entered == nil {
		vms.entered = make(chan *call, 100)
	}
	p := newPool(cfg, func(f *fnState) lifecycle {
		vms.started.Add(1)
		n := vms.alive.Add(1)
		for m := vms.maxAlive.Load(); n > m && !vms.maxAlive.CompareAndSwap(m, n); m = vms.maxAlive.Load() {
		}
		return &fakeVM{vms: vms, fn: f}
	})
	t.Cleanup(func() { p.Close() })
	return p
}

// busy starts an invocation that holds an instance until a token is sent on
// vms.hold; the returned channel gets its error.
func busy(t *testing.T, p *Pool, vms *fakeVMs) <-chan error {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		_, err := p.Invoke(context.Background(), Request{Body: []byte("busy")})
		errc <- err
	}()
	<-vms.entered
	return errc
}

// queued waits until n callers wait for an instance.
func queued(t *testing.T, p *Pool, n int64) {
	t.Helper()
	require.Eventually(t, func() bool { return p.Stats().Queued == n }, 5*time.Second, time.Millisecond)
}

func TestPoolSaturated(t *testing.T) {
	vms := &fakeVMs{hold: make(chan struct{})}
	p := fakePool(t, PoolConfig{MaxInstances: 1, QueueLimit: -1}, vms)
	errc := busy(t, p, vms)
	_, err := p.Invoke(context.Background(), Request{})
	require.ErrorIs(t, err, ErrSaturated, "no queue: the second caller is refused at once")
	vms.hold <- struct{}{}
	require.NoError(t, <-errc)
	assert.Equal(t, PoolStats{Live: 1, Idle: 1, Started: 1}, p.Stats())
}

func TestPoolQueue(t *testing.T) {
	vms := &fakeVMs{hold: make(chan struct{})}
	p := fakePool(t, PoolConfig{MaxInstances: 1, QueueLimit: 1}, vms)
	first := busy(t, p, vms)
	second := make(chan Reply, 1)
	go func() {
		rep, err := p.Invoke(context.Background(), Request{Body: []byte("second")})
		assert.NoError(t, err)
		second <- rep
	}()
	queued(t, p, 1)
	_, err := p.Invoke(context.Background(), Request{})
	require.ErrorIs(t, err, ErrSaturated, "the queue is full")

	vms.hold <- struct{}{}
	require.NoError(t, <-first)
	<-vms.entered // the queued caller got the instance handed over
	vms.hold <- struct{}{}
	rep := <-second
	assert.Equal(t, "second", string(rep.Body))
	assert.EqualValues(t, 1, vms.started.Load(), "the instance served both calls")
}

func TestPoolQueuedCallerStops(t *testing.T) {
	vms := &fakeVMs{hold: make(chan struct{})}
	p := fakePool(t, PoolConfig{MaxInstances: 1, QueueLimit: 4}, vms)
	first := busy(t, p, vms)

	ctx, cancel := context.WithCancelCause(context.Background())
	cancelled := make(chan error, 1)
	go func() {
		_, err := p.Invoke(ctx, Request{})
		cancelled <- err
	}()
	expired := make(chan error, 1)
	go func() {
		_, err := p.Invoke(context.Background(), Request{Deadline: time.Now().Add(50 * time.Millisecond)})
		expired <- err
	}()
	queued(t, p, 2)
	cancel(errSignalled)

	var se *StoppedError
	err := <-cancelled
	require.ErrorAs(t, err, &se)
	assert.ErrorIs(t, err, context.Canceled)
	assert.Equal(t, "guest stopped: interrupted by SIGINT", err.Error(), "the caller's cause is reported")
	err = <-expired
	require.ErrorAs(t, err, &se)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.EqualValues(t, 0, p.Stats().Queued)

	vms.hold <- struct{}{}
	require.NoError(t, <-first)
	assert.Equal(t, PoolStats{Live: 1, Idle: 1, Started: 1}, p.Stats(), "the callers that gave up took nothing with them")
}

func TestPoolRetiresIdle(t *testing.T) {
	vms := &fakeVMs{}
	p := fakePool(t, PoolConfig{IdleTimeout: 20 * time.Millisecond}, vms)
	_, err := p.Invoke(context.Background(), Request{})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return p.Stats().Live == 0 }, 5*time.Second, time.Millisecond)
	assert.EqualValues(t, 1, vms.stopped.Load(), "the idle instance was stopped")
	_, err = p.Invoke(context.Background(), Request{})
	require.NoError(t, err)
	assert.EqualValues(t, 2, vms.started.Load(), "a new instance took its place")
}

func TestPoolReplacesFailedInstance(t *testing.T) {
	boom := errors.New("boom")
	var n atomic.Int64
	vms := &fakeVMs{fail: func(*call) error {
		if n.Add(1) == 1 {
			return boom
		}
		return nil
	}}
	p := fakePool(t, PoolConfig{MaxInstances: 1}, vms)
	_, err := p.Invoke(context.Background(), Request{})
	require.ErrorIs(t, err, boom)
	assert.EqualValues(t, 0, p.Stats().Live, "the failed instance's slot is free")
	rep, err := p.Invoke(context.Background(), Request{Body: []byte("ok")})
	require.NoError(t, err)
	assert.Equal(t, "ok", string(rep.Body))
	assert.EqualValues(t, 2, vms.started.Load())
	assert.EqualValues(t, 0, vms.stopped.Load(), "an instance that ended is never stopped again")
}

// TestPoolLostInReset: a call whose instance was lost while being reset for
// it (errLostInReset) goes to another instance, with the same id and
// request, once; a second loss, or any other failure, is the call's error.
func TestPoolLostInReset(t *testing.T) {
	lost := fmt.Errorf("%w: %w", errLostInReset, &FaultError{Vector: 1})
	var n atomic.Int64
	losses := int64(1)
	var ids []uint64
	var bodies []string
	vms := &fakeVMs{fail: func(c *call) error {
		ids, bodies = append(ids, c.id), append(bodies, string(c.req.Body))
		if n.Add(1) <= losses {
			return lost
		}
		return nil
	}}
	p := fakePool(t, PoolConfig{Mode: Fresh, MaxInstances: 1}, vms)
	rep, err := p.Invoke(context.Background(), Request{Body: []byte("again")})
	require.NoError(t, err)
	assert.Equal(t, "again", string(rep.Body))
	assert.Equal(t, []uint64{rep.ID, rep.ID}, ids, "the same call, twice")
	assert.Equal(t, []string{"again", "again"}, bodies)
	assert.EqualValues(t, 2, vms.started.Load())
	assert.EqualValues(t, 1, p.Stats().Live)
	assert.EqualValues(t, 1, p.Stats().LostInReset)

	n.Store(0)
	losses, ids = 3, nil
	_, err = p.Invoke(context.Background(), Request{Body: []byte("twice")})
	require.ErrorIs(t, err, errLostInReset)
	var fe *FaultError
	require.ErrorAs(t, err, &fe, "what the guest did")
	assert.EqualValues(t, 1, fe.Vector)
	assert.Len(t, ids, 2, "two instances tried, no third")
	assert.EqualValues(t, 0, p.Stats().Live)
	assert.EqualValues(t, 3, vms.started.Load(), "the second took the first's slot")
	assert.EqualValues(t, 3, p.Stats().LostInReset)

	// Another failure is not handed on.
	n.Store(0)
	losses, ids = 1, nil
	lost = &FaultError{Vector: 14}
	_, err = p.Invoke(context.Background(), Request{})
	require.ErrorAs(t, err, &fe)
	assert.EqualValues(t, 14, fe.Vector)
	assert.Len(t, ids, 1)
}

func TestPoolColdInstanceServesOneCall(t *testing.T) {
	vms := &fakeVMs{}
	p := fakePool(t, PoolConfig{Mode: Cold}, vms)
	for i := range 3 {
		rep, err := p.Invoke(context.Background(), Request{})
		require.NoError(t, err)
		assert.EqualValues(t, i+1, rep.ID, "the pool numbers calls from 1")
	}
	assert.EqualValues(t, 3, vms.started.Load())
	assert.EqualValues(t, 3, vms.ended.Load())
	assert.Equal(t, PoolStats{Started: 3}, p.Stats())
}

func TestPoolCloseStopsInstances(t *testing.T) {
	vms := &fakeVMs{}
	p := fakePool(t, PoolConfig{}, vms)
	require.NoError(t, p.Prewarm(context.Background(), 3))
	assert.Equal(t, PoolStats{Live: 3, Idle: 3, Started: 3}, p.Stats())
	require.NoError(t, p.Close())
	assert.EqualValues(t, 3, vms.stopped.Load())
	_, err := p.Invoke(context.Background(), Request{})
	require.ErrorIs(t, err, ErrClosed)
}

// TestPoolPrewarmBootFails: an instance that fails to boot ends Prewarm with
// its error, and no boot starts once one has failed (Prewarm booted
// replacements for ever). A fresh pool's first instance boots alone, so it
// is the only one.
func TestPoolPrewarmBootFails(t *testing.T) {
	boom := errors.New("boom")
	for _, mode := range []Mode{Warm, Fresh} {
		vms := &fakeVMs{boot: func() error { return boom }}
		p := fakePool(t, PoolConfig{Mode: mode, MaxInstances: 50}, vms)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := p.Prewarm(ctx, 50)
		require.ErrorIs(t, err, boom, mode)
		require.NoError(t, ctx.Err(), "%s: Prewarm went on until its context ended", mode)
		cancel()
		// At most the boots under way when the first failed.
		most := int64(runtime.GOMAXPROCS(0))
		if mode == Fresh {
			most = 1
		}
		assert.LessOrEqual(t, vms.started.Load(), most, mode)
		assert.Equal(t, PoolStats{Started: uint64(vms.started.Load())}, p.Stats(), "%s: every failed slot is free", mode)
	}
}

// TestPoolRetireKeepsSlot holds the stop of an idle instance that the pool
// retires: its slot stays taken until the stop is over, so a caller that
// comes meanwhile waits for it, and no more than MaxInstances instances are
// ever alive (the slot was freed before the stop, and a new instance booted
// while the old one was still being torn down).
func TestPoolRetireKeepsSlot(t *testing.T) {
	vms := &fakeVMs{stopping: make(chan struct{}, 1), stopHold: make(chan struct{})}
	p := fakePool(t, PoolConfig{MaxInstances: 1, IdleTimeout: 20 * time.Millisecond}, vms)
	_, err := p.Invoke(context.Background(), Request{Body: []byte("one")})
	require.NoError(t, err)
	<-vms.entered
	<-vms.stopping // the janitor retires the idle instance

	errc := make(chan error, 1)
	go func() {
		_, err := p.Invoke(context.Background(), Request{Body: []byte("two")})
		errc <- err
	}()
	// The caller either queues for the slot or (wrongly) boots an
	// instance of its own at once.
	require.Eventually(t, func() bool { return p.Stats().Queued == 1 || len(vms.entered) > 0 }, 5*time.Second, time.Millisecond)
	assert.EqualValues(t, 1, p.Stats().Queued, "the caller waits for the slot of the instance being retired")
	close(vms.stopHold)
	require.NoError(t, <-errc)
	assert.EqualValues(t, 1, vms.maxAlive.Load(), "instances alive at once")
	assert.EqualValues(t, 2, vms.started.Load())
}

// TestPoolCloseTwice: a Close that comes while another is shutting the pool
// down returns only once every instance is stopped (it returned at once, so
// its caller could close the Host under instances still being retired).
func TestPoolCloseTwice(t *testing.T) {
	vms := &fakeVMs{stopping: make(chan struct{}, 1), stopHold: make(chan struct{})}
	p := fakePool(t, PoolConfig{}, vms)
	require.NoError(t, p.Prewarm(context.Background(), 1))
	first := make(chan error, 1)
	go func() { first <- p.Close() }()
	<-vms.stopping // the first Close retires the instance

	var stoppedThen atomic.Int64
	second := make(chan error, 1)
	go func() {
		err := p.Close()
		stoppedThen.Store(vms.stopped.Load())
		second <- err
	}()
	// Give a wrong early return time to show; a right one cannot come
	// before the release below.
	time.Sleep(100 * time.Millisecond)
	close(vms.stopHold)
	require.NoError(t, <-first)
	require.NoError(t, <-second)
	assert.EqualValues(t, 1, stoppedThen.Load(), "instances stopped when the second Close returned")
}
