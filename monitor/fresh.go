package monitor

import (
	"errors"
	"time"

	"github.com/tendervm/tender/hypercall"
)

// ErrFreshUnsupported is returned (wrapped) by NewPool for a Fresh pool the
// host's backend or the guest cannot reset: the process backend, and guests
// that declare network or block devices, whose state lives outside guest
// memory.
var ErrFreshUnsupported = errors.New("monitor: fresh instances need the KVM backend and a guest without devices")

// freshState is what a Fresh instance keeps to go back to the state its
// guest had at its first fn_next.
type freshState struct {
	// restore puts guest memory and vCPU back into the snapshot; nil until
	// the snapshot is taken.
	restore func() error
	// The fn_next the guest was parked in at the snapshot, which every
	// request after a reset is handed through.
	reqBuf, args []byte
	argv         hypercall.FnNext
	// resetAt is fnState.served when the instance was last reset (or
	// snapshot): a reset is due when a call was served since.
	resetAt int
	// onReset, when set, sees the time of each reset, for metrics.
	onReset func(time.Duration)
}

// snapshot records the instance at its first fn_next, before it takes a
// call: the state every call of a Fresh instance starts from.
func (r *run) snapshot(f *fnState) error {
	restore, err := r.vm.host.be.snapshot(r.vm.mem, r.cpu)
	if err != nil {
		return err
	}
	f.fresh.restore = restore
	f.fresh.reqBuf, f.fresh.args, f.fresh.argv = f.reqBuf, f.args, f.argv
	f.fresh.resetAt = f.served
	return nil
}

// reset puts a parked Fresh instance back into its snapshot if it served a
// call since it was last there.
func (f *fnState) reset() error {
	s := f.fresh
	if s == nil || s.restore == nil || s.resetAt == f.served {
		return nil
	}
	t := time.Now()
	if err := s.restore(); err != nil {
		return err
	}
	f.reqBuf, f.args, f.argv = s.reqBuf, s.args, s.argv
	s.resetAt = f.served
	if s.onReset != nil {
		s.onReset(time.Since(t))
	}
	return nil
}
