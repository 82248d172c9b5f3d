// Package blockdev provides the block devices a guest reads and writes:
// a regular file on the host, accessed in whole blocks with pread and
// pwrite. A Device checks every request against its block size and
// capacity before it touches the file, so the hypercall handlers of any
// guest ABI can hand it guest-chosen offsets and lengths as they are.
package blockdev

import (
	"errors"
	"fmt"
	"io"
	"math/bits"
	"os"

	"golang.org/x/sys/unix"

	"github.com/tendervm/tender/hypercall"
)

// DefaultBlockSize is the block size when Options.BlockSize is zero.
const DefaultBlockSize = 512

// Errors a Device returns, wrapped in an *Error.
var (
	// ErrAlign: an offset or length that is not a multiple of the block
	// size, or a length of zero.
	ErrAlign = errors.New("not a whole number of blocks")
	// ErrRange: blocks past the end of the device (or an offset and
	// length whose sum overflows).
	ErrRange = errors.New("beyond the end of the device")
	// ErrReadOnly: a write to a device opened read-only.
	ErrReadOnly = errors.New("device is read-only")
	// ErrIO: the host file failed, or read or wrote fewer bytes than
	// asked (a file shrunk under the device, a full disk). The *Error
	// wraps the host's error too, where there is one.
	ErrIO = errors.New("host I/O failed")
)

// Error is a failed read or write of a Device.
type Error struct {
	// Op is "read" or "write".
	Op string
	// Device is the device's name.
	Device string
	// Offset and Len are the request, in bytes.
	Offset, Len uint64
	// Kind is ErrAlign, ErrRange, ErrReadOnly or ErrIO.
	Kind error
	// Err is the host's error behind an ErrIO, or nil.
	Err error
}

// Error implements error.
func (e *Error) Error() string {
	s := fmt.Sprintf("blockdev: %s of %d bytes at %d on %q: %v", e.Op, e.Len, e.Offset, e.Device, e.Kind)
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns Kind and the host's error, for errors.Is and errors.As.
func (e *Error) Unwrap() []error {
	if e.Err != nil {
		return []error{e.Kind, e.Err}
	}
	return []error{e.Kind}
}

// Options configure a Device.
type Options struct {
	// BlockSize is a power of two from hypercall.BlockSizeMin to
	// hypercall.BlockSizeMax that divides the file's size;
	// DefaultBlockSize when zero.
	BlockSize uint64
	// ReadOnly opens the file read-only; writes fail with ErrReadOnly.
	ReadOnly bool
}

// Device is a block device backed by a regular file. Its capacity is the
// file's size when opened. ReadAt and WriteAt may be called concurrently
// (pread and pwrite carry their own offsets).
type Device struct {
	name     string
	f        *os.File
	capacity uint64
	bs       uint64
	ro       bool
}

// Open opens the regular file at path as the block device name. Anything
// else (a directory, a FIFO, a device node) is refused, without waiting on
// it; so is a file whose size is not a whole number of blocks, or is empty:
// the guest could not address its tail.
func Open(name, path string, opts Options) (*Device, error) {
	bs := opts.BlockSize
	if bs == 0 {
		bs = DefaultBlockSize
	}
	if bs < hypercall.BlockSizeMin || bs > hypercall.BlockSizeMax || bs&(bs-1) != 0 {
		return nil, fmt.Errorf("blockdev: %q: block size %d: want a power of two from %d to %d", name, bs, hypercall.BlockSizeMin, hypercall.BlockSizeMax)
	}
	// The file is checked on its descriptor, so it cannot be swapped after
	// the check. O_NONBLOCK keeps the open itself from waiting on a FIFO
	// (for a writer, or a reader), O_NOCTTY from making a terminal the
	// monitor's; both are refused then.
	flag := unix.O_RDWR
	if opts.ReadOnly {
		flag = unix.O_RDONLY
	}
	fd, err := unix.Open(path, flag|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("blockdev: %q: %w", name, &os.PathError{Op: "open", Path: path, Err: err})
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("blockdev: %q: %w", name, &os.PathError{Op: "fstat", Path: path, Err: err})
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return nil, fmt.Errorf("blockdev: %q: %s is not a regular file", name, path)
	}
	// Regular files ignore O_NONBLOCK, but the device does blocking pread
	// and pwrite, so it does not keep a flag it has no use for.
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("blockdev: %q: %w", name, &os.PathError{Op: "fcntl", Path: path, Err: err})
	}
	f := os.NewFile(uintptr(fd), path)
	size := st.Size
	switch {
	case size == 0:
		err = fmt.Errorf("blockdev: %q: %s is empty: a block device needs at least one block", name, path)
	case uint64(size)%bs != 0:
		err = fmt.Errorf("blockdev: %q: %s has %d bytes, not a multiple of the block size %d (extend or truncate it, or pick another bs=)", name, path, size, bs)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return &Device{name: name, f: f, capacity: uint64(size), bs: bs, ro: opts.ReadOnly}, nil
}

// Name is the device's name: the guest's name for it.
func (d *Device) Name() string { return d.name }

// Capacity is the device's size in bytes, a multiple of BlockSize.
func (d *Device) Capacity() uint64 { return d.capacity }

// BlockSize is the size of a block in bytes.
func (d *Device) BlockSize() uint64 { return d.bs }

// ReadOnly reports whether writes are refused.
func (d *Device) ReadOnly() bool { return d.ro }

// Close closes the file. Reads and writes after it fail with ErrIO.
func (d *Device) Close() error { return d.f.Close() }

// Check validates a read (or, with write, a write) of n bytes at byte
// offset off without doing it: it returns an *Error of kind ErrAlign,
// ErrRange or ErrReadOnly, or nil. ReadAt and WriteAt check the same, so a
// caller may check first, then fetch its buffer.
func (d *Device) Check(write bool, off, n uint64) error {
	e := &Error{Op: "read", Device: d.name, Offset: off, Len: n}
	if write {
		e.Op = "write"
	}
	end, carry := bits.Add64(off, n, 0)
	switch {
	case n == 0 || n%d.bs != 0 || off%d.bs != 0:
		e.Kind = ErrAlign
	case carry != 0 || end > d.capacity:
		e.Kind = ErrRange
	case write && d.ro:
		e.Kind = ErrReadOnly
	default:
		return nil
	}
	return e
}

// ReadAt fills p with the whole blocks at byte offset off.
func (d *Device) ReadAt(p []byte, off uint64) error {
	if err := d.Check(false, off, uint64(len(p))); err != nil {
		return err
	}
	// Check bounds off by the capacity, which fits in an int64.
	n, err := d.f.ReadAt(p, int64(off))
	return d.ioResult("read", p, off, n, err)
}

// WriteAt writes p, whole blocks, at byte offset off.
func (d *Device) WriteAt(p []byte, off uint64) error {
	if err := d.Check(true, off, uint64(len(p))); err != nil {
		return err
	}
	n, err := d.f.WriteAt(p, int64(off))
	return d.ioResult("write", p, off, n, err)
}

// ioResult turns a short or failed transfer into an ErrIO. os.File's ReadAt
// and WriteAt retry short transfers themselves, so a short count here is
// final (a read past a shrunk file's end).
func (d *Device) ioResult(op string, p []byte, off uint64, n int, err error) error {
	if n == len(p) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = fmt.Errorf("transferred %d of %d bytes", n, len(p))
	}
	return &Error{Op: op, Device: d.name, Offset: off, Len: uint64(len(p)), Kind: ErrIO, Err: err}
}
