package monitor

import (
	"fmt"
	"io"
	"time"

	"github.com/tendervm/tender/monitor/guestmem"
	"github.com/tendervm/tender/monitor/process"
	"github.com/tendervm/tender/monitor/tsc"
	"github.com/tendervm/tender/monitor/vcpu"
)

// processBackend runs each guest as a seccomp-confined process
// (BackendProcess).
type processBackend struct {
	spawner *process.Spawner
	// tracks: the kernel can track a guest process's writes, which Fresh
	// instances need (process.CanTrack).
	tracks bool
}

func openProcess() (backend, error) {
	sp, err := process.NewSpawner()
	if err != nil {
		return nil, err
	}
	return processBackend{sp, process.CanTrack() == nil}, nil
}

// newMemory maps shared memory: the guest process maps the same memfd.
func (b processBackend) newMemory(size uint64, _ bool) (*guestmem.Memory, error) {
	return guestmem.NewShared(size)
}

// newVCPU starts the guest process (Phases.VM); its TSC rate is the host's.
// A guest to be snapshot has its writes tracked.
func (b processBackend) newVCPU(mem *guestmem.Memory, boot vcpu.Boot, ph *Phases) (vcpu.VCPU, uint64, error) {
	t := time.Now()
	start := process.New
	if boot.Snapshot {
		start = process.NewFresh
	}
	v, err := start(b.spawner, mem, boot)
	if err != nil {
		return nil, 0, err
	}
	ph.VM = time.Since(t)
	return v, 0, nil
}

// lockThread: the guest is served through a notification descriptor,
// from any thread; its Kick kills the process.
func (b processBackend) lockThread() bool { return false }

// guestAside: the guest process runs while its caller waits for its
// next notification.
func (b processBackend) guestAside() bool { return true }

// clockFirst: the process runs from its creation, on the host's TSC.
func (b processBackend) clockFirst() bool { return true }

// snapshot records the guest process's registers (its signal frame) and
// keeps a copy of guest memory (guestmem.Keep), which the guest process
// shares and goes on writing; restore puts back the pages the process wrote
// since (as its page tables tell) and those the monitor wrote on its behalf
// (as guestmem's log tells), and the registers. Instances of a Fresh pool
// share one such snapshot (snapshotShared).
func (b processBackend) snapshot(mem *guestmem.Memory, cpu vcpu.VCPU) (func() error, any, error) {
	restore, mine, err := b.snapshotShared(mem, cpu, nil)
	if err != nil {
		return nil, nil, err
	}
	mine.Close() // mem keeps its own reference
	return restore, nil, nil
}

// processImage is the snapshot the instances of a Fresh pool share on the
// process backend: one copy of guest memory and one signal stack, the
// first instance's, which every instance resets to.
type processImage struct {
	mem   *guestmem.Kept
	state *process.State
}

func (im *processImage) Close() error { return im.mem.Close() }

// snapshotShared: an instance that reached the image's hypercall with its
// frame in the same place takes the image's registers (process.Adopt) and
// memory (guestmem.KeepFrom: its pages that differ are overwritten, those
// the image lacks cleared) and restores to them; it keeps no copy of its own.
// It boots all the same, as a guest process cannot start from another's
// memory: only the snapshot is shared.
func (b processBackend) snapshotShared(mem *guestmem.Memory, cpu vcpu.VCPU, image io.Closer) (func() error, io.Closer, error) {
	v, ok := cpu.(*process.VCPU)
	if !ok {
		return nil, nil, fmt.Errorf("%w: not a guest process", ErrFreshUnsupported)
	}
	st, err := v.Snapshot()
	if err != nil {
		return nil, nil, err
	}
	restore := func(st *process.State) func() error {
		return func() error {
			if err := v.Reset(st, mem.PutBack); err != nil {
				return err
			}
			return mem.PutBackNoted()
		}
	}
	if im, ok := image.(*processImage); ok {
		same, err := v.Adopt(st, im.state)
		if err != nil {
			return nil, nil, err
		}
		if same {
			if err := mem.KeepFrom(im.mem); err != nil {
				return nil, nil, err
			}
			return restore(im.state), nil, nil
		}
	}
	k, err := mem.Keep()
	if err != nil {
		return nil, nil, err
	}
	return restore(st), &processImage{k, st}, nil
}

// viewMemory: a guest process cannot start from another's snapshot (its
// memory is not frozen, so its pool has no image).
func (b processBackend) viewMemory(int, uint64) (*guestmem.Memory, error) {
	return nil, ErrFreshUnsupported
}

func (b processBackend) restoreVCPU(vcpu.VCPU, any, uint64) error { return ErrFreshUnsupported }

// resets: where the kernel tracks a process's writes (Linux 6.7).
func (b processBackend) resets() bool { return b.tracks }

// guestTSC: the guest process runs on the host's TSC (clockFirst).
func (b processBackend) guestTSC(vcpu.VCPU) (uint64, error) { return tsc.Read(), nil }

func (b processBackend) settle() {}

func (b processBackend) close() error { return b.spawner.Close() }
