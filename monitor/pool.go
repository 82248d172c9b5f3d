package monitor

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
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
	// Queued is the number of callers waiting for an instance.
	Queued int64
	// Started counts instances ever booted.
	Started uint64
	// Exits counts vCPU exits of all instances by kind (vcpu.ExitKind).
	Exits [vcpu.NumExitKinds]uint64
}

// Pool runs invocations of one function on cold or warm instances. It is safe
// for concurrent use.
//
// An invocation runs on its caller's goroutine: the caller takes an idle
// instance (or boots one), hands it the request and serves its vCPU until the
// guest replies, then puts it back. Nothing crosses to another thread on the
// way, which on the process backend makes a warm invocation cost about one
// hypercall. A KVM vCPU stays on a thread of its own (see instance.thread).
type Pool struct {
	host  *Host
	cfg   PoolConfig
	guest *guest // parsed once, loaded into every instance

	started atomic.Uint64
	ids     atomic.Uint64 // the last request id handed out

	mu      sync.Mutex
	closed  bool
	live    int              // instances alive, idle or not
	idle    []*instance      // parked instances, the most recently used last
	waiters []chan *instance // callers queued for an instance, first come first; nil hands over a free slot
	exits   [vcpu.NumExitKinds]uint64

	inflight sync.WaitGroup // Invoke and Prewarm calls in progress
	stop     chan struct{}  // closed by Close: stops the janitor
	janitor  sync.WaitGroup
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
	p := &Pool{host: h, cfg: cfg, guest: g, stop: make(chan struct{})}
	if cfg.Mode == Warm && cfg.IdleTimeout > 0 {
		p.janitor.Add(1)
		go p.retireIdle()
	}
	return p, nil
}

// Invoke runs one invocation and returns the function's reply. A guest that
// faults, overruns the deadline or breaks the protocol fails this invocation
// with the typed error of VM.Run (FaultError, StoppedError, ProtocolError...);
// its instance is discarded and no other invocation is affected. Cancelling
// ctx while the guest works on the request stops that instance too.
func (p *Pool) Invoke(ctx context.Context, req Request) (Reply, error) {
	if len(req.Body) > hypercall.FnRequestMax {
		return Reply{}, ErrTooLarge
	}
	if !p.enter() {
		return Reply{}, ErrClosed
	}
	defer p.inflight.Done()

	c := &call{ctx: ctx, id: p.ids.Add(1), req: req, deadline: time.Now().Add(p.cfg.Timeout)}
	if d, ok := ctx.Deadline(); ok && d.Before(c.deadline) {
		c.deadline = d
	}
	if !req.Deadline.IsZero() && req.Deadline.Before(c.deadline) {
		c.deadline = req.Deadline
	}
	if !time.Now().Before(c.deadline) { // no time to boot or hand it over
		return Reply{}, &StoppedError{Cause: context.DeadlineExceeded}
	}
	inst, err := p.acquire(ctx, c.deadline)
	if err != nil {
		return Reply{}, err
	}
	if inst.serve(c) {
		p.release(inst)
	} else {
		p.discard()
	}
	if !c.finished { // cannot happen: every path through serve finishes c
		return Reply{}, fmt.Errorf("monitor: invocation %d left unanswered", c.id)
	}
	return c.reply, c.err
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

// acquire returns an instance for one invocation: the most recently parked
// one, a new one if the pool may grow, or the first to come free while the
// queue has room.
func (p *Pool) acquire(ctx context.Context, deadline time.Time) (*instance, error) {
	p.mu.Lock()
	if p.cfg.Mode == Warm {
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
	var cause error
	select {
	case inst := <-w:
		if inst == nil { // a free slot
			inst = p.newInstance()
		}
		return inst, nil
	case <-ctx.Done():
		cause = ctx.Err()
	case <-expire.C:
		cause = context.DeadlineExceeded
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
	return nil, &StoppedError{Cause: cause}
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
	if len(p.waiters) > 0 {
		w := p.waiters[0]
		p.waiters = slices.Delete(p.waiters, 0, 1)
		p.mu.Unlock()
		w <- inst
		return
	}
	inst.idleSince = time.Now()
	p.idle = append(p.idle, inst)
	p.mu.Unlock()
}

// discard frees the slot of an instance that has ended: the first queued
// caller boots a new one in its place.
func (p *Pool) discard() {
	p.mu.Lock()
	if len(p.waiters) > 0 {
		w := p.waiters[0]
		p.waiters = slices.Delete(p.waiters, 0, 1)
		p.mu.Unlock()
		w <- nil
		return
	}
	p.live--
	p.mu.Unlock()
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
		p.live -= n
		p.mu.Unlock()
		for _, inst := range gone {
			inst.retire()
		}
	}
}

// Prewarm boots warm instances until n are alive (or the pool's maximum is
// reached) and waits until they are parked and ready, so that the first n
// concurrent invocations find a booted instance.
func (p *Pool) Prewarm(ctx context.Context, n int) error {
	if p.cfg.Mode != Warm {
		return fmt.Errorf("monitor: only a warm pool can be prewarmed")
	}
	if !p.enter() {
		return ErrClosed
	}
	defer p.inflight.Done()
	var (
		wg    sync.WaitGroup
		errMu sync.Mutex
		first error
		sem   = make(chan struct{}, runtime.GOMAXPROCS(0))
	)
	for ctx.Err() == nil {
		p.mu.Lock()
		if p.live >= min(n, p.cfg.MaxInstances) {
			p.mu.Unlock()
			break
		}
		p.live++
		p.mu.Unlock()
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			inst := p.newInstance()
			if err := inst.boot(ctx); err != nil {
				p.discard()
				errMu.Lock()
				first = cmp.Or(first, err)
				errMu.Unlock()
				return
			}
			p.release(inst)
		}()
	}
	wg.Wait()
	return cmp.Or(first, ctx.Err())
}

// newInstance returns an instance of the pool's function, not yet booted;
// its slot is already counted in live.
func (p *Pool) newInstance() *instance {
	p.started.Add(1)
	inst := &instance{p: p, fn: &fnState{onReply: p.countExits}}
	if p.cfg.Mode == Cold {
		inst.fn.maxCalls = 1
	}
	if p.host.backend != BackendProcess {
		inst.work = make(chan *call)
		inst.done = make(chan bool)
		go inst.thread()
	}
	return inst
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
	return PoolStats{Live: int64(p.live), Idle: int64(len(p.idle)), Queued: int64(len(p.waiters)), Started: p.started.Load(), Exits: p.exits}
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
	p.janitor.Wait()
	p.mu.Lock()
	gone := p.idle
	p.idle = nil
	p.live -= len(gone)
	p.mu.Unlock()
	for _, inst := range gone {
		inst.retire()
	}
	return nil
}

// instance is one VM serving a pool's function, parked in fn_next between
// invocations. One goroutine at a time owns it: the pool's idle stack, or
// the caller it hands it to.
type instance struct {
	p         *Pool
	fn        *fnState
	vm        *VM
	r         *run // nil until booted
	idleSince time.Time
	bootCtx   context.Context // binds a boot for no call (Prewarm)
	err       error           // why the instance ended

	// A KVM instance's vCPU lives on its own thread, which serve and retire
	// hand work to; nil on the process backend.
	work chan *call // a call to serve, or nil to only boot; closed to retire
	done chan bool  // serve's result
}

// serve hands c to the instance and runs it until the guest has answered.
// It reports whether the instance lives on, parked for the next call; if not,
// it has been released.
func (inst *instance) serve(c *call) bool {
	if inst.work != nil {
		inst.work <- c
		return <-inst.done
	}
	return inst.step(c)
}

// boot starts the instance and runs it until it parks for its first call,
// or until ctx is done, which stops it.
func (inst *instance) boot(ctx context.Context) error {
	inst.bootCtx = ctx
	ok := inst.serve(nil)
	if !ok {
		return inst.err
	}
	return nil
}

// step is serve on the goroutine that runs the vCPU.
func (inst *instance) step(c *call) bool {
	var unwatch func() bool
	if inst.r == nil {
		vm, err := inst.p.host.instantiate(inst.p.guest)
		if err != nil {
			inst.err = err
			if c != nil {
				c.finish(Reply{}, err)
			}
			return false
		}
		vm.fn = inst.fn
		inst.vm = vm
		inst.fn.next = c
		inst.r, err = vm.begin(context.Background())
		if err != nil {
			inst.end(0, err)
			return false
		}
		if c != nil {
			// The call's deadline and context bind the boot too.
			c.state.Store(callBooting)
			inst.fn.watch(c)
		} else if inst.bootCtx != nil {
			// Prewarm's context binds the boot.
			unwatch = context.AfterFunc(inst.bootCtx, inst.fn.kick)
		}
	} else {
		inst.fn.next = c
		switch o, err := inst.fn.take(); {
		case err != nil:
			inst.end(0, err)
			return false
		case o == parked:
			return true // c expired in the queue, or was cancelled
		}
	}
	inst.r.parked = false
	status, err := inst.r.loop(context.Background())
	if unwatch != nil && !unwatch() {
		err = stopped(inst.bootCtx) // it fired: the vCPU is kicked for good
	}
	if err == nil && inst.r.parked {
		return true
	}
	inst.end(status, err)
	return false
}

// end finishes the run (failing the calls it leaves) and frees the VM.
func (inst *instance) end(status int, err error) {
	if inst.r != nil {
		res, _ := inst.r.finish(status, err)
		inst.p.countExits(inst.fn, &res.Stats)
	}
	if err == nil {
		err = fmt.Errorf("monitor: instance exited with status %d", status)
	}
	inst.err = err
	inst.vm.Close()
}

// retire stops a parked instance.
func (inst *instance) retire() {
	if inst.work != nil {
		close(inst.work)
		<-inst.done
		return
	}
	inst.end(0, nil)
}

// thread runs a KVM instance's vCPU: KVM kicks a vCPU with a signal to its
// thread, and a vCPU that moves between threads can cost an RCU grace period in
// the kernel, so calls cross to this thread instead.
func (inst *instance) thread() {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	for c := range inst.work {
		ok := inst.step(c)
		inst.done <- ok
		if !ok {
			return
		}
	}
	if inst.r != nil { // retired
		inst.end(0, nil)
	}
	inst.done <- false
}
