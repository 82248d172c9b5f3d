package monitor

import (
	"errors"
	"fmt"
	"io"
	"math/bits"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tendervm/tender/hypercall"
	"github.com/tendervm/tender/monitor/guestmem"
	"github.com/tendervm/tender/monitor/vcpu"
)

// ErrFreshUnsupported is returned (wrapped) by NewPool for a Fresh pool the
// host's backend or the guest cannot reset: the process backend on kernels
// before 6.7, which cannot tell which pages a guest process wrote, and
// guests that declare network or block devices, whose state lives outside
// guest memory. (No pool takes a Solo5 guest: ErrSolo5Pool.)
var ErrFreshUnsupported = errors.New("monitor: fresh instances need KVM or Linux 6.7, and a tender guest without devices")

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
	// image is the pool's shared snapshot, nil for none.
	image *freshImage
	// mem is the instance's memory once the snapshot is taken, which logs
	// the monitor's writes where the backend needs them (guestmem.Keep).
	mem *guestmem.Memory
}

// freshImage is the snapshot a Fresh pool's instances share: the memfd of
// the first instance that took its snapshot, and its vCPU state. Instances
// started after that map the memfd privately (sharing its pages) and start
// from that state instead of booting.
type freshImage struct {
	mu    sync.Mutex
	fd    int // -1 until an instance offers its snapshot
	start imageStart
	// shared is the image of a backend that shares it otherwise
	// (snapshotSharer), nil until an instance makes it, and sharedArg and
	// sharedArgv the first fn_next it was taken at, which an instance
	// must have reached with the same argument to share it.
	shared     io.Closer
	sharedArg  uint64
	sharedArgv hypercall.FnNext
	closed     bool
}

// snapshotSharer is a backend whose Fresh instances share their pool's
// snapshot without mapping an image memfd (the process backend, whose
// guest memory stays shared with the guest process).
type snapshotSharer interface {
	// snapshotShared is snapshot for an instance of a pool whose image is
	// image, or nil for none yet: the instance is put into image's state
	// and restores to it, or, when it did not reach the same state, makes
	// a snapshot of its own and returns it as mine, for the pool to keep
	// as its image or to close.
	snapshotShared(mem *guestmem.Memory, cpu vcpu.VCPU, image io.Closer) (restore func() error, mine io.Closer, err error)
}

// share takes the snapshot of an instance of a snapshotSharer backend,
// parked at its first fn_next (argument at arg, argv), from the pool's
// image where the instance reached the same fn_next; the first instance's
// becomes the image.
func (im *freshImage) share(sh snapshotSharer, mem *guestmem.Memory, cpu vcpu.VCPU, arg uint64, argv hypercall.FnNext) (func() error, error) {
	im.mu.Lock()
	defer im.mu.Unlock()
	var image io.Closer
	if im.shared != nil && im.sharedArg == arg && im.sharedArgv == argv {
		image = im.shared
	}
	restore, mine, err := sh.snapshotShared(mem, cpu, image)
	if err != nil {
		return nil, err
	}
	if mine != nil {
		if im.shared == nil && !im.closed {
			im.shared, im.sharedArg, im.sharedArgv = mine, arg, argv
		} else {
			mine.Close() // the instance's memory keeps its own reference
		}
	}
	return restore, nil
}

// imageStart is how an instance starts from a Fresh pool's image: its vCPU
// in state, parked at the fn_next hypercall whose argument is at arg (the
// first exit, which its run takes without entering the guest).
type imageStart struct {
	state any
	arg   uint64
}

func newFreshImage() *freshImage { return &freshImage{fd: -1} }

// get returns the image's memfd and how to start from it, or -1 while it
// has none.
func (im *freshImage) get() (int, imageStart) {
	im.mu.Lock()
	defer im.mu.Unlock()
	return im.fd, im.start
}

// offer makes the snapshot of mem (just frozen) and start the image, if it
// has none yet and is not closed: it takes mem's memfd. Once the image is
// closed nothing would close it; mem keeps it and closes it.
func (im *freshImage) offer(mem *guestmem.Memory, start imageStart) {
	im.mu.Lock()
	defer im.mu.Unlock()
	if im.fd < 0 && !im.closed {
		im.fd, im.start = mem.TakeFD(), start
	}
}

// close releases the memfd and the shared image; views mapped from it,
// and instances that share it, keep their pages.
func (im *freshImage) close() {
	im.mu.Lock()
	defer im.mu.Unlock()
	if im.fd >= 0 {
		unix.Close(im.fd)
		im.fd = -1
	}
	if im.shared != nil {
		im.shared.Close()
		im.shared = nil
	}
	im.closed = true
}

// snapshot records the instance at its first fn_next (its argument at arg),
// before it takes a call: the state every call of a Fresh instance starts
// from, and, for the first instance of its pool, the pool's image.
func (r *run) snapshot(f *fnState, arg uint64) error {
	var (
		restore func() error
		state   any
		err     error
	)
	if sh, ok := r.vm.host.be.(snapshotSharer); ok && f.fresh.image != nil {
		restore, err = f.fresh.image.share(sh, r.vm.mem, r.cpu, arg, f.argv)
	} else {
		restore, state, err = r.vm.host.be.snapshot(r.vm.mem, r.cpu)
	}
	if err != nil {
		return err
	}
	if im := f.fresh.image; im != nil && r.vm.mem.FD() >= 0 {
		im.offer(r.vm.mem, imageStart{state: state, arg: arg})
	}
	f.fresh.restore, f.fresh.mem = restore, r.vm.mem
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

// imageTSC is the TSC a vCPU started from a Fresh pool's image (in vm.mem)
// takes, for the guest's clock to go on: the TSC its boot info gives for
// the boot's wall-clock time, plus the image's TSC rate times the time
// since.
func (vm *VM) imageTSC() (uint64, error) {
	var clock [3]uint64 // TSCHz, BootTSC, BootWalltime
	for i := range clock {
		v, err := vm.mem.Uint64(bootTSCHzAddr + uint64(8*i))
		if err != nil {
			return 0, err
		}
		clock[i] = v
	}
	hz, boot, wall := clock[0], clock[1], clock[2]
	ns := uint64(max(time.Now().UnixNano()-int64(wall), 0))
	hi, lo := bits.Mul64(ns, hz)
	if hi >= 1e9 {
		return 0, fmt.Errorf("monitor: a TSC of %d Hz over %d ns overflows", hz, ns)
	}
	tsc, _ := bits.Div64(hi, lo, 1e9)
	return boot + tsc, nil
}
