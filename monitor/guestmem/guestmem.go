// Package guestmem owns a guest's physical memory and is the only code that
// touches it: every access goes through Slice, which checks bounds and
// overflow, so no guest-supplied address or length can reach host memory
// outside the mapping. Buffers a guest names in hypercalls go through Guest,
// which also checks them against the guest's own page permissions.
package guestmem

import (
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/tendervm/tender/monitor/vcpu"
)

// RangeError reports a guest-physical range that is not wholly inside guest
// memory.
type RangeError struct {
	Addr, Len uint64
	Size      uint64
}

// Error implements error.
func (e *RangeError) Error() string {
	return fmt.Sprintf("guest range [%#x, +%#x) outside guest memory of %#x bytes", e.Addr, e.Len, e.Size)
}

// Memory is a guest's physical memory: Size bytes mapped into the host
// process, guest-physical address 0 at the start of the mapping. Pages are
// allocated by the host kernel on first touch, so untouched memory costs
// nothing.
type Memory struct {
	buf []byte
	fd  int // memfd backing the mapping, or -1 for anonymous memory
	// frozen: the mapping is a private view of the memfd, which holds the
	// snapshot (Freeze).
	frozen bool
	// pagemap, when set, finds the pages Revert puts back, into regions;
	// snap is a read-only view of the snapshot it copies them from.
	pagemap *Pagemap
	regions []pageRegion
	snap    []byte
	// keep, when set, is the copy of shared memory's contents that snap
	// is (Keep, KeepFrom), and noted the ranges the monitor wrote since
	// the last PutBackNoted.
	keep  *Kept
	noted [][2]uint64
	// layout is what the guest itself may access (SetLayout); Guest checks
	// hypercall buffers against it.
	layout []vcpu.Region
}

// New maps size bytes of anonymous, lazily allocated guest memory.
func New(size uint64) (*Memory, error) {
	if size == 0 || size%uint64(unix.Getpagesize()) != 0 {
		return nil, fmt.Errorf("guestmem: size %#x is not a positive multiple of the page size", size)
	}
	buf, err := unix.Mmap(-1, 0, int(size), unix.PROT_READ|unix.PROT_WRITE,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return nil, fmt.Errorf("guestmem: mmap %d bytes: %w", size, err)
	}
	return &Memory{buf: buf, fd: -1}, nil
}

// NewShared maps size bytes of guest memory backed by a memfd, so that another
// process can map the same pages (see FD).
func NewShared(size uint64) (*Memory, error) {
	if size == 0 || size%uint64(unix.Getpagesize()) != 0 {
		return nil, fmt.Errorf("guestmem: size %#x is not a positive multiple of the page size", size)
	}
	fd, err := unix.MemfdCreate("tender-guest", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("guestmem: memfd_create: %w", err)
	}
	if err := unix.Ftruncate(fd, int64(size)); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("guestmem: size memfd: %w", err)
	}
	buf, err := unix.Mmap(fd, 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("guestmem: mmap memfd: %w", err)
	}
	return &Memory{buf: buf, fd: fd}, nil
}

// Size is the size of guest memory in bytes.
func (m *Memory) Size() uint64 { return uint64(len(m.buf)) }

// FD is the memfd behind shared memory, or -1 for anonymous memory.
func (m *Memory) FD() int { return m.fd }

// HostAddr is the host virtual address of guest-physical address 0, for
// registering the memory with a hypervisor. It must not be used to access the
// memory.
func (m *Memory) HostAddr() uintptr {
	if len(m.buf) == 0 {
		return 0
	}
	return uintptr(unsafePointer(m.buf))
}

// Slice returns the host view of the guest range [addr, addr+n). It fails,
// without touching memory, when the range wraps around or leaves guest memory.
// The slice aliases guest memory: the guest sees writes to it.
func (m *Memory) Slice(addr, n uint64) ([]byte, error) {
	size := uint64(len(m.buf))
	if addr > size || n > size-addr {
		return nil, &RangeError{Addr: addr, Len: n, Size: size}
	}
	return m.buf[addr : addr+n : addr+n], nil
}

// Read copies guest memory at addr into p.
func (m *Memory) Read(addr uint64, p []byte) error {
	s, err := m.Slice(addr, uint64(len(p)))
	if err != nil {
		return err
	}
	copy(p, s)
	return nil
}

// Write copies p into guest memory at addr.
func (m *Memory) Write(addr uint64, p []byte) error {
	s, err := m.Slice(addr, uint64(len(p)))
	if err != nil {
		return err
	}
	copy(s, p)
	return nil
}

// Uint64 reads the little-endian 64-bit value at addr.
func (m *Memory) Uint64(addr uint64) (uint64, error) {
	s, err := m.Slice(addr, 8)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(s), nil
}

// PutUint64 writes v little-endian at addr.
func (m *Memory) PutUint64(addr, v uint64) error {
	s, err := m.Slice(addr, 8)
	if err != nil {
		return err
	}
	binary.LittleEndian.PutUint64(s, v)
	return nil
}

// pageSize is the host page size on x86-64.
const pageSize = 4096

// Populate allocates the pages of [addr, addr+n) writable now, in one system
// call, rather than one page fault at a time (a fault of anonymous memory
// costs 14-18 µs on a paravirtual host; populating costs well under 1 µs a
// page). Use it for ranges about to be written anyway: it costs the same
// memory. Kernels before Linux 5.14 lack it, and it does nothing there.
func (m *Memory) Populate(addr, n uint64) error {
	if _, err := m.Slice(addr, n); err != nil {
		return err
	}
	lo := addr &^ (pageSize - 1)
	hi := (addr + n + pageSize - 1) &^ (pageSize - 1) // cannot overflow: Slice checked addr+n <= Size
	if lo == hi {
		return nil
	}
	err := unix.Madvise(m.buf[lo:hi], unix.MADV_POPULATE_WRITE)
	if err == unix.EINVAL {
		return nil
	}
	return err
}

// Zero clears the guest range [addr, addr+n). Whole pages of anonymous
// memory are dropped (MADV_DONTNEED) rather than written: they read back as
// zero and cost no host memory until touched again, where writing them would
// allocate each one (a page fault, 14-18 µs on a nested KVM host).
func (m *Memory) Zero(addr, n uint64) error {
	s, err := m.Slice(addr, n)
	if err != nil {
		return err
	}
	lo := (addr + pageSize - 1) &^ (pageSize - 1)
	hi := (addr + n) &^ (pageSize - 1)
	if m.fd >= 0 || m.frozen || lo >= hi {
		// Dropped, a page of a memfd's or a snapshot's would not read
		// as zero.
		clear(s)
		return nil
	}
	clear(m.buf[addr:lo])
	clear(m.buf[hi : addr+n])
	return unix.Madvise(m.buf[lo:hi], unix.MADV_DONTNEED)
}

// Resident counts the pages of [addr, addr+n) that are allocated in host
// memory (mincore), for tests and measurements of what a guest costs.
func (m *Memory) Resident(addr, n uint64) (int, error) {
	if _, err := m.Slice(addr, n); err != nil {
		return 0, err
	}
	lo := addr &^ (pageSize - 1)
	hi := (addr + n + pageSize - 1) &^ (pageSize - 1)
	if lo == hi {
		return 0, nil
	}
	vec := make([]byte, (hi-lo)/pageSize)
	if err := mincore(m.buf[lo:hi], vec); err != nil {
		return 0, fmt.Errorf("guestmem: mincore: %w", err)
	}
	pages := 0
	for _, v := range vec {
		pages += int(v & 1)
	}
	return pages, nil
}

// Close unmaps the memory and closes its memfd. Slices obtained before must
// not be used afterwards.
func (m *Memory) Close() error {
	var errs []error
	if m.buf != nil {
		errs = append(errs, unix.Munmap(m.buf))
		m.buf = nil
	}
	switch {
	case m.keep != nil:
		errs = append(errs, m.keep.Close())
		m.keep, m.snap = nil, nil
	case m.snap != nil:
		errs = append(errs, unix.Munmap(m.snap))
		m.snap = nil
	}
	if m.fd >= 0 {
		errs = append(errs, unix.Close(m.fd))
		m.fd = -1
	}
	return errors.Join(errs...)
}
