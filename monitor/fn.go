package monitor

import (
	"context"
	"fmt"
	"math"
	"sync/atomic"
	"time"

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

	// state decides, once handed to the guest, who ends the call: the
	// first side to move it from callArmed wins (see fnState.stop and
	// fnState.settle), so a reply and a deadline never both count.
	state atomic.Uint32

	// Set once, by the instance, before it hands control back.
	finished bool
	reply    Reply
	err      error
	// held says a deadline or context function that may still run holds
	// the call: the pool does not reuse it (Pool.calls).
	held bool
}

// Call states.
const (
	callArmed     uint32 = iota // with the guest, its outcome still open
	callSettled                 // the vCPU's side decided: the reply, or how the run ended
	callExpired                 // its deadline passed first
	callCancelled               // its caller's context was done first
	// callBooting: handed to an instance that is still booting, watched
	// (fnState.watch) until the guest takes it, which arms it.
	callBooting
)

func (c *call) finish(rep Reply, err error) {
	c.reply, c.err, c.finished = rep, err, true
}

// stopped is the error of a call its deadline or caller stopped; nil if
// neither did.
func (c *call) stopped() error {
	switch c.state.Load() {
	case callExpired:
		return &StoppedError{Cause: context.DeadlineExceeded}
	case callCancelled:
		return stopped(c.ctx) // with the context's cause (SIGINT, ...)
	}
	return nil
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
	// fresh, for a Fresh instance, holds its snapshot; nil otherwise.
	fresh *freshState

	cur    *call
	served int
	// boot is the context of a boot for no call (Pool.Prewarm) until the
	// guest parks: it bounds the flush of the console if the boot fails.
	boot context.Context
	// reqBuf and args are the request buffer and argument structure of the
	// guest's pending fn_next, kept while it is parked; argv is what args
	// held when the guest made that call.
	reqBuf, args []byte
	argv         hypercall.FnNext

	// deadline stops the current call at its deadline.
	deadline deadline
	stopCtx  func() bool // unhooks the current call's context
	kick     func()
	// stopHook, when set (by tests only), runs as a deadline or a context
	// starts to stop a call, before it claims it; the function it returns
	// runs when the stop is over. It lets a test hold a stop in the window
	// where it has fired but not yet claimed its call.
	stopHook func() func()

	// onReply sees the run's statistics after each reply, for metrics.
	onReply func(*fnState, *Stats)
	counted [vcpu.NumExitKinds]uint64 // exits already reported by onReply
}

// errNotFunction answers fn_next from a guest that is not run as a function.
func errNotFunction() error {
	return &ProtocolError{Hypercall: "fn_next", Reason: "the guest is not being run as a function (use tender invoke or tender serve)"}
}

// fnNext returns the guest's reply to its current call, then hands it the
// next request: one exit per warm invocation. With no request handed over
// yet, the run parks until the pool brings one.
func (r *run) fnNext(arg uint64) (outcome, error) {
	f := r.vm.fn
	if f == nil {
		return 0, errNotFunction()
	}
	a, err := readArgs(r, hypercall.NrFnNext, arg, &f.argv)
	if err != nil {
		return 0, err
	}
	flags := f.argv.Flags
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
		if err := r.reply(f, f.argv.ReplyStatus, f.argv.ReplyData, f.argv.ReplyLen); err != nil {
			return 0, err
		}
		if f.maxCalls > 0 && f.served >= f.maxCalls {
			return exited, nil
		}
	}
	reqBuf, reqCap := f.argv.ReqBuf, f.argv.ReqCap
	if reqCap < hypercall.FnRequestMax {
		return 0, &ProtocolError{Hypercall: "fn_next", Reason: fmt.Sprintf("request buffer of %d bytes, want at least %d", reqCap, hypercall.FnRequestMax)}
	}
	// The guest must be able to write all req_cap bytes it names
	// (docs/abi.md), not only the FnRequestMax the monitor fills: a cap
	// running into read-only pages or off its memory breaks the protocol.
	buf, err := r.buffer(hypercall.NrFnNext, "request buffer", reqBuf, reqCap, vcpu.Write)
	if err != nil {
		return 0, err
	}
	f.reqBuf, f.args = buf[:hypercall.FnRequestMax], a
	if f.fresh != nil && f.fresh.restore == nil {
		if err := r.snapshot(f, arg); err != nil {
			return 0, err
		}
	}
	return r.take(f)
}

// take is f.take for this run: a call taken starts the console limit's
// count anew (Config.ConsoleLimit counts per call).
func (r *run) take(f *fnState) (outcome, error) {
	out, err := f.take()
	if out == resume {
		r.consoleFrom = r.stats.ConsoleBytes
	}
	return out, err
}

// take gives the parked guest the call handed over, if any is left once
// those already expired or cancelled are failed.
func (f *fnState) take() (outcome, error) {
	c := f.next
	f.next = nil
	if c == nil {
		return parked, nil
	}
	watched := c.state.Load() != callArmed
	if watched && !c.state.CompareAndSwap(callBooting, callArmed) {
		// Its deadline or caller stopped it while the instance booted,
		// and kicked the vCPU: the run ends and the call with it.
		f.cur = c
		return 0, c.stopped()
	}
	// One clock reading also arms the deadline, which then fires late by
	// at most the copy of the request below.
	left := time.Until(c.deadline)
	if left <= 0 || c.ctx.Err() != nil {
		// It expired or was cancelled while queued: fail it here rather
		// than kill the guest.
		err := error(&StoppedError{Cause: context.DeadlineExceeded})
		if c.ctx.Err() != nil && left > 0 {
			err = stopped(c.ctx)
		}
		if watched && !f.settle(c) {
			f.cur = c // its watch fired meanwhile and kicked the vCPU
			return 0, c.stopped()
		}
		c.finish(Reply{}, err)
		return parked, nil
	}
	copy(f.reqBuf, c.req.Body)
	f.argv.ReqID, f.argv.ReqLen, f.argv.ReqDeadline = c.id, uint64(len(c.req.Body)), deadlineNs(c.deadline)
	writeArgs(f.args, &f.argv)
	if s := f.fresh; s != nil && s.mem != nil {
		// What the monitor writes does not show in the guest process's
		// page tables: the reset puts it back (guestmem.Keep).
		s.mem.Note(f.reqBuf[:len(c.req.Body)])
		s.mem.Note(f.args)
	}
	f.cur = c
	if !watched {
		f.watch(c, left)
	}
	return resume, nil
}

// deadlineNs is t as req_deadline, capped at the latest time int64
// nanoseconds since the Unix epoch hold (in 2262): time.Time.UnixNano is
// undefined past it, where a huge pool timeout puts a call's deadline.
func deadlineNs(t time.Time) uint64 {
	if t.After(time.Unix(0, math.MaxInt64)) {
		return math.MaxInt64
	}
	return uint64(t.UnixNano())
}

// watch stops c at its deadline or when its caller's context is done, by
// kicking the vCPU: from the moment the guest takes it, or, for a call handed
// to an instance that boots for it (state callBooting), from then on, so a
// guest that never reaches fn_next cannot hold its caller. left is the time
// to c's deadline, read by the caller.
func (f *fnState) watch(c *call, left time.Duration) {
	f.arm(c, left)
	if c.ctx.Done() != nil {
		f.stopCtx = context.AfterFunc(c.ctx, func() { f.stop(c, callCancelled) })
	}
}

// arm stops the guest when c's deadline, left from now, passes.
func (f *fnState) arm(c *call, left time.Duration) { f.deadline.arm(f, c, left) }

// stop ends c for its deadline or its caller (why), unless the guest's side
// settled it first. Only the winner kicks the vCPU, so a kick always has a
// reason in the call it stops: a backend's kick is final (the KVM vCPU
// stays kicked, the guest process is killed), and a kick for a call already
// answered would otherwise kill a healthy instance or fail its next call.
func (f *fnState) stop(c *call, why uint32) {
	if f.stopHook != nil {
		defer f.stopHook()()
	}
	if c.state.CompareAndSwap(callArmed, why) || c.state.CompareAndSwap(callBooting, why) {
		f.kick()
	}
}

// settle claims c for the vCPU's side and unhooks its deadline and context.
// It reports false when the deadline or the context claimed c first: the
// vCPU is being kicked, and c fails with c.stopped().
func (f *fnState) settle(c *call) bool {
	won := c.state.CompareAndSwap(callArmed, callSettled) || c.state.CompareAndSwap(callBooting, callSettled)
	if !f.deadline.release(c) {
		c.held = true // the deadline's stop may still be looking at c
	}
	if f.stopCtx != nil {
		if !f.stopCtx() {
			c.held = true // its function has started
		}
		f.stopCtx = nil
	}
	return won
}

// reply completes the current call with the guest's reply, unless its
// deadline or its caller stopped it first.
func (r *run) reply(f *fnState, status, data, n uint64) error {
	if n > hypercall.FnReplyMax {
		return &ProtocolError{Hypercall: "fn_next", Reason: fmt.Sprintf("reply of %d bytes exceeds %d", n, hypercall.FnReplyMax)}
	}
	body, err := r.buffer(hypercall.NrFnNext, "reply body", data, n, vcpu.Read)
	if err != nil {
		return err
	}
	c := f.cur
	if !f.settle(c) {
		// Too late: the call fails as stopped, and the kicked vCPU ends
		// the run.
		return c.stopped()
	}
	c.finish(Reply{ID: c.id, Status: status, Body: append([]byte(nil), body...)}, nil)
	f.cur = nil
	f.served++
	if f.onReply != nil {
		f.onReply(f, &r.stats)
	}
	return nil
}

// end fails the calls left when the run stops: the guest faulted, broke the
// protocol, exited, or overran the deadline. A current call that its
// deadline or its caller had already claimed fails as stopped, whatever else
// ended the run.
func (f *fnState) end(status int, err error) {
	defer f.deadline.disarm()
	if c := f.next; c != nil { // it stopped before taking the call handed over
		f.next = nil
		cerr := err
		if c.state.Load() != callArmed && !f.settle(c) {
			cerr = c.stopped() // its deadline or caller stopped the boot
		} else if cerr == nil {
			cerr = errExitedBeforeRequest(status)
		}
		c.finish(Reply{}, cerr)
	}
	c := f.cur
	if c == nil {
		return
	}
	f.cur = nil
	switch {
	case !f.settle(c):
		err = c.stopped()
	case err == nil:
		err = &ProtocolError{Hypercall: "fn_next", Reason: fmt.Sprintf("guest exited with status %d during request %d", status, c.id)}
	}
	c.finish(Reply{}, err)
}

// errExitedBeforeRequest is the error of a guest that exited with status
// before its first fn_next.
func errExitedBeforeRequest(status int) error {
	return &ProtocolError{Hypercall: "fn_next", Reason: fmt.Sprintf("guest exited with status %d before taking a request (a function loops on fn_next, as tender_fn_serve does; run other guests with tender run)", status)}
}

// errStopped reports why the vCPU was kicked: the current call's deadline or
// its caller's context; nil if neither.
func (f *fnState) errStopped() error {
	switch {
	case f == nil:
		return nil
	case f.cur != nil:
		return f.cur.stopped()
	case f.next != nil:
		return f.next.stopped() // it stopped the boot
	}
	return nil
}
