package monitor

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tendervm/tender/monitor/tsc"
)

// Backend selects how guests are run.
type Backend string

// Backends.
const (
	// BackendKVM runs each guest in a KVM virtual machine.
	BackendKVM Backend = "kvm"
	// BackendProcess runs each guest as a traced, seccomp-confined process.
	BackendProcess Backend = "process"
	// BackendAuto is BackendKVM where KVM can be used, else BackendProcess.
	BackendAuto Backend = "auto"
)

// HostConfig configures a Host. The zero value uses KVM at /dev/kvm.
type HostConfig struct {
	// Backend is BackendKVM when empty.
	Backend Backend
	// Device is the KVM device node, kvm.DefaultDevice when empty.
	Device string
	// CPUIDCache, when set, is a file in which the KVM backend keeps the
	// host's supported CPUID between processes, which saves each process
	// the ~0.3 ms of CPU that asking KVM costs on nested hosts (see
	// kvm.Config). Empty: KVM is asked every time.
	CPUIDCache string
}

// Host is a connection to the hypervisor that creates VMs. It is safe for
// concurrent use. Close it after every VM created from it.
type Host struct {
	backend Backend
	be      backend // what running a guest takes (backend.go)
	// runs holds the kick of every run begun and not finished (which
	// also wakes a guest waiting on its console or in poll): Close kicks
	// them all before it returns. closed is set under runsMu.
	runsMu    sync.Mutex
	runs      map[*run]func()
	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error

	// tscHz is the host TSC frequency, measured once for backends that
	// cannot report the guest's, from tscMark (taken by NewHost, or on
	// first use) to its first use.
	tscMu   sync.Mutex
	tscMark tsc.Mark
	tscHz   uint64
}

// NewHost opens the hypervisor. With BackendKVM it fails, wrapping
// kvm.ErrUnavailable, where KVM cannot be used.
func NewHost(cfg HostConfig) (*Host, error) {
	// Marked before the backend opens, so that its opening (the process
	// backend's stub and spawner thread, ~150 µs) is part of the window.
	mark := tsc.Now()
	h := &Host{backend: cfg.Backend}
	h.runs = map[*run]func(){}
	var err error
	switch cfg.Backend {
	case "", BackendKVM, BackendAuto:
		h.be, err = openKVM(cfg.Device, cfg.CPUIDCache)
		if err == nil || cfg.Backend != BackendAuto {
			if err != nil {
				return nil, err
			}
			h.backend = BackendKVM
			break
		}
		h.backend = BackendProcess
		fallthrough
	case BackendProcess:
		if h.be, err = openProcess(); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("monitor: unknown backend %q (want %q, %q or %q)", cfg.Backend, BackendKVM, BackendProcess, BackendAuto)
	}
	if h.be.clockFirst() {
		// Every guest needs the host's rate: measure it over the time
		// the first one takes to load and start.
		h.tscMark = mark
	}
	return h, nil
}

// Backend reports which backend the host runs guests with (never
// BackendAuto).
func (h *Host) Backend() Backend { return h.backend }

// GuestsAside reports whether a guest computes outside the Go scheduler's
// processors: on the process backend the goroutine that runs a guest sleeps
// in a system call while the guest process computes, yet Go counts that
// goroutine's P as busy until its monitor thread takes it (20 µs to 10 ms).
// A program that runs many guests at once should then give Go more Ps than
// CPUs, or the Go work around the guests stalls while they run; tender serve
// doubles GOMAXPROCS (docs/performance.md, "HTTP front"). Under KVM the
// goroutine's own thread runs the guest.
func (h *Host) GuestsAside() bool { return h.be.guestAside() }

// Settle waits for the set-up NewHost left running in the background
// (under KVM, reading the CPU features it supports). A process that
// confines itself with a seccomp filter after NewHost calls it first, so
// that nothing of that set-up meets the filter (confine.ForHost does).
func (h *Host) Settle() { h.be.settle() }

// Close releases the hypervisor connection. Guests of the host's that are
// still running are stopped: their Run (or their pool's Invoke) returns a
// StoppedError whose Reason is ErrHostClosed, as do Host.New, NewPool and
// a pool's next boot from then on. Close it after its VMs and pools; it may
// be called more than once, concurrently too.
func (h *Host) Close() error {
	h.closeOnce.Do(func() { // a concurrent Close waits for the first
		h.runsMu.Lock()
		h.closed.Store(true)
		kicks := make([]func(), 0, len(h.runs))
		for _, k := range h.runs {
			kicks = append(kicks, k)
		}
		h.runsMu.Unlock()
		for _, k := range kicks {
			k()
		}
		h.closeErr = h.be.close()
	})
	return h.closeErr
}

// ErrHostClosed is why a guest of a closed Host stopped, or was not
// created.
var ErrHostClosed = errors.New("monitor: host closed")

// track adds a run's kick to those Close calls; false once Close has begun.
func (h *Host) track(r *run, kick func()) bool {
	h.runsMu.Lock()
	defer h.runsMu.Unlock()
	if h.closed.Load() {
		return false
	}
	h.runs[r] = kick
	return true
}

// untrack drops a finished run.
func (h *Host) untrack(r *run) {
	h.runsMu.Lock()
	delete(h.runs, r)
	h.runsMu.Unlock()
}

// closedError is the error of what a closed host cannot do or stopped.
func closedError() error {
	return &StoppedError{Cause: context.Canceled, Reason: ErrHostClosed}
}

// tscWindow is the shortest time the host TSC is measured over: about 0.02%
// against the monotonic clock.
const tscWindow = 500 * time.Microsecond

// hostTSCHz returns the host TSC frequency, for a backend that could not
// report the guest's (the process backend; KVM without KVM_GET_TSC_KHZ):
// measured on first use from the mark NewHost took, after waiting out what
// is left of tscWindow (asleep, not spinning).
func (h *Host) hostTSCHz() uint64 {
	h.tscMu.Lock()
	defer h.tscMu.Unlock()
	if h.tscHz == 0 {
		if h.tscMark == (tsc.Mark{}) {
			h.tscMark = tsc.Now()
		}
		h.tscHz = h.tscMark.Hz(tscWindow)
	}
	return h.tscHz
}
