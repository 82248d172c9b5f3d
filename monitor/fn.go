package monitor

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/tendervm/tender/hypercall"
	"github.com/tendervm/tender/monitor/vcpu"
)

// Request is one function invocation.
type Request struct {
	// Body is the request payload, at most hypercall.FnRequestMax bytes.
	Body []byte
	// Deadline, when not zero, bounds the invocation; the earliest of it,
	// the context's deadline and the pool's default timeout applies.
	Deadline time.Time
}

// Reply is a function's answer.
type Reply struct {
	// ID is the request's id, the one the guest saw: unique within its
	// pool, which numbers invocations from 1.
	ID uint64
	// Status is the function's own status: 0 for success.
	Status uint64
	// Body is the reply payload, at most hypercall.FnReplyMax bytes.
	Body []byte
}

// ErrTooLarge is returned for a request body over hypercall.FnRequestMax.
var ErrTooLarge = fmt.Errorf("monitor: request body over %d bytes", hypercall.FnRequestMax)

// call is one invocation on its way through an instance.
type call struct {
	id       uint64 // numbered by the pool from 1
	req      Request
	deadline time.Time
	done     chan callResult // buffered: the instance never blocks on it
}

type callResult struct {
	reply Reply
	err   error
}

func (c *call) finish(rep Reply, err error) { c.done <- callResult{rep, err} }

// fnState is a VM's side of function serving: where its requests come from,
// the one it is working on, and when to stop.
type fnState struct {
	// first is the call the instance was started for, taken before calls.
	first *call
	// calls delivers further calls; nil for an instance that serves one.
	calls <-chan *call
	// stop retires an idle instance (pool closing); nil never fires.
	stop <-chan struct{}
	// idle retires an instance that waited this long for a request; 0: never.
	idle time.Duration
	// maxCalls ends the run after that many replies (1 for cold instances);
	// 0: no limit.
	maxCalls int

	cur     *call
	served  int
	timer   *time.Timer
	expired atomic.Bool // the current call's deadline kicked the vCPU
	kick    func()

	// waiting counts instances blocked for a request, shared by a pool.
	waiting *atomic.Int64
	// finishing counts instances that have replied and are on their way
	// back to wait for the next request, shared by a pool; finished says
	// this instance is one of them.
	finishing *atomic.Int64
	finished  bool
	// onReply sees the run's statistics after each reply, for metrics.
	onReply func(*fnState, *Stats)
	counted [vcpu.NumExitKinds]uint64 // exits already reported by onReply
	// ready, if not nil, is closed when the instance first waits for work.
	ready chan struct{}
}

// back ends the instance's trip from its reply to the next wait.
func (f *fnState) back() {
	if f.finished {
		f.finishing.Add(-1)
		f.finished = false
	}
}

func (f *fnState) markReady() {
	if f.ready != nil {
		close(f.ready)
		f.ready = nil
	}
}

// errNotFunction answers fn_next from a guest that is not run as a function.
var errNotFunction = &ProtocolError{Hypercall: "fn_next", Reason: "the guest is not being run as a function (use tender invoke or tender serve)"}

// reqIDField is the field index of FnNext.ReqID, followed by ReqLen and
// ReqDeadline.
const reqIDField = int(unsafe.Offsetof(hypercall.FnNext{}.ReqID) / 8)

// fnNext returns the guest's reply to its current call, then hands it the
// next request: one exit per warm invocation.
func (r *run) fnNext(arg uint64) (outcome, error) {
	f := r.vm.fn
	if f == nil {
		return 0, errNotFunction
	}
	a, err := r.args(hypercall.NrFnNext, arg)
	if err != nil {
		return 0, err
	}
	flags := le64(a, 0)
	if flags&^hypercall.FnHasReply != 0 {
		return 0, &ProtocolError{Hypercall: "fn_next", Reason: fmt.Sprintf("unknown flags %#x", flags)}
	}
	if f.cur == nil && flags&hypercall.FnHasReply != 0 {
		return 0, &ProtocolError{Hypercall: "fn_next", Reason: "a reply without an outstanding request"}
	}
	if f.cur != nil {
		if flags&hypercall.FnHasReply == 0 {
			return 0, &ProtocolError{Hypercall: "fn_next", Reason: fmt.Sprintf("asked for a new request without replying to request %d", f.cur.id)}
		}
		if err := r.reply(f, le64(a, 1), le64(a, 2), le64(a, 3)); err != nil {
			return 0, err
		}
		if f.maxCalls > 0 && f.served >= f.maxCalls {
			return exited, nil
		}
	}
	reqBuf, reqCap := le64(a, 4), le64(a, 5)
	if reqCap < hypercall.FnRequestMax {
		return 0, &ProtocolError{Hypercall: "fn_next", Reason: fmt.Sprintf("request buffer of %d bytes, want at least %d", reqCap, hypercall.FnRequestMax)}
	}
	buf, err := r.vm.mem.Slice(reqBuf, hypercall.FnRequestMax)
	if err != nil {
		return 0, &ProtocolError{Hypercall: "fn_next", Reason: "request buffer: " + err.Error()}
	}
	var c *call
	for {
		var ok bool
		if c, ok = f.wait(); !ok {
			return exited, nil
		}
		if time.Until(c.deadline) > 0 {
			break
		}
		// It expired while queued: fail it here rather than kill the guest.
		c.finish(Reply{}, &StoppedError{Cause: context.DeadlineExceeded})
	}
	copy(buf, c.req.Body)
	putFields(a, reqIDField, c.id, uint64(len(c.req.Body)), uint64(c.deadline.UnixNano()))
	f.cur = c
	f.arm(time.Until(c.deadline))
	return resume, nil
}

// wait blocks until the next call, or reports false when the instance should
// retire (idle too long, or its pool is closing).
func (f *fnState) wait() (*call, bool) {
	if c := f.first; c != nil {
		f.first = nil
		return c, true
	}
	select { // a call already queued is taken without touching timers
	case c := <-f.calls:
		f.back()
		return c, true
	default:
	}
	var idle <-chan time.Time
	if f.idle > 0 {
		t := time.NewTimer(f.idle)
		defer t.Stop()
		idle = t.C
	}
	if f.waiting != nil {
		f.waiting.Add(1)
		defer f.waiting.Add(-1)
	}
	f.back()
	f.markReady()
	select {
	case c := <-f.calls:
		return c, true
	case <-idle:
	case <-f.stop:
	}
	return nil, false
}

// arm stops the guest when the current call's deadline passes.
func (f *fnState) arm(d time.Duration) {
	expire := func() {
		f.expired.Store(true)
		f.kick()
	}
	if f.timer == nil {
		f.timer = time.AfterFunc(d, expire)
		return
	}
	f.timer.Reset(d)
}

// reply completes the current call with the guest's reply.
func (r *run) reply(f *fnState, status, data, n uint64) error {
	if !f.timer.Stop() || f.expired.Load() {
		// The deadline fired as the guest replied: the vCPU is being
		// stopped; the call fails as late.
		return &StoppedError{Cause: context.DeadlineExceeded}
	}
	if n > hypercall.FnReplyMax {
		return &ProtocolError{Hypercall: "fn_next", Reason: fmt.Sprintf("reply of %d bytes exceeds %d", n, hypercall.FnReplyMax)}
	}
	body, err := r.vm.mem.Slice(data, n)
	if err != nil {
		return &ProtocolError{Hypercall: "fn_next", Reason: "reply body: " + err.Error()}
	}
	if f.finishing != nil {
		f.finishing.Add(1)
		f.finished = true
	}
	f.cur.finish(Reply{ID: f.cur.id, Status: status, Body: append([]byte(nil), body...)}, nil)
	f.cur = nil
	f.served++
	if f.onReply != nil {
		f.onReply(f, &r.stats)
	}
	return nil
}

// end fails the call in flight when the run stops: the guest faulted, broke
// the protocol, exited, or overran the deadline.
func (f *fnState) end(status int, err error) {
	f.back()
	if f.timer != nil {
		f.timer.Stop()
	}
	if f.cur == nil {
		return
	}
	if err == nil {
		err = &ProtocolError{Hypercall: "fn_next", Reason: fmt.Sprintf("guest exited with status %d during request %d", status, f.cur.id)}
	}
	f.cur.finish(Reply{}, err)
	f.cur = nil
}

// errDeadline reports whether the run was stopped by a call's deadline.
func (f *fnState) errDeadline() error {
	if f != nil && f.expired.Load() {
		return &StoppedError{Cause: context.DeadlineExceeded}
	}
	return nil
}
