// Package monitor runs unikernel guests: static ELF executables that talk to
// the host only through tender's hypercalls (package hypercall).
//
// A Host is a connection to the hypervisor, shared by any number of VMs. A VM
// is one guest: New validates and loads its ELF into fresh guest memory, Run
// boots it and serves its hypercalls until it exits, and Close releases
// everything. There is no global state: every resource hangs off a Host or VM.
//
//	host, err := monitor.NewHost(monitor.HostConfig{})
//	...
//	defer host.Close()
//	vm, err := host.New(monitor.Config{ELF: image, Console: os.Stdout})
//	...
//	defer vm.Close()
//	res, err := vm.Run(ctx)
//
// Two backends run guests. BackendKVM (the default) runs each guest in its own
// KVM virtual machine at CPL 3 under page tables and descriptor tables the
// monitor owns. BackendProcess, for hosts without KVM, runs it as a Linux
// process set up under ptrace, whose seccomp filter hands every system call
// to the monitor as a user notification (the stub's fault reports, which
// carry the hypercalls, and any system call of the guest's own, which ends
// the run), except rt_sigreturn and close issued from the stub's code page.
package monitor

import (
	"context"
	"errors"
	"io"
	"runtime"
	"time"

	"github.com/tendervm/tender/hypercall"
	"github.com/tendervm/tender/monitor/tsc"
	"github.com/tendervm/tender/monitor/vcpu"
)

// Result is the outcome of a run.
type Result struct {
	// Status is the guest's exit status; meaningful only when Run returned no
	// error.
	Status int
	// Stats describes the run, also when it failed.
	Stats Stats
}

// ErrAlreadyRun is returned by a second Run of the same VM.
var ErrAlreadyRun = errors.New("monitor: VM already ran; create a new one")

// ErrVMClosed is returned by Run after Close, and is the Reason of the
// StoppedError of a Run that Close stopped.
var ErrVMClosed = errors.New("monitor: VM closed")

// Run boots the guest and serves its hypercalls until it exits, fails, or ctx
// is done; a cancelled run stops within milliseconds and returns a
// StoppedError. The guest's vCPU is served on the calling goroutine (locked
// to its OS thread for the duration under KVM).
func (vm *VM) Run(ctx context.Context) (Result, error) {
	if vm.host.be.lockThread() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
	}
	// Close and a console that fails (ConsoleRequired) stop the guest as
	// a cancellation would, with their reason as the cause.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	done := make(chan struct{})
	defer close(done) // after finish: the vCPU is closed
	var consoleFailed func(error)
	if vm.cfg.ConsoleRequired {
		consoleFailed = func(err error) { cancel(&ConsoleError{Err: err, Stopped: true}) }
	}
	r, err := vm.begin(ctx, consoleFailed, func() { vm.stopRun, vm.runDone = cancel, done })
	if err != nil {
		return r.finish(0, err)
	}
	status, err := r.loop(ctx)
	return r.finish(status, err)
}

// begin starts a run: it creates the vCPU, fills in the guest's clock and
// wires ctx and Host.Close to stop it; consoleFailed, when set, is told of a
// console Write that fails; claim, when set, is called under vm.mu as the
// run claims the VM (Run records how Close stops it). On error the run must
// still be finished.
func (vm *VM) begin(ctx context.Context, consoleFailed func(error), claim func()) (*run, error) {
	r := &run{vm: vm, start: time.Now()}
	r.stats.solo5 = vm.img.Solo5 != nil
	ph := &r.stats.Phases
	ph.Load = vm.loadTime
	vm.mu.Lock()
	if vm.closed {
		vm.mu.Unlock()
		return r, ErrVMClosed
	}
	if vm.started {
		vm.mu.Unlock()
		return r, ErrAlreadyRun
	}
	vm.started = true
	if claim != nil {
		claim()
	}
	vm.mu.Unlock()

	if ctx.Err() != nil {
		return r, stopped(ctx)
	}
	// Guest TSC and wall clock sampled together, so the guest can tell wall
	// time without an exit. A guest process starts running at once, so its
	// clock goes in just before (Boot.Start); a KVM vCPU says its TSC rate
	// once it exists and runs only in the loop.
	first := vm.host.be.clockFirst()
	boot := vm.boot
	if first {
		// Written once the guest process is set up, just before it
		// runs, so that the host's TSC calibration (started by NewHost)
		// overlaps the process's start rather than delaying it.
		boot.Start = func() error {
			t := time.Now()
			err := vm.writeClock(vm.host.hostTSCHz(), tsc.Read())
			ph.Clock = time.Since(t)
			return err
		}
	}
	cpu, tscHz, err := vm.host.be.newVCPU(vm.mem, boot, ph)
	if err != nil {
		if vm.host.closed.Load() {
			return r, closedError() // Host.Close came first
		}
		return r, err
	}
	r.cpu = cpu
	r.cleanups = append(r.cleanups, func() { cpu.Close() })
	if !first && vm.from != nil {
		// A view of a Fresh pool's image: the guest booted there, and
		// its clock goes on from the image's.
		t := time.Now()
		tsc, err := vm.imageTSC()
		if err != nil {
			return r, err
		}
		if err := vm.host.be.restoreVCPU(cpu, vm.from.state, tsc); err != nil {
			return r, err
		}
		ph.Clock = time.Since(t)
		r.first = &vcpu.Exit{Kind: vcpu.ExitHypercall, Nr: hypercall.NrFnNext, Arg: vm.from.arg}
	} else if !first {
		t := time.Now()
		if tscHz == 0 {
			tscHz = vm.host.hostTSCHz()
		}
		boot, err := vm.host.be.guestTSC(cpu)
		if err != nil {
			return r, err
		}
		if err := vm.writeClock(tscHz, boot); err != nil {
			return r, err
		}
		ph.Clock = time.Since(t)
	}
	kick := cpu.Kick
	if vm.net != nil {
		// A guest blocked in poll is woken too, so it stops at once.
		w, err := vm.net.begin(r)
		if err != nil {
			return r, err
		}
		r.cleanups = append(r.cleanups, func() { w.Close() })
		kick = func() { cpu.Kick(); w.Wake() }
	}
	if vm.block != nil {
		vm.block.begin(r)
	}
	if vm.console != io.Discard {
		// So is a guest waiting for a stalled console.
		con, k := newConsoleSink(vm.console), kick
		con.onFail = consoleFailed
		r.con = con
		kick = func() { k(); con.wake() }
	}
	r.stats.Setup = time.Since(r.start)
	stop := context.AfterFunc(ctx, kick)
	r.cleanups = append(r.cleanups, func() { stop() })
	if !vm.host.track(r, kick) {
		return r, closedError() // Host.Close came first
	}
	r.cleanups = append(r.cleanups, func() { vm.host.untrack(r) })
	if vm.fn != nil {
		vm.fn.kick = kick
	}
	if vm.cfg.Ready != nil {
		t := time.Now()
		if err := vm.cfg.Ready(); err != nil {
			return r, err
		}
		ph.Ready = time.Since(t)
	}
	return r, nil
}

// finish ends a run that stopped with status and err: it delivers the
// console output left, fails the call in flight, if any, and releases the
// vCPU.
func (r *run) finish(status int, err error) (Result, error) {
	if con := r.con; con != nil {
		// The output goes out before Run returns, within the run's or
		// the call's deadline (a kick ends the flush). An instance that
		// ends before taking the call handed over has no kick armed, so
		// that call's deadline bounds the wait; one that fails a boot for
		// no call (Prewarm), that boot's context, since its output is
		// usually why; one retired, none.
		switch f := r.vm.fn; {
		case f == nil || f.cur != nil:
			con.flush()
		case f.next != nil:
			con.flushBy(f.next.deadline, f.next.ctx.Done())
		case f.boot != nil:
			con.flushUntil(nil, f.boot.Done()) // Done closes at its deadline too
		}
		r.stats.ConsoleDropped = con.end()
		if cerr := con.err(); cerr != nil && r.vm.cfg.ConsoleRequired {
			// Output was lost: that is the outcome, unless the guest's
			// own failure says more.
			var se *StoppedError
			if err == nil || errors.As(err, &se) && errors.As(se.Reason, new(*ConsoleError)) {
				status, err = 0, &ConsoleError{Err: cerr, Stopped: err != nil}
			}
		}
	}
	if r.vm.fn != nil {
		r.vm.fn.end(status, err)
	}
	for i := len(r.cleanups) - 1; i >= 0; i-- {
		r.cleanups[i]()
	}
	r.cleanups = nil
	return r.result(status), err
}

// Close releases the guest's memory. A Run under way is stopped first (it
// returns a StoppedError whose Reason is ErrVMClosed), and Close waits for
// it to return; so Close must not be called from the goroutine of Run
// (Config.Ready).
func (vm *VM) Close() error {
	vm.mu.Lock()
	if vm.closed {
		vm.mu.Unlock()
		return nil
	}
	vm.closed = true
	stop, done := vm.stopRun, vm.runDone
	vm.mu.Unlock()
	if stop != nil {
		stop(ErrVMClosed)
		<-done
	}
	return vm.mem.Close()
}

// Run loads and runs one guest on a host of its own, then releases
// everything: the one-call form of NewHost, Host.New, VM.Run and Close.
func Run(ctx context.Context, hc HostConfig, cfg Config) (Result, error) {
	h, err := NewHost(hc)
	if err != nil {
		return Result{}, err
	}
	defer h.Close()
	vm, err := h.New(cfg)
	if err != nil {
		return Result{}, err
	}
	defer vm.Close()
	return vm.Run(ctx)
}
