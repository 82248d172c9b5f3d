package monitor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tendervm/tender/hypercall"
	"github.com/tendervm/tender/monitor/vcpu"
)

// Mode says how a Pool gets an instance for an invocation.
type Mode string

// Instance modes.
const (
	// Cold boots a fresh VM from the ELF for every invocation and discards
	// it afterwards, as in the HotOS'17 experiment.
	Cold Mode = "cold"
	// Warm keeps instances that serve one invocation after another; each
	// costs one exit.
	Warm Mode = "warm"
)

// Pool defaults.
const (
	DefaultMaxInstances = 64
	DefaultQueueLimit   = 1024
	DefaultIdleTimeout  = 30 * time.Second
	DefaultFnTimeout    = 10 * time.Second
)

// handoffWait bounds how long a call waits for an instance that has just
// replied before the pool boots another; far below a boot.
const handoffWait = 2 * time.Millisecond

// Pool errors.
var (
	// ErrSaturated: every instance is busy and QueueLimit callers already
	// wait.
	ErrSaturated = errors.New("monitor: pool saturated: every instance busy and the queue full")
	// ErrClosed: the pool is closed or closing.
	ErrClosed = errors.New("monitor: pool closed")
)

// PoolConfig describes a function and how to run it.
type PoolConfig struct {
	// Guest is the function's guest: ELF, memory, arguments, console (shared
	// by every instance; it must be safe for concurrent writes, or nil).
	Guest Config
	// Mode is Warm when empty.
	Mode Mode
	// MaxInstances bounds the instances alive at once (cold or warm);
	// DefaultMaxInstances when zero.
	MaxInstances int
	// QueueLimit bounds the callers waiting for an instance; beyond it
	// Invoke fails fast with ErrSaturated. DefaultQueueLimit when zero,
	// no waiting at all when negative.
	QueueLimit int
	// IdleTimeout retires a warm instance that waited this long for work;
	// DefaultIdleTimeout when zero, never when negative.
	IdleTimeout time.Duration
	// Timeout bounds every invocation that has no earlier deadline;
	// DefaultFnTimeout when zero.
	Timeout time.Duration
}

// PoolStats is a snapshot of a pool's counters.
type PoolStats struct {
	// Live is the number of instances alive (booting, busy or idle).
	Live int64
	// Idle is the number of instances waiting for a request.
	Idle int64
	// Started counts instances ever booted.
	Started uint64
	// Exits counts vCPU exits of all instances by kind (vcpu.ExitKind).
	Exits [vcpu.NumExitKinds]uint64
}

// Pool runs invocations of one function on cold or warm instances. It is safe
// for concurrent use.
type Pool struct {
	host  *Host
	cfg   PoolConfig
	guest *guest // parsed once, loaded into every instance

	calls   chan *call // warm: idle instances receive from it
	stop    chan struct{}
	slots   chan struct{} // one token per live instance
	waiting atomic.Int64  // callers queued for an instance
	idle    atomic.Int64
	// finishing counts warm instances between a reply and their next wait.
	finishing atomic.Int64
	started   atomic.Uint64
	ids       atomic.Uint64 // the last request id handed out

	mu     sync.Mutex
	closed bool
	exits  [vcpu.NumExitKinds]uint64

	inflight  sync.WaitGroup // Invoke calls in progress
	instances sync.WaitGroup
}

// NewPool checks the function's guest once (configuration and ELF) and
// returns a pool that boots instances of it on demand.
func (h *Host) NewPool(cfg PoolConfig) (*Pool, error) {
	switch cfg.Mode {
	case "":
		cfg.Mode = Warm
	case Cold, Warm:
	default:
		return nil, fmt.Errorf("monitor: unknown mode %q (want %q or %q)", cfg.Mode, Cold, Warm)
	}
	if cfg.MaxInstances <= 0 {
		cfg.MaxInstances = DefaultMaxInstances
	}
	if cfg.QueueLimit == 0 {
		cfg.QueueLimit = DefaultQueueLimit
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultFnTimeout
	}
	if cfg.Guest.Console == nil {
		cfg.Guest.Console = io.Discard
	}
	g, err := prepare(cfg.Guest) // fail now, not at the first invocation
	if err != nil {
		return nil, err
	}
	return &Pool{
		host:  h,
		cfg:   cfg,
		guest: g,
		calls: make(chan *call),
		stop:  make(chan struct{}),
		slots: make(chan struct{}, cfg.MaxInstances),
	}, nil
}

// Invoke runs one invocation and returns the function's reply. A guest that
// faults, overruns the deadline or breaks the protocol fails this invocation
// with the typed error of VM.Run (FaultError, StoppedError, ProtocolError...);
// its instance is discarded and no other invocation is affected.
func (p *Pool) Invoke(ctx context.Context, req Request) (Reply, error) {
	if len(req.Body) > hypercall.FnRequestMax {
		return Reply{}, ErrTooLarge
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return Reply{}, ErrClosed
	}
	p.inflight.Add(1)
	p.mu.Unlock()
	defer p.inflight.Done()

	c := &call{id: p.ids.Add(1), req: req, deadline: time.Now().Add(p.cfg.Timeout), done: make(chan callResult, 1)}
	if d, ok := ctx.Deadline(); ok && d.Before(c.deadline) {
		c.deadline = d
	}
	if !req.Deadline.IsZero() && req.Deadline.Before(c.deadline) {
		c.deadline = req.Deadline
	}
	if err := p.dispatch(ctx, c); err != nil {
		return Reply{}, err
	}
	select {
	case r := <-c.done:
		return r.reply, r.err
	case <-ctx.Done():
		// The instance goes on until the call's deadline at the latest.
		return Reply{}, &StoppedError{Cause: ctx.Err()}
	}
}

// dispatch hands c to an instance: an idle warm one, a new one if the pool
// may grow, or the first to free up while the queue has room.
func (p *Pool) dispatch(ctx context.Context, c *call) error {
	if p.cfg.Mode == Warm {
		select {
		case p.calls <- c:
			return nil
		default:
		}
		// An instance that has just replied is microseconds from taking
		// work again: a sequential caller's next request would otherwise
		// boot a new instance every time it wins that race.
		if p.finishing.Load() > 0 {
			t := time.NewTimer(handoffWait)
			select {
			case p.calls <- c:
				t.Stop()
				return nil
			case <-t.C:
			}
		}
	}
	select {
	case p.slots <- struct{}{}:
		p.startInstance(c, nil)
		return nil
	default:
	}
	if n := p.waiting.Add(1); p.cfg.QueueLimit < 0 || n > int64(p.cfg.QueueLimit) {
		p.waiting.Add(-1)
		return ErrSaturated
	}
	defer p.waiting.Add(-1)
	var calls chan *call // cold pools never hand calls to running instances
	if p.cfg.Mode == Warm {
		calls = p.calls
	}
	expire := time.NewTimer(time.Until(c.deadline))
	defer expire.Stop()
	select {
	case calls <- c:
		return nil
	case p.slots <- struct{}{}:
		p.startInstance(c, nil)
		return nil
	case <-ctx.Done():
		return &StoppedError{Cause: ctx.Err()}
	case <-expire.C:
		return &StoppedError{Cause: context.DeadlineExceeded}
	}
}

// Prewarm boots warm instances until n are alive (or the pool's maximum is
// reached) and waits until they are idle and ready, so that the first n
// concurrent invocations find a booted instance.
func (p *Pool) Prewarm(ctx context.Context, n int) error {
	if p.cfg.Mode != Warm {
		return fmt.Errorf("monitor: only a warm pool can be prewarmed")
	}
	var ready []chan struct{}
	for len(p.slots) < n {
		p.mu.Lock()
		closed := p.closed
		p.mu.Unlock()
		if closed {
			return ErrClosed
		}
		select {
		case p.slots <- struct{}{}:
			r := make(chan struct{})
			ready = append(ready, r)
			p.startInstance(nil, r)
		default:
			n = len(p.slots) // at the maximum
		}
	}
	for _, r := range ready {
		select {
		case <-r:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// startInstance boots an instance (its slot already taken) whose first call
// is first, or which goes idle at once when first is nil; ready, if not nil,
// is closed when the instance is ready for work or gone.
func (p *Pool) startInstance(first *call, ready chan struct{}) {
	p.instances.Add(1)
	p.started.Add(1)
	go func() {
		defer p.instances.Done()
		defer func() { <-p.slots }()
		f := &fnState{first: first, stop: p.stop, onReply: p.countExits, ready: ready}
		if ready != nil {
			defer f.markReady()
		}
		if p.cfg.Mode == Cold {
			f.maxCalls = 1
		} else {
			f.calls, f.waiting, f.finishing = p.calls, &p.idle, &p.finishing
			if p.cfg.IdleTimeout > 0 {
				f.idle = p.cfg.IdleTimeout
			}
		}
		vm, err := p.host.instantiate(p.guest)
		if err != nil {
			if first != nil {
				first.finish(Reply{}, err)
			}
			return
		}
		defer vm.Close()
		vm.fn = f
		res, err := vm.Run(context.Background())
		p.countExits(f, &res.Stats)
		if f.first != nil { // it stopped before asking for its first call
			if err == nil {
				err = &ProtocolError{Hypercall: "fn_next", Reason: fmt.Sprintf("guest exited with status %d before taking a request", res.Status)}
			}
			f.first.finish(Reply{}, err)
		}
	}()
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

// Stats returns a snapshot of the pool's counters.
func (p *Pool) Stats() PoolStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return PoolStats{Live: int64(len(p.slots)), Idle: p.idle.Load(), Started: p.started.Load(), Exits: p.exits}
}

// Close stops accepting invocations, waits for those in flight to finish,
// then retires every instance and waits for them to stop.
func (p *Pool) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()
	p.inflight.Wait()
	close(p.stop)
	p.instances.Wait()
	return nil
}
