package guestmem

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// Freeze makes the memory's present contents its snapshot, for Revert. The
// memory must be shared (NewShared): the memfd keeps the snapshot, and the
// mapping becomes a private copy-on-write view of it at the same address,
// so slices and a hypervisor's registration of HostAddr stay valid (KVM
// follows the change through its MMU notifier). Writes after Freeze reach
// only private copies of the pages written. Freezing twice fails.
func (m *Memory) Freeze() error {
	if m.fd < 0 {
		return errors.New("guestmem: only shared memory can be frozen")
	}
	if m.frozen {
		return errors.New("guestmem: memory already frozen")
	}
	_, _, errno := unix.Syscall6(unix.SYS_MMAP, m.HostAddr(), uintptr(len(m.buf)),
		unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_FIXED|unix.MAP_NORESERVE, uintptr(m.fd), 0)
	if errno != 0 {
		// MAP_FIXED failing leaves the old mapping or none: in either
		// case the memory cannot be trusted as a snapshot any more.
		return fmt.Errorf("guestmem: map the snapshot privately: %w", errno)
	}
	m.frozen = true
	return nil
}

// Revert drops every page written since Freeze, so that the whole memory
// reads as the snapshot again: MADV_DONTNEED on a private file mapping frees
// the private copies, and the next access maps the memfd's page. Its cost
// grows with the pages mapped since, not with the memory's size.
func (m *Memory) Revert() error {
	if !m.frozen {
		return errors.New("guestmem: memory not frozen")
	}
	if err := unix.Madvise(m.buf, unix.MADV_DONTNEED); err != nil {
		return fmt.Errorf("guestmem: drop the pages written since the snapshot: %w", err)
	}
	return nil
}
