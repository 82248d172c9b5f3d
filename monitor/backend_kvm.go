package monitor

import (
	"github.com/tendervm/tender/monitor/guestmem"
	"github.com/tendervm/tender/monitor/kvm"
	"github.com/tendervm/tender/monitor/vcpu"
)

// kvmBackend runs each guest in a KVM virtual machine (BackendKVM).
type kvmBackend struct{ sys *kvm.System }

// openKVM opens the KVM device (kvm.DefaultDevice when empty); the error
// wraps kvm.ErrUnavailable where KVM cannot be used.
func openKVM(device string) (backend, error) {
	sys, err := kvm.Open(device)
	if err != nil {
		return nil, err
	}
	return kvmBackend{sys}, nil
}

// newMemory maps private memory: KVM maps it into the VM itself.
func (b kvmBackend) newMemory(size uint64) (*guestmem.Memory, error) { return guestmem.New(size) }

func (b kvmBackend) newVCPU(mem *guestmem.Memory, boot vcpu.Boot, ph *Phases) (vcpu.VCPU, uint64, error) {
	v, err := b.sys.NewVCPU(mem, boot)
	if err != nil {
		return nil, 0, err
	}
	t := v.Timing()
	ph.Tables, ph.VM, ph.VCPU, ph.State = t.Tables, t.VM, t.VCPU, t.State
	return v, v.TSCHz(), nil
}

// lockThread: Kick signals the thread in KVM_RUN, which must not change
// while a run or call is under way. Between calls it may (see
// docs/architecture.md, "Which thread runs a KVM vCPU").
func (b kvmBackend) lockThread() bool { return true }

// clockFirst: a KVM vCPU runs only when entered, with its own TSC.
func (b kvmBackend) clockFirst() bool { return false }

func (b kvmBackend) close() error { return b.sys.Close() }
