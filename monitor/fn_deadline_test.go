package monitor

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// An instance's deadline timer is moved only earlier: these tests pin that
// each call is still stopped at its own deadline, never at an earlier call's.

// TestDeadlineEarlierCall: a call whose deadline is earlier than the one the
// timer is armed for is stopped at its own.
func TestDeadlineEarlierCall(t *testing.T) {
	x := newFnFixture(t)
	x.give(calm(1), nil) // arms the timer a minute ahead
	c := &call{ctx: context.Background(), id: 2, deadline: time.Now().Add(stopSoon)}
	x.give(c, []byte("one"))
	select {
	case <-x.kicks:
	case <-time.After(10 * time.Second):
		t.Fatal("the call's deadline passed and nothing stopped it")
	}
	assert.False(t, time.Now().Before(c.deadline), "stopped before its deadline")
	se, ok := errors.AsType[*StoppedError](x.f.errStopped())
	require.True(t, ok)
	assert.ErrorIs(t, se.Cause, context.DeadlineExceeded)
}

// TestDeadlineLaterCall: the timer, armed for an answered call's earlier
// deadline, fires during the next call and leaves it running; it stops that
// call at the call's own deadline.
func TestDeadlineLaterCall(t *testing.T) {
	x := newFnFixture(t)
	first := &call{ctx: context.Background(), id: 1, deadline: time.Now().Add(stopSoon)}
	x.give(first, nil)
	c := &call{ctx: context.Background(), id: 2, deadline: time.Now().Add(4 * stopSoon)}
	x.give(c, []byte("one"))
	require.True(t, first.finished)
	require.NoError(t, first.err)

	time.Sleep(2 * stopSoon) // past the first call's deadline
	if time.Now().Before(c.deadline) {
		assert.Zero(t, x.kicked(), "stopped at the deadline of the call before")
	}
	select {
	case <-x.kicks:
	case <-time.After(10 * time.Second):
		t.Fatal("the call's deadline passed and nothing stopped it")
	}
	assert.False(t, time.Now().Before(c.deadline), "stopped before its deadline")
	assert.Zero(t, x.kicked(), "kicked more than once")
}

// TestDeadlineAnsweredInTime: calls answered before their deadlines are
// never stopped, though the timer outlives them, and after the run ends it
// stops nothing.
func TestDeadlineAnsweredInTime(t *testing.T) {
	x := newFnFixture(t)
	var prev []byte
	for id := uint64(1); id <= 3; id++ {
		x.give(&call{ctx: context.Background(), id: id, deadline: time.Now().Add(2 * stopSoon)}, prev)
		prev = []byte("reply")
	}
	o, err := x.next(prev)
	require.NoError(t, err)
	assert.Equal(t, parked, o)
	x.f.end(0, nil)
	assert.False(t, x.f.deadline.t.Stop(), "the run's end left the timer armed")
	time.Sleep(3 * stopSoon)
	assert.Zero(t, x.kicked())
}
