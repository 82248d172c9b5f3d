package guestmem

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Kept is a copy of shared memory's contents (Keep) that one memory or
// several of the same size are put back to (PutBack, KeepFrom): the
// snapshot of the process backend's Fresh instances, which their pool's
// instances share. It is anonymous memory that reads as zero where the
// memory had no page. It stays mapped until Close and the Close of every
// memory that keeps it.
type Kept struct {
	buf  []byte
	data [][2]int64 // the ranges of the memory's allocated pages, sorted
	refs atomic.Int64
}

// Close drops the caller's reference (from Keep).
func (k *Kept) Close() error {
	if k.refs.Add(-1) > 0 {
		return nil
	}
	return unix.Munmap(k.buf)
}

// Keep copies the present contents of shared memory (NewShared) aside as
// its snapshot, for memory that another process goes on writing through
// the memfd (the process backend's guest), which Freeze cannot make
// private. Only the memfd's allocated pages are copied (SEEK_DATA). After
// Keep, PutBack copies the snapshot back into a range, and Note logs what
// the monitor writes on the guest's behalf, which the guest process's page
// tables do not show. The caller gets a reference to the copy, to hand to
// KeepFrom of other memories, and must Close it.
func (m *Memory) Keep() (*Kept, error) {
	if m.fd < 0 || m.frozen || m.snap != nil {
		return nil, errors.New("guestmem: only shared memory without a snapshot can be kept")
	}
	data, err := m.allocated()
	if err != nil {
		return nil, err
	}
	snap, err := unix.Mmap(-1, 0, len(m.buf), unix.PROT_READ|unix.PROT_WRITE,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return nil, fmt.Errorf("guestmem: map the snapshot: %w", err)
	}
	for _, r := range data {
		copy(snap[r[0]:r[1]], m.buf[r[0]:r[1]])
	}
	k := &Kept{buf: snap, data: data}
	k.refs.Store(2) // m's and the caller's
	m.snap, m.keep = snap, k
	return k, nil
}

// KeepFrom makes k, another memory's copy, the snapshot of m, as Keep
// does, and m's contents equal to k's: k's pages are copied where they
// differ, and m's pages that k does not have are cleared (k's read as
// zero there). m must be shared memory of the same size without a snapshot.
func (m *Memory) KeepFrom(k *Kept) error {
	if m.fd < 0 || m.frozen || m.snap != nil || len(k.buf) != len(m.buf) {
		return errors.New("guestmem: only shared memory of the same size without a snapshot can keep another's")
	}
	mine, err := m.allocated()
	if err != nil {
		return err
	}
	// Pages m has and k does not: cleared where not zero. (Punching them
	// out would free them, but a confined monitor may not fallocate, and
	// an instance that booted as the snapshot's did has no such page.)
	i := 0
	for _, r := range mine {
		for lo := r[0]; lo < r[1]; {
			for i < len(k.data) && k.data[i][1] <= lo {
				i++
			}
			hi := r[1]
			if i < len(k.data) && k.data[i][0] <= lo {
				lo = min(k.data[i][1], r[1]) // covered by k: copied below
				continue
			}
			if i < len(k.data) {
				hi = min(hi, k.data[i][0])
			}
			if b := m.buf[lo:hi]; !allZero(b) {
				clear(b)
			}
			lo = hi
		}
	}
	// k's pages, copied where m's differ (a page m does not have is
	// allocated by the copy, unless k's is all zero).
	for _, r := range k.data {
		for off := r[0]; off < r[1]; off += pageSize {
			end := min(off+pageSize, r[1])
			src, dst := k.buf[off:end], m.buf[off:end]
			if !has(mine, off) && allZero(src) || bytes.Equal(src, dst) {
				continue
			}
			copy(dst, src)
		}
	}
	k.refs.Add(1)
	m.snap, m.keep = k.buf, k
	return nil
}

// allocated lists the ranges of the memfd's allocated pages (SEEK_DATA,
// SEEK_HOLE), within the memory's size.
func (m *Memory) allocated() ([][2]int64, error) {
	var data [][2]int64
	for off := int64(0); off < int64(len(m.buf)); {
		lo, err := unix.Seek(m.fd, off, unix.SEEK_DATA)
		if err == unix.ENXIO {
			break // no data after off
		}
		if err != nil {
			return nil, fmt.Errorf("guestmem: find the memory's pages: %w", err)
		}
		hi, err := unix.Seek(m.fd, lo, unix.SEEK_HOLE)
		if err != nil {
			return nil, fmt.Errorf("guestmem: find the memory's pages: %w", err)
		}
		hi = min(hi, int64(len(m.buf)))
		data = append(data, [2]int64{lo, hi})
		off = hi
	}
	return data, nil
}

// has says whether off lies in one of the sorted ranges.
func has(ranges [][2]int64, off int64) bool {
	i := sort.Search(len(ranges), func(i int) bool { return ranges[i][1] > off })
	return i < len(ranges) && ranges[i][0] <= off
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// PutBack copies the snapshot Keep took back into [addr, addr+n).
func (m *Memory) PutBack(addr, n uint64) error {
	if m.keep == nil {
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
	if m.keep == nil || len(b) == 0 {
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
