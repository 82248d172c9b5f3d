package monitor

import (
	"time"

	"github.com/tendervm/tender/monitor/guestmem"
	"github.com/tendervm/tender/monitor/process"
	"github.com/tendervm/tender/monitor/vcpu"
)

// processBackend runs each guest as a seccomp-confined process
// (BackendProcess).
type processBackend struct{ spawner *process.Spawner }

func openProcess() (backend, error) {
	sp, err := process.NewSpawner()
	if err != nil {
		return nil, err
	}
	return processBackend{sp}, nil
}

// newMemory maps shared memory: the guest process maps the same memfd.
func (b processBackend) newMemory(size uint64, _ bool) (*guestmem.Memory, error) {
	return guestmem.NewShared(size)
}

// newVCPU starts the guest process (Phases.VM); its TSC rate is the host's.
func (b processBackend) newVCPU(mem *guestmem.Memory, boot vcpu.Boot, ph *Phases) (vcpu.VCPU, uint64, error) {
	t := time.Now()
	v, err := process.New(b.spawner, mem, boot)
	if err != nil {
		return nil, 0, err
	}
	ph.VM = time.Since(t)
	return v, 0, nil
}

// lockThread: the guest is served through a notification descriptor,
// from any thread; its Kick kills the process.
func (b processBackend) lockThread() bool { return false }

// clockFirst: the process runs from its creation, on the host's TSC.
func (b processBackend) clockFirst() bool { return true }

// snapshot: resetting a guest process (its registers through ptrace, its
// memory) is not implemented.
func (b processBackend) snapshot(*guestmem.Memory, vcpu.VCPU) (func() error, any, error) {
	return nil, nil, ErrFreshUnsupported
}

func (b processBackend) viewMemory(int, uint64) (*guestmem.Memory, error) {
	return nil, ErrFreshUnsupported
}

func (b processBackend) restoreVCPU(vcpu.VCPU, any, uint64) error { return ErrFreshUnsupported }

func (b processBackend) resets() bool { return false }

func (b processBackend) close() error { return b.spawner.Close() }
