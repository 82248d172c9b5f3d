package monitor

import (
	"sync"
	"time"
)

// deadline kicks an instance's vCPU when the current call's deadline passes.
// One timer serves all of the instance's calls and is only ever moved
// earlier: a call whose deadline is no earlier than the timer's leaves the
// timer as it is, and the timer, firing early, re-arms itself for the call
// current then. A timer stopped after each call and started for the next
// made Go's runtime wake an idle thread on every call (a timer that becomes
// the first of an empty heap does), and on a host with few CPUs that thread
// preempted the running vCPU (docs/performance.md, "a slow phase of KVM
// fresh instances").
type deadline struct {
	mu   sync.Mutex
	t    *time.Timer
	when time.Time // when t fires; zero when it is not armed
	c    *call     // the call watched, if any
	// claimed is a call the timer took at its deadline, whose stop may
	// still be under way.
	claimed *call
}

// arm watches c, whose deadline is left from now, for f.
func (d *deadline) arm(f *fnState, c *call, left time.Duration) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.c, d.claimed = c, nil
	switch {
	case d.t == nil:
		d.t = time.AfterFunc(left, func() { d.fire(f) })
	case d.when.IsZero() || c.deadline.Before(d.when):
		d.t.Reset(left)
	default:
		return // it fires first and re-arms for c then
	}
	d.when = c.deadline
}

// fire runs when the timer does: it stops the call watched if its deadline
// has passed, and otherwise waits for that deadline.
func (d *deadline) fire(f *fnState) {
	d.mu.Lock()
	c := d.c
	if c == nil {
		d.when = time.Time{}
		d.mu.Unlock()
		return
	}
	if left := time.Until(c.deadline); left > 0 {
		d.when = c.deadline
		d.t.Reset(left)
		d.mu.Unlock()
		return
	}
	d.c, d.claimed, d.when = nil, c, time.Time{}
	d.mu.Unlock()
	f.stop(c, callExpired)
}

// release stops watching c. It reports false when the timer took c at its
// deadline, so that its stop may still be looking at c.
func (d *deadline) release(c *call) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.claimed == c {
		d.claimed = nil
		return false
	}
	if d.c == c {
		d.c = nil
	}
	return true
}

// disarm stops the timer for good: the instance takes no more calls.
func (d *deadline) disarm() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.c = nil
	if d.t != nil {
		d.t.Stop()
		d.when = time.Time{}
	}
}
