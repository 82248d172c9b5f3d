package monitor

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tendervm/tender/hypercall"
	"github.com/tendervm/tender/monitor/guestmem"
	"github.com/tendervm/tender/monitor/vcpu"
)

// These tests drive fn_next by hand, with its argument structure written
// into guest memory and no guest running, to put a reply and a stop (the
// call's deadline or its caller's cancellation) in a chosen order.

const reqAddr = 0x100000 // the request buffer, FnRequestMax bytes

type fnFixture struct {
	t     *testing.T
	r     *run
	f     *fnState
	mem   *guestmem.Memory
	kicks chan struct{}
}

func newFnFixture(t *testing.T) *fnFixture {
	t.Helper()
	mem, err := guestmem.New(netMem)
	require.NoError(t, err)
	t.Cleanup(func() { mem.Close() })
	require.NoError(t, mem.SetLayout([]vcpu.Region{{Addr: 1 << 20, Size: netMem - 1<<20, Perm: vcpu.Read | vcpu.Write}}))
	x := &fnFixture{t: t, mem: mem, kicks: make(chan struct{}, 10)}
	x.f = &fnState{kick: func() { x.kicks <- struct{}{} }}
	x.r = &run{vm: &VM{mem: mem, fn: x.f, table: coreTable()}}
	return x
}

// next makes the guest's fn_next: with a reply when reply is not nil.
func (x *fnFixture) next(reply []byte) (outcome, error) {
	return x.nextCap(reply, hypercall.FnRequestMax)
}

// nextCap is next with a request buffer of reqCap bytes at reqAddr.
func (x *fnFixture) nextCap(reply []byte, reqCap uint64) (outcome, error) {
	var flags uint64
	if reply != nil {
		flags = hypercall.FnHasReply
		require.NoError(x.t, x.mem.Write(bufAddr, reply))
	}
	for i, v := range []uint64{flags, 0, bufAddr, uint64(len(reply)), reqAddr, reqCap} {
		require.NoError(x.t, x.mem.PutUint64(argAddr+uint64(8*i), v))
	}
	return x.r.fnNext(argAddr)
}

// give hands c over and has the guest take it with its reply to the call
// before, if any.
func (x *fnFixture) give(c *call, reply []byte) {
	x.t.Helper()
	x.f.next = c
	o, err := x.next(reply)
	require.NoError(x.t, err)
	require.Equal(x.t, resume, o)
	require.Same(x.t, c, x.f.cur)
}

func (x *fnFixture) kicked() int { return len(x.kicks) }

// stopKind is a way to stop a call: its deadline or its caller.
type stopKind struct {
	name  string
	cause error
	// reason is the StoppedError's Reason: the context's cause, if the
	// caller gave one.
	reason error
	// call returns a call with id that this kind stops soon.
	call func(id uint64) *call
}

// stopSoon is how soon a stop kind stops its call: long enough that the
// fixture has handed the call over before, even on a loaded or emulated
// machine (with 1 ms, a stall before the hand-over found the call already
// expired), since every test waits for the stop itself.
const stopSoon = 50 * time.Millisecond

func stopKinds(t *testing.T) []stopKind {
	return []stopKind{
		{"deadline", context.DeadlineExceeded, nil, func(id uint64) *call {
			return &call{ctx: context.Background(), id: id, deadline: time.Now().Add(stopSoon)}
		}},
		{"cancel", context.Canceled, nil, func(id uint64) *call {
			ctx, cancel := context.WithCancel(context.Background())
			t.Cleanup(cancel)
			time.AfterFunc(stopSoon, cancel)
			return &call{ctx: ctx, id: id, deadline: time.Now().Add(time.Minute)}
		}},
		{"cancel-cause", context.Canceled, errSignalled, func(id uint64) *call {
			ctx, cancel := context.WithCancelCause(context.Background())
			t.Cleanup(func() { cancel(nil) })
			time.AfterFunc(stopSoon, func() { cancel(errSignalled) })
			return &call{ctx: ctx, id: id, deadline: time.Now().Add(time.Minute)}
		}},
	}
}

// errSignalled is the cause a caller gives when it cancels a call, as
// tender's commands do on SIGINT.
var errSignalled = errors.New("interrupted by SIGINT")

// calm returns a call nothing stops during a test.
func calm(id uint64) *call {
	return &call{ctx: context.Background(), id: id, deadline: time.Now().Add(time.Minute)}
}

// TestReplyBeatsFiredStop holds a stop that has fired but not yet claimed
// its call while the guest replies: the reply wins, nothing kicks the vCPU,
// and the stop, let go once the next call is under way, leaves that call
// alone.
func TestReplyBeatsFiredStop(t *testing.T) {
	for _, k := range stopKinds(t) {
		t.Run(k.name, func(t *testing.T) {
			x := newFnFixture(t)
			held, release, over := make(chan struct{}, 1), make(chan struct{}), make(chan struct{}, 1)
			x.f.stopHook = func() func() {
				held <- struct{}{}
				<-release
				return func() { over <- struct{}{} }
			}
			c1 := k.call(1)
			x.give(c1, nil)
			<-held // the stop has started

			c2 := calm(2)
			x.give(c2, []byte("one"))
			require.True(t, c1.finished)
			require.NoError(t, c1.err)
			assert.Equal(t, Reply{ID: 1, Body: []byte("one")}, c1.reply)

			close(release)
			<-over
			assert.Zero(t, x.kicked(), "a stop that lost kicked the vCPU")
			assert.NoError(t, x.f.errStopped())

			o, err := x.next([]byte("two"))
			require.NoError(t, err)
			assert.Equal(t, parked, o)
			require.True(t, c2.finished)
			require.NoError(t, c2.err)
			assert.Equal(t, Reply{ID: 2, Body: []byte("two")}, c2.reply)
			x.f.end(0, nil)
			assert.Zero(t, x.kicked())
		})
	}
}

// TestStopBeatsReply lets a stop claim its call before the guest replies:
// the reply is refused with the stop's error, the vCPU is kicked once, and
// the run's end fails the call with that error whatever else ended it.
func TestStopBeatsReply(t *testing.T) {
	for _, k := range stopKinds(t) {
		t.Run(k.name, func(t *testing.T) {
			x := newFnFixture(t)
			c := k.call(1)
			x.give(c, nil)
			<-x.kicks
			se, ok := errors.AsType[*StoppedError](x.f.errStopped())
			require.True(t, ok)
			assert.ErrorIs(t, se.Cause, k.cause)

			_, err := x.next([]byte("late"))
			se, ok = errors.AsType[*StoppedError](err)
			require.True(t, ok, "%v", err)
			assert.ErrorIs(t, se.Cause, k.cause)

			x.f.end(0, &FaultError{Vector: 14})
			require.True(t, c.finished)
			se, ok = errors.AsType[*StoppedError](c.err)
			require.True(t, ok, "%v", c.err)
			assert.ErrorIs(t, se.Cause, k.cause)
			assert.Equal(t, k.reason, se.Reason, "the caller's cause is reported")
			assert.Zero(t, x.kicked(), "kicked more than once")
		})
	}
}

// TestColdReplyBeatsFiredStop is TestReplyBeatsFiredStop for a cold
// instance, whose run ends with its one reply: the call is answered, not
// failed as if the guest had exited during it.
func TestColdReplyBeatsFiredStop(t *testing.T) {
	x := newFnFixture(t)
	x.f.maxCalls = 1
	held, release, over := make(chan struct{}, 1), make(chan struct{}), make(chan struct{}, 1)
	x.f.stopHook = func() func() {
		held <- struct{}{}
		<-release
		return func() { over <- struct{}{} }
	}
	c := stopKinds(t)[0].call(1)
	x.give(c, nil)
	<-held
	o, err := x.next([]byte("one"))
	require.NoError(t, err)
	assert.Equal(t, exited, o)
	x.f.end(0, nil)
	close(release)
	<-over
	assert.Zero(t, x.kicked())
	require.True(t, c.finished)
	require.NoError(t, c.err)
	assert.Equal(t, Reply{ID: 1, Body: []byte("one")}, c.reply)
}

// TestFnNextRequestCap: fn_next checks that the guest may write all req_cap
// bytes of its request buffer (docs/abi.md), not only the FnRequestMax the
// monitor writes into: a buffer that runs into read-only pages or off guest
// memory is a protocol error, whatever its first MiB.
func TestFnNextRequestCap(t *testing.T) {
	const mib = 1 << 20
	cases := []struct {
		name   string
		reqCap uint64
		err    string // "" when served
	}{
		{"the minimum", hypercall.FnRequestMax, ""},
		{"all writable", 2 * mib, ""},
		{"into read-only", 2*mib + 1, "needs -w-, but the guest's page at 0x300000 is r--"},
		{"to the end of memory", netMem - reqAddr, "needs -w-"},
		{"off the end of memory", netMem - reqAddr + 1, "request buffer: "},
		{"wrapping", ^uint64(0), "request buffer: "},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			x := newFnFixture(t)
			// Writable up to 3 MiB (the request buffer's first two and
			// the argument structure), read-only after.
			require.NoError(t, x.mem.SetLayout([]vcpu.Region{
				{Addr: 1 << 20, Size: 2 * mib, Perm: vcpu.Read | vcpu.Write},
				{Addr: 3 * mib, Size: netMem - 3*mib, Perm: vcpu.Read},
			}))
			x.f.next = calm(1)
			o, err := x.nextCap(nil, c.reqCap)
			if c.err == "" {
				require.NoError(t, err)
				assert.Equal(t, resume, o)
				assert.Len(t, x.f.reqBuf, hypercall.FnRequestMax, "the monitor writes into the first FnRequestMax bytes")
				return
			}
			pe, ok := errors.AsType[*ProtocolError](err)
			require.True(t, ok, "want a ProtocolError, got %v", err)
			assert.Equal(t, "fn_next", pe.Hypercall)
			assert.Contains(t, pe.Reason, "request buffer: ")
			assert.Contains(t, pe.Reason, c.err)
			assert.Nil(t, x.f.cur, "no call was handed over")
		})
	}
}

// TestFnNextDeadlineCapped: a deadline past what int64 nanoseconds since the
// Unix epoch can hold (year 2262; a huge -timeout gets there) reaches the
// guest as the largest one that can, not as the undefined value
// time.Time.UnixNano gives for it.
func TestFnNextDeadlineCapped(t *testing.T) {
	now := time.Now()
	for _, c := range []struct {
		name     string
		deadline time.Time
		want     uint64
	}{
		{"a minute", now.Add(time.Minute), uint64(now.Add(time.Minute).UnixNano())},
		{"the last", time.Unix(0, math.MaxInt64), math.MaxInt64},
		{"past the last", time.Unix(0, math.MaxInt64).Add(time.Nanosecond), math.MaxInt64},
		{"the longest timeout", now.Add(math.MaxInt64), math.MaxInt64},
	} {
		t.Run(c.name, func(t *testing.T) {
			x := newFnFixture(t)
			x.give(&call{ctx: context.Background(), id: 1, deadline: c.deadline}, nil)
			got, err := x.mem.Uint64(argAddr + 64) // req_deadline
			require.NoError(t, err)
			assert.Equal(t, c.want, got)
			x.f.end(0, nil)
		})
	}
}
