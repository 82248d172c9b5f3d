package monitor

import (
	"fmt"

	"github.com/tendervm/tender/monitor/guestmem"
	"github.com/tendervm/tender/monitor/kvm"
	"github.com/tendervm/tender/monitor/vcpu"
)

// kvmBackend runs each guest in a KVM virtual machine (BackendKVM).
type kvmBackend struct {
	sys *kvm.System
	// pm finds the pages a fresh instance's request wrote; nil where the
	// kernel cannot scan its pagemap, and the whole memory is dropped.
	pm *guestmem.Pagemap
}

// openKVM opens the KVM device (kvm.DefaultDevice when empty) with the
// CPUID cache file cpuidCache (none when empty); the error wraps
// kvm.ErrUnavailable where KVM cannot be used.
func openKVM(device, cpuidCache string) (backend, error) {
	sys, err := kvm.OpenConfig(kvm.Config{Device: device, CPUIDCache: cpuidCache})
	if err != nil {
		return nil, err
	}
	// Opened now, before a seccomp filter forbids open. Without it fresh
	// instances still work, at the cost the drop of all their pages has.
	pm, _ := guestmem.OpenPagemap()
	return kvmBackend{sys, pm}, nil
}

// newMemory maps private memory: KVM maps it into the VM itself. Memory to
// be snapshot is a memfd's, which keeps the snapshot (guestmem.Freeze).
func (b kvmBackend) newMemory(size uint64, snap bool) (*guestmem.Memory, error) {
	if snap {
		return guestmem.NewShared(size)
	}
	return guestmem.New(size)
}

// snapshot freezes the memory (a private view of the memfd from now on;
// a view already is) and records the vCPU's registers; restore puts the
// pages written since back and sets the registers back.
func (b kvmBackend) snapshot(mem *guestmem.Memory, cpu vcpu.VCPU) (func() error, any, error) {
	v, ok := cpu.(*kvm.VCPU)
	if !ok {
		return nil, nil, fmt.Errorf("%w: not a KVM vCPU", ErrFreshUnsupported)
	}
	st := new(kvm.State)
	if err := v.Snapshot(st); err != nil {
		return nil, nil, err
	}
	if !mem.Frozen() {
		if err := mem.Freeze(b.pm); err != nil {
			return nil, nil, err
		}
	}
	return func() error {
		if err := mem.Revert(); err != nil {
			return err
		}
		return v.Restore(st)
	}, st, nil
}

func (b kvmBackend) viewMemory(fd int, size uint64) (*guestmem.Memory, error) {
	return guestmem.NewView(fd, size, b.pm)
}

func (b kvmBackend) restoreVCPU(cpu vcpu.VCPU, state any, tsc uint64) error {
	v, ok := cpu.(*kvm.VCPU)
	st, ok2 := state.(*kvm.State)
	if !ok || !ok2 {
		return fmt.Errorf("%w: not a KVM vCPU and state", ErrFreshUnsupported)
	}
	if err := v.SetTSC(tsc); err != nil {
		return err
	}
	return v.Restore(st)
}

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

// guestAside: the thread in KVM_RUN runs the guest.
func (b kvmBackend) guestAside() bool { return false }

// clockFirst: a KVM vCPU runs only when entered, with its own TSC.
func (b kvmBackend) clockFirst() bool { return false }

func (b kvmBackend) resets() bool { return true }

// guestTSC: a new vCPU's TSC counts from 0 on most hosts, but is the host's
// on kvm_pvm; reading it serves both.
func (b kvmBackend) guestTSC(cpu vcpu.VCPU) (uint64, error) {
	v, ok := cpu.(*kvm.VCPU)
	if !ok {
		return 0, fmt.Errorf("monitor: not a KVM vCPU")
	}
	return v.TSC()
}

// settle waits for the supported CPUID, which Open reads in the
// background.
func (b kvmBackend) settle() { b.sys.Settle() }

func (b kvmBackend) close() error {
	if b.pm != nil {
		b.pm.Close()
	}
	return b.sys.Close()
}
