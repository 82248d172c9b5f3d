package monitor

import (
	"context"
	"slices"
	"time"
)

// acquire returns an instance for one invocation: the most recently parked
// one, a new one if the pool may grow, or the first to come free while the
// queue has room.
func (p *Pool) acquire(ctx context.Context, deadline time.Time) (*instance, error) {
	p.mu.Lock()
	if p.cfg.Mode != Cold {
		if n := len(p.idle); n > 0 {
			inst := p.idle[n-1]
			p.idle[n-1] = nil
			p.idle = p.idle[:n-1]
			p.mu.Unlock()
			return inst, nil
		}
	}
	if p.live < p.cfg.MaxInstances {
		p.live++
		p.mu.Unlock()
		return p.newInstance(), nil
	}
	if p.cfg.QueueLimit < 0 || len(p.waiters) >= p.cfg.QueueLimit {
		p.mu.Unlock()
		return nil, ErrSaturated
	}
	w := make(chan *instance, 1)
	p.waiters = append(p.waiters, w)
	p.mu.Unlock()

	expire := time.NewTimer(time.Until(deadline))
	defer expire.Stop()
	var err *StoppedError
	select {
	case inst := <-w:
		if inst == nil { // a free slot
			inst = p.newInstance()
		}
		return inst, nil
	case <-ctx.Done():
		err = stopped(ctx)
	case <-expire.C:
		err = &StoppedError{Cause: context.DeadlineExceeded}
	}
	p.mu.Lock()
	i := slices.Index(p.waiters, w)
	if i >= 0 {
		p.waiters = slices.Delete(p.waiters, i, i+1)
	}
	p.mu.Unlock()
	if i < 0 { // handed something just now: pass it on
		if inst := <-w; inst != nil {
			p.release(inst)
		} else {
			p.discard()
		}
	}
	return nil, err
}

// release puts a parked instance back: to the first queued caller, or on
// the idle stack. A cold instance serves one call; one still parked had its
// call fail before taking it (deadline or context), and is retired.
func (p *Pool) release(inst *instance) {
	if p.cfg.Mode == Cold {
		inst.retire()
		p.discard()
		return
	}
	p.mu.Lock()
	if p.handOver(inst) {
		return
	}
	inst.idleSince = inst.vm.parkedAt()
	p.idle = append(p.idle, inst)
	p.mu.Unlock()
}

// discard frees the slot of an instance that has ended: the first queued
// caller boots a new one in its place.
func (p *Pool) discard() {
	p.mu.Lock()
	if p.handOver(nil) {
		return
	}
	p.live--
	p.mu.Unlock()
}

// handOver gives inst (nil: a free slot) to the first queued caller, if
// any, and then unlocks p.mu, which the caller holds; false: nobody waits,
// and p.mu stays locked.
func (p *Pool) handOver(inst *instance) bool {
	if len(p.waiters) == 0 {
		return false
	}
	w := p.waiters[0]
	p.waiters = slices.Delete(p.waiters, 0, 1)
	p.mu.Unlock()
	w <- inst
	return true
}

// retireIdle retires warm instances that have been idle for IdleTimeout,
// until the pool closes.
func (p *Pool) retireIdle() {
	defer p.janitor.Done()
	t := time.NewTicker(max(p.cfg.IdleTimeout/4, time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
		}
		old := time.Now().Add(-p.cfg.IdleTimeout)
		var gone []*instance
		p.mu.Lock()
		// The stack's bottom waited longest.
		n := 0
		for n < len(p.idle) && !p.idle[n].idleSince.After(old) {
			n++
		}
		gone = slices.Clone(p.idle[:n])
		p.idle = slices.Delete(p.idle, 0, n)
		p.mu.Unlock()
		// Each slot is freed only once its instance is torn down, as on
		// the cold path: freed before, it let callers boot instances
		// beyond MaxInstances meanwhile.
		for _, inst := range gone {
			inst.retire()
			p.discard()
		}
	}
}

// newInstance returns an instance of the pool's function, not yet booted;
// its slot is already counted in live.
func (p *Pool) newInstance() *instance {
	p.started.Add(1)
	f := &fnState{onReply: p.countExits}
	switch p.cfg.Mode {
	case Cold:
		f.maxCalls = 1
	case Fresh:
		f.fresh = &freshState{onReset: p.countReset}
	}
	return &instance{vm: p.spawn(f)}
}

// instance is one VM serving a pool's function, parked in fn_next between
// invocations. One goroutine at a time owns it: the pool's idle stack, or
// the caller it hands it to.
type instance struct {
	vm        lifecycle
	idleSince time.Time
}

// retire stops a parked instance.
func (inst *instance) retire() { inst.vm.stop() }
