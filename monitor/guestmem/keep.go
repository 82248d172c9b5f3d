package guestmem

import (
	"errors"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Keep copies the present contents of shared memory (NewShared) aside as
// its snapshot, for memory that another process goes on writing through the
// memfd (the process backend's guest), which Freeze cannot make private.
// Only the memfd's allocated pages are copied (SEEK_DATA); the copy is
// anonymous memory that reads as zero elsewhere. After Keep, PutBack copies
// the snapshot back into a range, and Note logs what the monitor writes on
// the guest's behalf, which the guest process's page tables do not show.
func (m *Memory) Keep() error {
	if m.fd < 0 || m.frozen || m.snap != nil {
		return errors.New("guestmem: only shared memory without a snapshot can be kept")
	}
	snap, err := unix.Mmap(-1, 0, len(m.buf), unix.PROT_READ|unix.PROT_WRITE,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return fmt.Errorf("guestmem: map the snapshot: %w", err)
	}
	for off := int64(0); off < int64(len(m.buf)); {
		data, err := unix.Seek(m.fd, off, unix.SEEK_DATA)
		if err == unix.ENXIO {
			break // no data after off
		}
		if err != nil {
			unix.Munmap(snap)
			return fmt.Errorf("guestmem: find the memory's pages: %w", err)
		}
		hole, err := unix.Seek(m.fd, data, unix.SEEK_HOLE)
		if err != nil {
			unix.Munmap(snap)
			return fmt.Errorf("guestmem: find the memory's pages: %w", err)
		}
		hole = min(hole, int64(len(m.buf)))
		copy(snap[data:hole], m.buf[data:hole])
		off = hole
	}
	m.snap, m.kept = snap, true
	return nil
}

// PutBack copies the snapshot Keep took back into [addr, addr+n).
func (m *Memory) PutBack(addr, n uint64) error {
	if !m.kept {
		return errors.New("guestmem: no snapshot kept")
	}
	b, err := m.Slice(addr, n)
	if err != nil {
		return err
	}
	copy(b, m.snap[addr:addr+n])
	return nil
}

// Note logs that the monitor writes b, a slice of the memory, on the
// guest's behalf, for PutBackNoted. It does nothing unless Keep took a
// snapshot.
func (m *Memory) Note(b []byte) {
	if !m.kept || len(b) == 0 {
		return
	}
	off := uintptr(unsafe.Pointer(unsafe.SliceData(b))) - m.HostAddr()
	if off >= uintptr(len(m.buf)) || uintptr(len(b)) > uintptr(len(m.buf))-off {
		return // not a slice of this memory: nothing of it to put back
	}
	r := [2]uint64{uint64(off), uint64(len(b))}
	// A guest that makes the same hypercall many times in one request
	// names the same structure each time: log it once.
	for _, n := range m.noted[max(len(m.noted)-8, 0):] {
		if n == r {
			return
		}
	}
	m.noted = append(m.noted, r)
}

// PutBackNoted puts the snapshot back into every range logged by Note since
// the last call, and empties the log.
func (m *Memory) PutBackNoted() error {
	for _, r := range m.noted {
		if err := m.PutBack(r[0], r[1]); err != nil {
			return err
		}
	}
	m.noted = m.noted[:0]
	return nil
}
