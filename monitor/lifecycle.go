package monitor

import (
	"context"
	"fmt"
	"runtime"
	"time"
)

// lifecycle is how a Pool drives one instance: start it, resume it with a
// call, stop it. One goroutine at a time calls it. fnVM implements it on a
// real backend; the pool's unit tests fake it.
type lifecycle interface {
	// start boots the instance and runs it until it parks for its first
	// call, or until ctx is done, which stops it. On error the instance has
	// ended and released everything.
	start(ctx context.Context) error
	// resume hands c over and runs the instance until the guest has
	// answered it and parks for the next call (true), booting it first if
	// start was not called (c's deadline and context bind that boot too).
	// c is finished either way. false: the instance
	// has ended and released everything.
	resume(c *call) bool
	// stop ends a parked instance and releases it.
	stop()
	// parkedAt is when a parked instance parked, for its idle time: the
	// run's clock has it, so the pool reads none per call.
	parkedAt() time.Time
}

// fnVM is one VM serving a function's calls, run on the goroutine of
// whoever calls it: the run state between calls stays in here.
type fnVM struct {
	host *Host
	g    *guest
	fn   *fnState
	vm   *VM
	r    *run // nil until booted
	err  error
	// bootCtx binds a boot for no call (start).
	bootCtx context.Context
}

func (h *Host) newFnVM(g *guest, fn *fnState) *fnVM {
	return &fnVM{host: h, g: g, fn: fn}
}

func (f *fnVM) start(ctx context.Context) error {
	f.bootCtx = ctx
	if f.step(nil) {
		return nil
	}
	return f.err
}

func (f *fnVM) resume(c *call) bool { return f.step(c) }

// step hands over c (nil for none) and runs the vCPU until the guest parks
// or the run ends.
func (f *fnVM) step(c *call) bool {
	if f.host.be.lockThread() {
		// For this call only: a parked vCPU may be resumed by another
		// thread next time (the kick follows the thread that entered last).
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
	}
	var unwatch func() bool
	if f.r == nil {
		vm, err := f.host.instantiate(f.g, f.fn.fresh)
		if err != nil {
			f.err = err
			if c != nil {
				c.finish(Reply{}, err)
			}
			return false
		}
		vm.fn = f.fn
		f.vm = vm
		f.fn.next = c
		f.r, err = vm.begin(context.Background(), nil, nil)
		if err != nil {
			f.end(0, err)
			return false
		}
		if c != nil {
			// The call's deadline and context bind the boot too.
			c.state.Store(callBooting)
			f.fn.watch(c, time.Until(c.deadline))
		} else if f.bootCtx != nil {
			// start's context binds the boot.
			unwatch = context.AfterFunc(f.bootCtx, f.fn.kick)
			f.fn.boot = f.bootCtx
		}
	} else {
		f.fn.next = c
		switch o, err := f.r.take(f.fn); {
		case err != nil:
			f.end(0, err)
			return false
		case o == parked:
			return true // c expired in the queue, or was cancelled
		}
	}
	f.r.parked = false
	status, err := f.r.loop(context.Background())
	if unwatch != nil && !unwatch() {
		err = stopped(f.bootCtx) // it fired: the vCPU is kicked for good
	}
	if err == nil && f.r.parked {
		if err := f.fn.reset(); err != nil {
			f.end(0, err)
			return false
		}
		f.fn.boot = nil // booted: a later end flushes for its call, if any
		return true
	}
	if err == nil && c == nil {
		// A boot for no call (Prewarm) whose guest exited gets the error
		// a call handed to it would have, not a bare exit status.
		err = errExitedBeforeRequest(status)
	}
	f.end(status, err)
	return false
}

// end finishes the run (failing the calls it leaves) and frees the VM.
func (f *fnVM) end(status int, err error) {
	if f.r != nil {
		res, _ := f.r.finish(status, err)
		if f.fn.onReply != nil {
			f.fn.onReply(f.fn, &res.Stats)
		}
	}
	if err == nil {
		err = fmt.Errorf("monitor: instance exited with status %d", status)
	}
	f.err = err
	f.vm.Close()
}

func (f *fnVM) stop() { f.end(0, nil) }

func (f *fnVM) parkedAt() time.Time { return f.r.lastExit }
