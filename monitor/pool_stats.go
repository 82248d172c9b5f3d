package monitor

import (
	"time"

	"github.com/tendervm/tender/monitor/vcpu"
)

// PoolStats is a snapshot of a pool's counters.
type PoolStats struct {
	// Live is the number of instances alive (booting, busy or idle).
	Live int64
	// Idle is the number of instances waiting for a request.
	Idle int64
	// Queued is the number of callers waiting for an instance.
	Queued int64
	// Started counts instances ever booted.
	Started uint64
	// Exits counts vCPU exits of all instances by kind (vcpu.ExitKind).
	Exits [vcpu.NumExitKinds]uint64
	// Resets counts fresh instances put back into their snapshot, and
	// ResetTime is the time the monitor took for them in all (on the
	// process backend the guest process finishes each reset in its next
	// run: copying its signal frame back and reloading its registers).
	Resets    uint64
	ResetTime time.Duration
	// LostInReset counts fresh instances lost while being reset for a
	// call (vcpu.Exit.InReset): a request can leave its process backend
	// instance in a state its reset fails in (docs/security.md). The call
	// goes to a new instance, once, while its deadline allows.
	LostInReset uint64
}

// countExits adds the exits a run made since they were last counted.
func (p *Pool) countExits(f *fnState, s *Stats) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for k, n := range s.Exits {
		p.exits[k] += n - f.counted[k]
		f.counted[k] = n
	}
}

// countReset counts one reset of a fresh instance that took d.
func (p *Pool) countReset(d time.Duration) {
	p.resets.Add(1)
	p.resetNs.Add(int64(d))
}

// Stats returns a snapshot of the pool's counters.
func (p *Pool) Stats() PoolStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return PoolStats{Live: int64(p.live), Idle: int64(len(p.idle)), Queued: int64(len(p.waiters)), Started: p.started.Load(), Exits: p.exits,
		Resets: p.resets.Load(), ResetTime: time.Duration(p.resetNs.Load()), LostInReset: p.lost.Load()}
}
