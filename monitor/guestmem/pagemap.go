package guestmem

import (
	"fmt"
	"os"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Pagemap finds the pages of this process that hold private copies, through
// the PAGEMAP_SCAN ioctl of /proc/self/pagemap (Linux 6.7). Revert uses it
// to drop only the pages written since Freeze, by the guest or the monitor
// alike, and leave the pages only read mapped (in the host and in KVM's
// shadow or nested page tables, which a drop would make the guest fault in
// again). It is safe for concurrent use.
type Pagemap struct{ f *os.File }

// OpenPagemap opens /proc/self/pagemap and checks the kernel scans it. It
// fails on kernels without PAGEMAP_SCAN; Revert then drops the whole memory.
// Open it before a seccomp filter that forbids open (the descriptor then
// serves every Memory).
func OpenPagemap() (*Pagemap, error) {
	f, err := os.Open("/proc/self/pagemap")
	if err != nil {
		return nil, err
	}
	p := &Pagemap{f}
	if _, _, err := p.scan(0, pageSize, make([]pageRegion, 1)); err != nil {
		f.Close()
		return nil, err
	}
	return p, nil
}

// Close closes the descriptor.
func (p *Pagemap) Close() error { return p.f.Close() }

// PAGEMAP_SCAN and its structures (include/uapi/linux/fs.h), which x/sys/unix
// lacks.
const (
	reqPagemapScan = 0xC0606610 // _IOWR('f', 16, struct pm_scan_arg)
	pageIsFile     = 1 << 2
	pageIsPresent  = 1 << 3
	pageIsSwapped  = 1 << 4
)

type pmScanArg struct {
	size, flags, start, end, walkEnd, vec, vecLen, maxPages uint64
	inverted, mask, anyof, ret                              uint64
}

type pageRegion struct{ start, end, categories uint64 }

// scan fills vec with the ranges of [start, end) whose pages are private
// copies: present and not the file's page, or swapped out (a file page is
// never swapped, only dropped). It returns how many it filled and where the
// walk stopped, before end when vec was full.
func (p *Pagemap) scan(start, end uintptr, vec []pageRegion) (int, uintptr, error) {
	arg := pmScanArg{
		size: uint64(unsafe.Sizeof(pmScanArg{})), start: uint64(start), end: uint64(end),
		vec: uint64(uintptr(unsafe.Pointer(unsafe.SliceData(vec)))), vecLen: uint64(len(vec)),
		inverted: pageIsFile, mask: pageIsFile, anyof: pageIsPresent | pageIsSwapped,
		ret: pageIsPresent | pageIsSwapped,
	}
	// The kernel writes vec through a pointer the Go runtime cannot see:
	// pinned, it cannot move (a stack) or be freed meanwhile.
	var pin runtime.Pinner
	pin.Pin(unsafe.SliceData(vec))
	defer pin.Unpin()
	// Raw: the scan never blocks, and a reset between two KVM_RUNs (raw
	// too, kvm.enter) then never shows Go's scheduler a thread in a system
	// call that its monitor would take the processor from.
	n, _, errno := unix.RawSyscall(unix.SYS_IOCTL, p.f.Fd(), reqPagemapScan, uintptr(unsafe.Pointer(&arg)))
	if errno != 0 {
		return 0, 0, fmt.Errorf("guestmem: PAGEMAP_SCAN: %w", errno)
	}
	return int(n), uintptr(arg.walkEnd), nil
}

// PagemapIoctl is the ioctl request Revert issues, for a seccomp filter
// that allows it.
const PagemapIoctl uint32 = reqPagemapScan
