package monitor

import (
	"github.com/tendervm/tender/monitor/guestmem"
	"github.com/tendervm/tender/monitor/vcpu"
)

// backend is what differs between the ways of running a guest, stated as
// capabilities the rest of the package asks for rather than a kind it
// switches on. backend_kvm.go and backend_process.go implement it.
type backend interface {
	// newMemory maps fresh guest memory of size bytes that the backend's
	// vCPUs can run a guest in; snap asks for memory that snapshot can
	// freeze (Fresh instances).
	newMemory(size uint64, snap bool) (*guestmem.Memory, error)
	// newVCPU creates the vCPU of the guest loaded into mem. tscHz is the
	// guest's TSC rate where the backend knows it, else 0. It records the
	// time of its phases in ph.
	newVCPU(mem *guestmem.Memory, boot vcpu.Boot, ph *Phases) (cpu vcpu.VCPU, tscHz uint64, err error)
	// lockThread says the goroutine that runs the vCPU must stay on its OS
	// thread while it does (for one Run, or one call of a pool instance):
	// the backend's Kick signals the thread that entered the vCPU last.
	lockThread() bool
	// guestAside says a guest computes on a CPU of its own while the
	// goroutine running it sleeps in a system call, holding its P
	// (Host.GuestsAside); otherwise that goroutine's thread runs the guest.
	guestAside() bool
	// clockFirst says the guest starts running on the host's TSC as soon as
	// its vCPU exists, so its clock is written before, from the host's TSC;
	// otherwise after, from the vCPU's TSC rate, its TSC counting from 0.
	clockFirst() bool
	// snapshot records the state of a guest parked at a hypercall exit,
	// its memory and vCPU, and returns what puts them back into that state;
	// an error wrapping ErrFreshUnsupported where the backend cannot.
	// state is the vCPU's part, for restoreVCPU.
	snapshot(mem *guestmem.Memory, cpu vcpu.VCPU) (restore func() error, state any, err error)
	// viewMemory maps guest memory of size bytes as a private view of the
	// snapshot another instance's memory froze, whose memfd fd is.
	viewMemory(fd int, size uint64) (*guestmem.Memory, error)
	// restoreVCPU puts a vCPU that never ran into the state snapshot
	// recorded of another one, with its TSC at tsc.
	restoreVCPU(cpu vcpu.VCPU, state any, tsc uint64) error
	// resets says snapshot works.
	resets() bool
	// guestTSC reads the TSC of a vCPU that does not run on the host's
	// (clockFirst false): what its guest's clock counts from.
	guestTSC(cpu vcpu.VCPU) (uint64, error)
	// settle waits for the work the backend started in the background
	// when it opened.
	settle()
	// close releases the backend; guests still running are killed.
	close() error
}
