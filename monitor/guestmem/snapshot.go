package guestmem

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/tendervm/tender/monitor/vcpu"
)

// Freeze makes the memory's present contents its snapshot, for Revert. The
// memory must be shared (NewShared): the memfd keeps the snapshot, and the
// mapping becomes a private copy-on-write view of it at the same address,
// so slices and a hypervisor's registration of HostAddr stay valid (KVM
// follows the change through its MMU notifier). Writes after Freeze reach
// only private copies of the pages written. Freezing twice fails.
//
// With pm (nil for none), Revert drops only the pages written since.
func (m *Memory) Freeze(pm *Pagemap) error {
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
	return m.track(pm)
}

// track lets Revert find the pages written (pm, when not nil) and copy the
// snapshot back into them.
func (m *Memory) track(pm *Pagemap) error {
	if pm == nil {
		return nil
	}
	// A read-only view of the snapshot, to copy pages back from.
	snap, err := unix.Mmap(m.fd, 0, len(m.buf), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("guestmem: map the snapshot: %w", err)
	}
	m.pagemap, m.regions, m.snap = pm, make([]pageRegion, 32), snap
	return nil
}

// NewView maps size bytes of guest memory as a private copy-on-write view of
// the memfd fd, which holds a snapshot another Memory took (Freeze, FD): the
// memory starts frozen, reads as that snapshot, and shares its pages with
// every other view until it writes them. It needs fd only while it maps
// (its mappings keep the memfd alive), and FD is -1. pm is as for Freeze.
func NewView(fd int, size uint64, pm *Pagemap) (*Memory, error) {
	buf, err := unix.Mmap(fd, 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_NORESERVE)
	if err != nil {
		return nil, fmt.Errorf("guestmem: map the snapshot privately: %w", err)
	}
	m := &Memory{buf: buf, fd: fd, frozen: true}
	err = m.track(pm)
	m.fd = -1
	if err != nil {
		m.Close()
		return nil, err
	}
	return m, nil
}

// TakeFD hands the memfd of frozen memory over to the caller, who closes it
// (for views of the snapshot, NewView); the memory goes on without it.
func (m *Memory) TakeFD() int {
	fd := m.fd
	if !m.frozen {
		return -1
	}
	m.fd = -1
	return fd
}

// Frozen says the memory is a private view of its snapshot (Freeze, NewView).
func (m *Memory) Frozen() bool { return m.frozen }

// CopyBackPages is the most private pages Revert copies the snapshot back
// into rather than drops: copying a few pages is cheaper than dropping them
// (which unmaps them from every CPU and KVM, and makes the next request
// fault them in again), and costs as much each time as the pages kept.
const CopyBackPages = 16

// Revert puts every page written since Freeze back to the snapshot, so that
// the whole memory reads as the snapshot again. With a Pagemap it looks
// only between the lowest and the highest page the layout lets the guest
// write (SetLayout; the whole memory without one): nothing else may change
// after Freeze (WrittenOutside). Without a Pagemap it drops
// the whole mapping: MADV_DONTNEED on a private file mapping frees the
// private copies, and the next access maps the memfd's page. With one, it
// finds the private copies and, if they are no more than CopyBackPages,
// copies the snapshot over them and keeps them; else it drops only them.
// Pages only read stay mapped either way. Its cost grows with the pages
// written since Freeze, not with the memory's size.
func (m *Memory) Revert() error {
	if !m.frozen {
		return errors.New("guestmem: memory not frozen")
	}
	if m.pagemap == nil {
		return m.drop(m.HostAddr(), m.HostAddr()+uintptr(len(m.buf)))
	}
	start, end := m.writable()
	n, walked, err := m.pagemap.scan(start, end, m.regions)
	if err != nil {
		return err
	}
	if n < len(m.regions) || walked >= end {
		pages := uintptr(0)
		for _, r := range m.regions[:n] {
			pages += uintptr(r.end-r.start) / pageSize
		}
		if pages <= CopyBackPages {
			for _, r := range m.regions[:n] {
				lo, hi := uintptr(r.start)-m.HostAddr(), uintptr(r.end)-m.HostAddr()
				copy(m.buf[lo:hi], m.snap[lo:hi])
			}
			return nil
		}
	}
	for start < end {
		for _, r := range m.regions[:n] {
			if err := m.drop(uintptr(r.start), uintptr(r.end)); err != nil {
				return err
			}
		}
		if n < len(m.regions) || walked <= start {
			return nil
		}
		start = walked
		if n, walked, err = m.pagemap.scan(start, end, m.regions); err != nil {
			return err
		}
	}
	return nil
}

// writable is the host range [start, end) that covers every page the
// layout lets the guest write (SetLayout), the only part of the memory
// Revert looks at: the guest's page tables let it write nowhere else, and
// after Freeze the monitor writes only where the guest may (Guest). The
// scan walks every entry of each page table it meets, and below lie the
// monitor's tables and the image's code, read on every request: left out,
// the scan of a fresh reset of fn_echo took 3.8 µs instead of 4.4 on a
// kvm_pvm host.
// Without a writable region: the whole memory.
func (m *Memory) writable() (start, end uintptr) {
	lo, hi := uint64(len(m.buf)), uint64(0)
	for _, r := range m.layout {
		if r.Perm&vcpu.Write != 0 {
			lo, hi = min(lo, r.Addr), max(hi, r.Addr+r.Size)
		}
	}
	if lo >= hi {
		lo, hi = 0, uint64(len(m.buf))
	}
	return m.HostAddr() + uintptr(lo), m.HostAddr() + uintptr(hi)
}

// WrittenOutside counts the pages written since Freeze that lie outside
// the part of the memory Revert looks at (writable): a reset would leave
// them as they are. It scans the whole memory; tests check that it stays
// 0 for real guests.
func (m *Memory) WrittenOutside() (int, error) {
	if !m.frozen || m.pagemap == nil {
		return 0, errors.New("guestmem: memory not frozen with a Pagemap")
	}
	lo, hi := m.writable()
	count := 0
	start, end := m.HostAddr(), m.HostAddr()+uintptr(len(m.buf))
	vec := make([]pageRegion, 64)
	for start < end {
		n, walked, err := m.pagemap.scan(start, end, vec)
		if err != nil {
			return 0, err
		}
		for _, r := range vec[:n] {
			below := min(uintptr(r.end), lo) - min(uintptr(r.start), lo)
			above := max(uintptr(r.end), hi) - max(uintptr(r.start), hi)
			count += int((below + above) / pageSize)
		}
		if n < len(vec) || walked <= start {
			break
		}
		start = walked
	}
	return count, nil
}

// drop frees the private copies in the host range [start, end) of the
// mapping.
func (m *Memory) drop(start, end uintptr) error {
	lo := start - m.HostAddr()
	if err := unix.Madvise(m.buf[lo:lo+(end-start)], unix.MADV_DONTNEED); err != nil {
		return fmt.Errorf("guestmem: drop the pages written since the snapshot: %w", err)
	}
	return nil
}
