package guestmem

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

func unsafePointer(b []byte) unsafe.Pointer { return unsafe.Pointer(unsafe.SliceData(b)) }

// mincore fills vec with one byte per page of b, bit 0 set where the page is
// resident (mincore(2), which x/sys/unix does not wrap on Linux).
func mincore(b, vec []byte) error {
	_, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafePointer(b)), uintptr(len(b)), uintptr(unsafePointer(vec)))
	if errno != 0 {
		return errno
	}
	return nil
}
