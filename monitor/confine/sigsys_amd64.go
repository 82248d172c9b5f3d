package confine

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/tendervm/tender/monitor"
)

// sigsysExit is the exit status of a process killed for a forbidden call
// (read by sigsys_amd64.s through go_asm.h).
//
//lint:ignore U1000 used by sigsys_amd64.s
const sigsysExit = monitor.ExitSeccomp

// Implemented in sigsys_amd64.s; handlerAddrs returns the other two's
// addresses (the ABI0 entry points the kernel must call).
//
//lint:ignore U1000 its address is taken in sigsys_amd64.s
func sigsys()

//lint:ignore U1000 its address is taken in sigsys_amd64.s
func sigreturn()

func handlerAddrs() (handler, restorer uintptr)

// kernelSigaction is the kernel's struct sigaction on x86-64.
type kernelSigaction struct {
	handler  uintptr
	flags    uint64
	restorer uintptr
	mask     uint64
}

// Kernel constants for sigaction; x/sys/unix lacks SA_RESTORER.
const (
	saSiginfo  = 0x4
	saOnstack  = 0x08000000
	saRestorer = 0x04000000
)

// installSIGSYS replaces the Go runtime's SIGSYS handler, which would print
// a goroutine trace and exit with status 2 (a guest status), by sigsys. It
// runs on the signal stack the Go runtime gives every thread, with every
// signal blocked; it makes only calls every policy allows (write, fcntl's
// F_GETFL and F_SETFL, exit_group), since a trap there would kill the
// process without a word.
func installSIGSYS() error {
	h, r := handlerAddrs()
	sa := kernelSigaction{handler: h, flags: saSiginfo | saOnstack | saRestorer, restorer: r, mask: ^uint64(0)}
	_, _, e := unix.RawSyscall6(unix.SYS_RT_SIGACTION, uintptr(unix.SIGSYS), uintptr(unsafe.Pointer(&sa)), 0, 8, 0, 0)
	if e != 0 {
		return fmt.Errorf("confine: install the SIGSYS handler: %w", e)
	}
	return nil
}
