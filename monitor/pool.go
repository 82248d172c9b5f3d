package monitor

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tendervm/tender/hypercall"
	"github.com/tendervm/tender/monitor/process"
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
	// Fresh keeps instances like Warm, but puts each back into the state
	// its guest had at its first fn_next after every invocation, so that
	// nothing one invocation leaves in memory or registers reaches the
	// next. On the process backend it needs Linux 6.7 (ErrFreshUnsupported).
	Fresh Mode = "fresh"
)

// Pool defaults.
const (
	DefaultMaxInstances = 64
	DefaultQueueLimit   = 1024
	DefaultIdleTimeout  = 30 * time.Second
	DefaultFnTimeout    = 10 * time.Second
)

// Pool errors.
var (
	// ErrSaturated: every instance is busy and QueueLimit callers already
	// wait.
	ErrSaturated = errors.New("monitor: pool saturated: every instance busy and the queue full")
	// ErrClosed: the pool is closed or closing.
	ErrClosed = errors.New("monitor: pool closed")
	// ErrSolo5Pool: NewPool was given a Solo5 guest, which has no fn_next
	// and so can never take a call; run it once with VM.Run (tender run).
	ErrSolo5Pool = errors.New("monitor: a Solo5 guest serves no function calls (it has no fn_next): run it with tender run, not in a pool")
)

// PoolConfig describes a function and how to run it.
type PoolConfig struct {
	// Guest is the function's guest: ELF, memory, arguments, console (shared
	// by every instance; it must be safe for concurrent writes, or nil).
	Guest Config
	// Mode is Warm when empty.
	Mode Mode
	// MaxInstances bounds the instances alive at once (of any mode);
	// DefaultMaxInstances when zero or negative. A guest with devices
	// (Config.Net, Config.Block) needs 1: a device serves one VM at a time.
	MaxInstances int
	// QueueLimit bounds the callers waiting for an instance; beyond it
	// Invoke fails fast with ErrSaturated. DefaultQueueLimit when zero,
	// no waiting at all when negative.
	QueueLimit int
	// IdleTimeout retires a warm or fresh instance that waited this long for work;
	// DefaultIdleTimeout when zero, never when negative.
	IdleTimeout time.Duration
	// Timeout bounds every invocation that has no earlier deadline, and
	// every boot of Prewarm; DefaultFnTimeout when zero or negative.
	Timeout time.Duration
}

// Pool runs invocations of one function on cold, warm or fresh instances. It is safe
// for concurrent use.
//
// An invocation runs on its caller's goroutine: the caller takes an idle
// instance (or boots one), hands it the request and serves its vCPU until the
// guest replies, then puts it back. Nothing crosses to another thread on the
// way, which makes a warm invocation cost about one hypercall. On KVM the
// caller's goroutine stays on its thread for the call (see lifecycle.go).
type Pool struct {
	cfg PoolConfig
	// spawn returns a new, unstarted instance: a VM of the function's
	// (fnVM), or a fake in the pool's tests.
	spawn func(*fnState) lifecycle

	started atomic.Uint64
	ids     atomic.Uint64 // the last request id handed out
	resets  atomic.Uint64
	resetNs atomic.Int64  // the time of those resets
	lost    atomic.Uint64 // instances lost in a reset (PoolStats.LostInReset)

	mu      sync.Mutex
	closed  bool
	live    int              // instances alive, idle or not
	idle    []*instance      // parked instances, the most recently used last
	waiters []chan *instance // callers queued for an instance, first come first; nil hands over a free slot
	exits   [vcpu.NumExitKinds]uint64

	// calls holds calls that ended with nothing left pointing at them, for
	// the next Invoke: allocating one costs 70-180 ns on a small host, a
	// fifth of what a warm invocation adds to its exit (issue 11).
	calls sync.Pool

	inflight sync.WaitGroup // Invoke and Prewarm calls in progress
	stop     chan struct{}  // closed by Close: stops the janitor
	// ctx is cancelled (ErrClosed) as Close begins: it stops Prewarm's
	// boots, which only their caller's context bounds otherwise.
	ctx     context.Context
	cancel  context.CancelCauseFunc
	shut    chan struct{} // closed when Close has stopped everything
	janitor sync.WaitGroup
	// closers release what the pool's instances share, at Close once no
	// instance can start any more.
	closers []func()
}

// NewPool checks the function's guest once (configuration and ELF) and
// returns a pool that boots instances of it on demand.
func (h *Host) NewPool(cfg PoolConfig) (*Pool, error) {
	if h.closed.Load() {
		return nil, closedError()
	}
	cfg, err := poolDefaults(cfg)
	if err != nil {
		return nil, err
	}
	// The instances load the guest from it for as long as the pool lives:
	// the caller may reuse its slice.
	cfg.Guest.ELF = bytes.Clone(cfg.Guest.ELF)
	g, err := prepare(cfg.Guest) // fail now, not at the first invocation
	if err != nil {
		return nil, err
	}
	if g.img.Solo5 != nil {
		// In any mode: no instance could serve a call, and a confined
		// pool's instance would die on a call the filter refuses (its
		// poll's eventfd) rather than fail with an error.
		return nil, ErrSolo5Pool
	}
	if cfg.Mode == Fresh {
		if !h.be.resets() {
			return nil, fmt.Errorf("%w: the %s backend needs Linux 6.7 to track a guest process's writes (%w)", ErrFreshUnsupported, BackendProcess, process.CanTrack())
		}
		if n := len(g.img.Devices); n > 0 {
			return nil, fmt.Errorf("%w: the guest declares %d devices (network or block)", ErrFreshUnsupported, n)
		}
	}
	if cfg.MaxInstances > 1 && len(cfg.Guest.Net)+len(cfg.Guest.Block) > 0 {
		// A device serves one running VM at a time (Config.Net).
		return nil, fmt.Errorf("monitor: a pool of %d instances would share its devices: attach devices only with MaxInstances 1", cfg.MaxInstances)
	}
	if cfg.Mode != Fresh {
		return newPool(cfg, func(f *fnState) lifecycle { return h.newFnVM(g, f) }), nil
	}
	// The first instance to take its snapshot makes it the image every
	// later instance starts from.
	im := newFreshImage()
	p := newPool(cfg, func(f *fnState) lifecycle {
		f.fresh.image = im
		return h.newFnVM(g, f)
	})
	p.closers = append(p.closers, im.close)
	return p, nil
}

// poolDefaults checks cfg and fills in its defaults.
func poolDefaults(cfg PoolConfig) (PoolConfig, error) {
	switch cfg.Mode {
	case "":
		cfg.Mode = Warm
	case Cold, Warm, Fresh:
	default:
		return cfg, fmt.Errorf("monitor: unknown mode %q (want %q, %q or %q)", cfg.Mode, Cold, Warm, Fresh)
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
	if cfg.Guest.ConsoleRequired {
		return cfg, errors.New("monitor: a pool's console is diagnostics: ConsoleRequired is for Run")
	}
	return cfg, nil
}

// newPool returns a pool of instances that spawn makes, for a checked cfg.
func newPool(cfg PoolConfig, spawn func(*fnState) lifecycle) *Pool {
	p := &Pool{cfg: cfg, spawn: spawn, stop: make(chan struct{}), shut: make(chan struct{})}
	p.ctx, p.cancel = context.WithCancelCause(context.Background())
	if cfg.Mode != Cold && cfg.IdleTimeout > 0 {
		p.janitor.Add(1)
		go p.retireIdle()
	}
	return p
}

// Invoke runs one invocation and returns the function's reply. A guest that
// faults, overruns the deadline or breaks the protocol fails this invocation
// with the typed error of VM.Run (FaultError, StoppedError, ProtocolError...);
// its instance is discarded and no other invocation is affected. Cancelling
// ctx while the guest works on the request stops that instance too. A Fresh
// instance lost while being reset for this invocation (by what the one
// before left in it) is replaced, and the invocation handed to the new
// instance, once (PoolStats.LostInReset).
func (p *Pool) Invoke(ctx context.Context, req Request) (Reply, error) {
	if len(req.Body) > hypercall.FnRequestMax {
		return Reply{}, ErrTooLarge
	}
	if !p.enter() {
		return Reply{}, ErrClosed
	}
	defer p.inflight.Done()
	if ctx.Err() != nil { // booting an instance for it would be wasted
		return Reply{}, stopped(ctx)
	}

	// One clock reading serves both the default deadline and the check
	// (a reading costs 40-80 ns on some hosts; issue 11).
	now := time.Now()
	c, _ := p.calls.Get().(*call)
	if c == nil {
		c = new(call)
	}
	c.ctx, c.id, c.req, c.deadline = ctx, p.ids.Add(1), req, now.Add(p.cfg.Timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(c.deadline) {
		c.deadline = d
	}
	if !req.Deadline.IsZero() && req.Deadline.Before(c.deadline) {
		c.deadline = req.Deadline
	}
	if !now.Before(c.deadline) { // no time to boot or hand it over
		return Reply{}, &StoppedError{Cause: context.DeadlineExceeded}
	}
	inst, err := p.acquire(ctx, c.deadline)
	if err != nil {
		return Reply{}, err
	}
	for retried := false; ; retried = true {
		if inst.vm.resume(c) {
			p.release(inst)
			break
		}
		lost := errors.Is(c.err, errLostInReset)
		if lost {
			p.lost.Add(1)
		}
		if !lost || retried || p.ctx.Err() != nil {
			p.discard()
			break
		}
		var stop error // what a second instance would have said at once
		switch {
		case ctx.Err() != nil:
			stop = stopped(ctx)
		case !time.Now().Before(c.deadline):
			stop = &StoppedError{Cause: context.DeadlineExceeded}
		}
		if stop != nil {
			c.err = stop
			p.discard()
			break
		}
		// Its instance was lost while being reset for it, before the
		// guest reached a hypercall of it: a new instance in the lost
		// one's slot takes it, once.
		c = p.again(c)
		inst = p.newInstance()
	}
	if !c.finished { // cannot happen: every path through resume finishes c
		return Reply{}, fmt.Errorf("monitor: invocation %d left unanswered", c.id)
	}
	rep, err := c.reply, c.err
	if err == nil && !c.held {
		// Answered, and no deadline or context function can still see
		// it: the next Invoke may have it.
		*c = call{}
		p.calls.Put(c)
	}
	return rep, err
}

// again returns a new call for what c asked, and gives c back for reuse
// when nothing can still see it.
func (p *Pool) again(c *call) *call {
	n, _ := p.calls.Get().(*call)
	if n == nil {
		n = new(call)
	}
	n.ctx, n.id, n.req, n.deadline = c.ctx, c.id, c.req, c.deadline
	if !c.held {
		*c = call{}
		p.calls.Put(c)
	}
	return n
}

// enter registers an Invoke or Prewarm call, unless the pool is closed.
func (p *Pool) enter() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.inflight.Add(1)
	return true
}

// Prewarm boots warm or fresh instances until n are alive (or the pool's maximum is
// reached) and waits until they are parked and ready, so that the first n
// concurrent invocations find a booted instance. An instance that fails to
// boot (its guest ends or breaks the protocol before its first fn_next)
// ends Prewarm with that error: no boot starts after it, and those already
// under way finish. Each boot must reach fn_next within the pool's Timeout,
// and is stopped by ctx and by Close (a StoppedError).
func (p *Pool) Prewarm(ctx context.Context, n int) error {
	if p.cfg.Mode == Cold {
		return fmt.Errorf("monitor: only a warm or fresh pool can be prewarmed")
	}
	if !p.enter() {
		return ErrClosed
	}
	defer p.inflight.Done()
	if ctx.Err() != nil {
		return stopped(ctx)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	defer context.AfterFunc(p.ctx, func() { cancel(ErrClosed) })()
	var (
		wg    sync.WaitGroup
		errMu sync.Mutex
		first error
		sem   = make(chan struct{}, runtime.GOMAXPROCS(0))
		// booted: an instance this call started has booted (or failed).
		booted bool
	)
	for {
		// A boot that failed records it before it frees its place in
		// sem, so taking a place first tells whether one has: another
		// boot of the same guest would most likely fail the same way,
		// and replacing failed boots went on for ever.
		sem <- struct{}{}
		errMu.Lock()
		failed := first != nil
		errMu.Unlock()
		if failed || ctx.Err() != nil {
			break
		}
		p.mu.Lock()
		if p.live >= min(n, p.cfg.MaxInstances) {
			p.mu.Unlock()
			break
		}
		p.live++
		p.mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			inst := p.newInstance()
			bctx, bcancel := context.WithTimeout(ctx, p.cfg.Timeout)
			defer bcancel()
			if err := inst.vm.start(bctx); err != nil {
				p.discard()
				errMu.Lock()
				first = cmp.Or(first, err)
				errMu.Unlock()
				return
			}
			p.release(inst)
		}()
		if p.cfg.Mode == Fresh && !booted {
			// The first boots alone: its snapshot becomes the image
			// the others start from, sharing its pages.
			wg.Wait()
			booted = true
		}
	}
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		return stopped(ctx)
	}
	return first
}

// Close stops accepting invocations, waits for those in flight to finish,
// then retires every instance and waits for them to stop. A Close while
// another is under way waits for it likewise.
func (p *Pool) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		// Its caller may close the Host next, which must wait until no
		// instance is left.
		<-p.shut
		return nil
	}
	p.closed = true
	p.mu.Unlock()
	p.cancel(ErrClosed)
	p.inflight.Wait()
	close(p.stop)
	p.janitor.Wait()
	p.mu.Lock()
	gone := p.idle
	p.idle = nil
	p.mu.Unlock()
	for _, inst := range gone {
		inst.retire()
	}
	p.mu.Lock()
	p.live -= len(gone) // once they are gone, as for the janitor's
	p.mu.Unlock()
	for _, c := range p.closers {
		c()
	}
	close(p.shut)
	return nil
}
