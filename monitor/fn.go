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
	ctx      context.Context
	id       uint64 // numbered by the pool from 1
	req      Request
	deadline time.Time

	// Set once, by the instance, before it hands control back.
	finished bool
	reply    Reply
	err      error
}

func (c *call) finish(rep Reply, err error) {
	c.reply, c.err, c.finished = rep, err, true
}

// fnState is a VM's side of function serving: the call handed over, the one
// the guest is working on, and its deadline.
type fnState struct {
	// next is the call handed over by the pool and not yet taken by the
	// guest.
	next *call
	// maxCalls ends the run after that many replies (1 for cold instances);
	// 0: no limit.
	maxCalls int

	cur    *call
	served int
	// reqBuf and args are the request buffer and argument structure of the
	// guest's pending fn_next, kept while it is parked.
	reqBuf, args []byte

	timer     *time.Timer
	expired   atomic.Bool // the current call's deadline kicked the vCPU
	cancelled atomic.Bool // the current call's context kicked the vCPU
	stopCtx   func() bool // unhooks the current call's context
	kick      func()

	// onReply sees the run's statistics after each reply, for metrics.
	onReply func(*fnState, *Stats)
	counted [vcpu.NumExitKinds]uint64 // exits already reported by onReply
}

// errNotFunction answers fn_next from a guest that is not run as a function.
var errNotFunction = &ProtocolError{Hypercall: "fn_next", Reason: "the guest is not being run as a function (use tender invoke or tender serve)"}

// reqIDField is the field index of FnNext.ReqID, followed by ReqLen and
// ReqDeadline.
const reqIDField = int(unsafe.Offsetof(hypercall.FnNext{}.ReqID) / 8)

// fnNext returns the guest's reply to its current call, then hands it the
// next request: one exit per warm invocation. With no request handed over
// yet, the run parks until the pool brings one.
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
		if r.con != nil {
			// The call's output goes out before its reply, within its
			// deadline: a kick ends the flush and reply fails the call.
			r.con.flush()
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
	f.reqBuf, f.args = buf, a
	return f.take(), nil
}

// take gives the parked guest the call handed over, if any is left once
// those already expired or cancelled are failed.
func (f *fnState) take() outcome {
	c := f.next
	f.next = nil
	if c == nil {
		return parked
	}
	if time.Until(c.deadline) <= 0 {
		// It expired while queued: fail it here rather than kill the guest.
		c.finish(Reply{}, &StoppedError{Cause: context.DeadlineExceeded})
		return parked
	}
	if err := c.ctx.Err(); err != nil {
		c.finish(Reply{}, &StoppedError{Cause: err})
		return parked
	}
	copy(f.reqBuf, c.req.Body)
	putFields(f.args, reqIDField, c.id, uint64(len(c.req.Body)), uint64(c.deadline.UnixNano()))
	f.cur = c
	f.arm(time.Until(c.deadline))
	if c.ctx.Done() != nil {
		f.stopCtx = context.AfterFunc(c.ctx, func() {
			f.cancelled.Store(true)
			f.kick()
		})
	}
	return resume
}

// arm stops the guest when the current call's deadline passes.
func (f *fnState) arm(d time.Duration) {
	if f.timer == nil {
		f.timer = time.AfterFunc(d, func() {
			f.expired.Store(true)
			f.kick()
		})
		return
	}
	f.timer.Reset(d)
}

// disarm unhooks the current call's deadline and context. It reports false
// when either has already fired: the vCPU is being stopped.
func (f *fnState) disarm() bool {
	ok := true
	if f.timer != nil && !f.timer.Stop() {
		ok = false
	}
	if f.stopCtx != nil {
		if !f.stopCtx() {
			ok = false
		}
		f.stopCtx = nil
	}
	return ok && !f.expired.Load() && !f.cancelled.Load()
}

// reply completes the current call with the guest's reply.
func (r *run) reply(f *fnState, status, data, n uint64) error {
	if !f.disarm() {
		// The deadline or the caller's context fired as the guest
		// replied: the call fails as late.
		return f.errStopped()
	}
	if n > hypercall.FnReplyMax {
		return &ProtocolError{Hypercall: "fn_next", Reason: fmt.Sprintf("reply of %d bytes exceeds %d", n, hypercall.FnReplyMax)}
	}
	body, err := r.vm.mem.Slice(data, n)
	if err != nil {
		return &ProtocolError{Hypercall: "fn_next", Reason: "reply body: " + err.Error()}
	}
	f.cur.finish(Reply{ID: f.cur.id, Status: status, Body: append([]byte(nil), body...)}, nil)
	f.cur = nil
	f.served++
	if f.onReply != nil {
		f.onReply(f, &r.stats)
	}
	return nil
}

// end fails the calls left when the run stops: the guest faulted, broke the
// protocol, exited, or overran the deadline.
func (f *fnState) end(status int, err error) {
	f.disarm()
	if c := f.next; c != nil { // it stopped before taking the call handed over
		f.next = nil
		cerr := err
		if cerr == nil {
			cerr = &ProtocolError{Hypercall: "fn_next", Reason: fmt.Sprintf("guest exited with status %d before taking a request", status)}
		}
		c.finish(Reply{}, cerr)
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

// errStopped reports why the current call's vCPU was kicked: its deadline
// or its caller's context; nil if neither.
func (f *fnState) errStopped() error {
	switch {
	case f == nil:
		return nil
	case f.expired.Load():
		return &StoppedError{Cause: context.DeadlineExceeded}
	case f.cancelled.Load():
		cause := error(context.Canceled)
		if f.cur != nil && f.cur.ctx.Err() != nil {
			cause = f.cur.ctx.Err()
		}
		return &StoppedError{Cause: cause}
	}
	return nil
}
