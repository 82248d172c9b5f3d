package process

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/tendervm/tender/monitor/vcpu"
)

// ErrNoWriteTracking is returned (wrapped) by NewFresh on kernels that cannot
// tell which pages a guest process wrote: asynchronous userfaultfd
// write-protection and the PAGEMAP_SCAN ioctl came with Linux 6.7.
var ErrNoWriteTracking = errors.New("process: the kernel cannot track a guest process's writes (userfaultfd WP_ASYNC and PAGEMAP_SCAN need Linux 6.7)")

// Kernel constants (linux/userfaultfd.h and linux/fs.h of Linux 6.7; the
// headers of older distributions lack them).
const (
	uffdUserModeOnly   = 1 // userfaultfd flag: user-mode faults only, needs no privilege
	uffdioAPI          = 0xc018aa3f
	uffdioRegister     = 0xc020aa00
	uffdioWriteProtect = 0xc018aa06
	uffdAPI            = 0xaa
	// Features: write-protection of shmem (the guest memfd) and of pages
	// never touched (the signal stack), resolved by the kernel itself.
	uffdFeatures       = 1<<12 | 1<<13 | 1<<15
	uffdRegisterModeWP = 2
	uffdWPModeWP       = 1

	pagemapScan        = 0xc0606610
	pmScanWPMatching   = 1 // write-protect the pages reported
	pmScanCheckWPAsync = 2 // fail unless the range is in WP_ASYNC mode
	pageIsWritten      = 2
	pageIsPresent      = 8
	pageIsSwapped      = 16
)

// pmScanArg is struct pm_scan_arg.
type pmScanArg struct {
	Size, Flags, Start, End, WalkEnd, Vec, VecLen, MaxPages uint64
	CategoryInverted, CategoryMask, CategoryAnyofMask       uint64
	ReturnMask                                              uint64
}

// pageRegion is struct page_region.
type pageRegion struct{ Start, End, Categories uint64 }

// tracker finds the pages a guest process wrote since it last looked.
type tracker struct {
	pagemap int         // /proc/PID/pagemap of the guest process
	ranges  [][2]uint64 // [start, end) of the tracked ranges, sorted
	// full: every page of the ranges is write-protected, mapped or not
	// (scan explains when and why).
	full bool
	vec  [64]pageRegion // the scan's output, reused
	arg  pmScanArg
	// calls counts the PAGEMAP_SCAN calls made, which tests check.
	calls int
}

// trackWrites makes the kernel record which pages of its writable guest
// regions and signal stack the set-up guest process writes: it creates a
// userfaultfd in the process, registered for asynchronous write-protection
// over those ranges, and opens the process's pagemap, whose PAGEMAP_SCAN
// reports the written pages and protects them again. full protects every
// page of the ranges from the start (scan says why). The userfaultfd stays
// open in the process (closing it would end the tracking); the guest cannot
// use it, since its filter hands every system call to the monitor. The
// system calls go through the gadget, and the monitor lets each through.
func (v *VCPU) trackWrites(full bool) error {
	var ranges [][2]uint64
	for _, r := range v.regions {
		if r.Perm&vcpu.Write != 0 {
			ranges = append(ranges, [2]uint64{r.Addr, r.Addr + r.Size})
		}
	}
	ranges = append(ranges, [2]uint64{altBase, altBase + altSize}) // above every guest region

	fd, err := v.injectNotified(unix.SYS_USERFAULTFD, UserfaultfdFlags)
	if err != nil {
		return fmt.Errorf("process: userfaultfd in the guest process: %w", err)
	}
	// The argument structures go to the bottom of the signal stack, which
	// no signal has used yet.
	var api [24]byte
	binary.LittleEndian.PutUint64(api[0:], uffdAPI)
	binary.LittleEndian.PutUint64(api[8:], uffdFeatures)
	if err := v.poke(altBase, api[:]); err != nil {
		return err
	}
	if _, err := v.injectNotified(unix.SYS_IOCTL, uintptr(fd), uffdioAPI, altBase); err != nil {
		if err == unix.EINVAL {
			err = ErrNoWriteTracking
		}
		return fmt.Errorf("process: UFFDIO_API in the guest process: %w", err)
	}
	for _, r := range ranges {
		var reg [32]byte
		binary.LittleEndian.PutUint64(reg[0:], r[0])
		binary.LittleEndian.PutUint64(reg[8:], r[1]-r[0])
		binary.LittleEndian.PutUint64(reg[16:], uffdRegisterModeWP)
		if err := v.poke(altBase, reg[:]); err != nil {
			return err
		}
		if _, err := v.injectNotified(unix.SYS_IOCTL, uintptr(fd), uffdioRegister, altBase); err != nil {
			return fmt.Errorf("process: UFFDIO_REGISTER [%#x, %#x) in the guest process: %w", r[0], r[1], err)
		}
		if !full {
			continue
		}
		binary.LittleEndian.PutUint64(reg[16:], uffdWPModeWP)
		if err := v.poke(altBase, reg[:24]); err != nil {
			return err
		}
		if _, err := v.injectNotified(unix.SYS_IOCTL, uintptr(fd), uffdioWriteProtect, altBase); err != nil {
			return fmt.Errorf("process: UFFDIO_WRITEPROTECT [%#x, %#x) in the guest process: %w", r[0], r[1], err)
		}
	}
	if err := v.poke(altBase, make([]byte, 32)); err != nil {
		return err
	}
	// The template (stub.go), which Snapshot writes and the first reset
	// makes read-only.
	addr, err := v.injectNotified(unix.SYS_MMAP, tmplBase, tmplSize, unix.PROT_READ|unix.PROT_WRITE,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_FIXED_NOREPLACE, ^uintptr(0), 0)
	if err == nil && addr != tmplBase {
		err = fmt.Errorf("mapped at %#x", addr)
	}
	if err != nil {
		return fmt.Errorf("process: map the template in the guest process: %w", err)
	}
	pm, err := unix.Open(fmt.Sprintf("/proc/%d/pagemap", v.pid), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("process: open the guest process's pagemap: %w", err)
	}
	v.track = &tracker{pagemap: pm, ranges: ranges, full: full}
	// One scan proves the kernel has PAGEMAP_SCAN.
	if err := v.track.scan(func(uint64, uint64) {}); err != nil {
		return err
	}
	return nil
}

// scan calls fn for each range of pages written since the last scan, in
// address order, and write-protects them again.
//
// The kernel counts a page without write protection as written, and a page
// never mapped has none: protecting it installs a marker in the page
// tables. With markers over the whole of guest memory (full), every scan
// walks it page by page: 25-50 µs for 64 MiB here, whatever the guest
// uses. So by default scan protects only pages that are mapped (present,
// or swapped), exactly those it finds, and passes over the ones never
// mapped, which the walk skips a page table at a time: a page the guest
// maps later has no protection and is found written at the next scan,
// which is right for a page written and harmless for one only read (its
// snapshot is put back). This misses one case: a written page of shared
// memory that the kernel swaps out loses its mapping, and with it the sign
// of the write. Where swap is on when the guest process starts, scan
// therefore protects everything (full) and pays for the walk.
func (t *tracker) scan(fn func(addr, n uint64)) error {
	if t.full {
		for _, r := range t.ranges {
			if err := t.scanRange(r[0], r[1], pmScanWPMatching|pmScanCheckWPAsync, fn); err != nil {
				return err
			}
		}
		return nil
	}
	// One call from the first tracked page to the last: each call costs
	// several µs here, and the walk passes over the space between in one
	// step. The kernel itself keeps to mapped pages (the category mask of
	// ioctl), so it protects no page never mapped and reports no range of
	// them, and it passes over the mappings without tracking between (the
	// guest's code and read-only data, the stub), as it does without
	// PM_SCAN_CHECK_WPASYNC.
	return t.scanRange(t.ranges[0][0], t.ranges[len(t.ranges)-1][1], pmScanWPMatching, fn)
}

// scanRange scans [start, end) with flags, calling fn for the written pages
// it finds and protects.
func (t *tracker) scanRange(start, end, flags uint64, fn func(addr, n uint64)) error {
	for start < end {
		n, err := t.ioctl(flags, start, end)
		if err != nil {
			return err
		}
		for _, p := range t.vec[:n] {
			fn(p.Start, p.End-p.Start)
		}
		walked := t.arg.WalkEnd
		if walked <= start {
			return fmt.Errorf("process: PAGEMAP_SCAN made no progress at %#x", start)
		}
		start = walked
	}
	return nil
}

// swapOn reports whether the host has swap space in use (a line past the
// header of /proc/swaps), or cannot tell.
func swapOn() bool {
	b, err := os.ReadFile("/proc/swaps")
	if err != nil {
		return true
	}
	return bytes.Count(bytes.TrimSpace(b), []byte("\n")) > 0
}

// ioctl issues PAGEMAP_SCAN with flags over [start, end) for the pages
// written into t.vec, and returns how many ranges it filled. Unless every
// page is protected (full), only mapped pages count (scan says why).
func (t *tracker) ioctl(flags, start, end uint64) (int, error) {
	t.arg = pmScanArg{
		Size:         uint64(unsafe.Sizeof(t.arg)),
		Flags:        flags,
		Start:        start,
		End:          end,
		Vec:          uint64(uintptr(unsafe.Pointer(&t.vec[0]))),
		VecLen:       uint64(len(t.vec)),
		CategoryMask: pageIsWritten,
		ReturnMask:   pageIsWritten,
	}
	if !t.full {
		t.arg.CategoryAnyofMask = pageIsPresent | pageIsSwapped
	}
	t.calls++
	n, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(t.pagemap), pagemapScan, uintptr(unsafe.Pointer(&t.arg)))
	if e != 0 {
		if e == unix.ENOTTY || e == unix.EINVAL {
			return 0, fmt.Errorf("process: PAGEMAP_SCAN: %w (%w)", e, ErrNoWriteTracking)
		}
		return 0, fmt.Errorf("process: PAGEMAP_SCAN: %w", e)
	}
	return int(n), nil
}

func (t *tracker) close() error {
	if t == nil || t.pagemap < 0 {
		return nil
	}
	err := unix.Close(t.pagemap)
	t.pagemap = -1
	return err
}

// poke writes b into the guest process at addr.
func (v *VCPU) poke(addr uint64, b []byte) error {
	local := []unix.Iovec{{Base: &b[0], Len: uint64(len(b))}}
	remote := []unix.RemoteIovec{{Base: uintptr(addr), Len: len(b)}}
	if n, err := unix.ProcessVMWritev(v.pid, local, remote, 0); err != nil || n != len(b) {
		return fmt.Errorf("process: write %d bytes at %#x in the guest process: %d written, %v", len(b), addr, n, err)
	}
	return nil
}

// peek reads len(b) bytes at addr from the guest process.
func (v *VCPU) peek(addr uint64, b []byte) error {
	local := []unix.Iovec{{Base: &b[0], Len: uint64(len(b))}}
	remote := []unix.RemoteIovec{{Base: uintptr(addr), Len: len(b)}}
	if n, err := unix.ProcessVMReadv(v.pid, local, remote, 0); err != nil || n != len(b) {
		return fmt.Errorf("process: read %d bytes at %#x in the guest process: %d read, %v", len(b), addr, n, err)
	}
	return nil
}

// injectNotified is inject for a system call the guest's filter hands to
// the monitor (anything but close), once the filter is installed: the
// monitor receives its notification and lets it run
// (SECCOMP_USER_NOTIF_FLAG_CONTINUE), then waits for the process to stop
// at the gadget's int3. Signals that stop the process meanwhile are
// discarded, as in execute.
func (v *VCPU) injectNotified(nr uintptr, args ...uintptr) (uint64, error) {
	var a [6]uint64
	for i, x := range args {
		a[i] = uint64(x)
	}
	r := v.initRegs
	r.Rip = stubBase + stubSyscall
	r.Rax, r.Orig_rax = uint64(nr), math.MaxUint64
	r.Rdi, r.Rsi, r.Rdx, r.R10, r.R8, r.R9 = a[0], a[1], a[2], a[3], a[4], a[5]
	if err := unix.PtraceSetRegs(v.pid, &r); err != nil {
		return 0, fmt.Errorf("process: set registers: %w", err)
	}
	if err := unix.PtraceCont(v.pid, 0); err != nil {
		return 0, fmt.Errorf("process: PTRACE_CONT: %w", err)
	}
	answered := false
	for {
		flags := unix.WALL
		if !answered {
			flags |= unix.WNOHANG
		}
		var ws unix.WaitStatus
		pid, err := unix.Wait4(v.pid, &ws, flags, nil)
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			return 0, fmt.Errorf("process: wait4: %w", err)
		case pid == 0:
			// Running, or waiting in its notification: serve it.
			ok, err := v.continueCall(nr)
			if err != nil {
				return 0, err
			}
			answered = ok
			continue
		case ws.Exited() || ws.Signaled():
			v.reaped = true
			return 0, fmt.Errorf("process: the guest process ended during setup: %s", describe(ws))
		}
		if err := unix.PtraceGetRegs(v.pid, &r); err != nil {
			return 0, fmt.Errorf("process: PTRACE_GETREGS: %w", err)
		}
		switch sig := ws.StopSignal(); {
		case sig == unix.SIGTRAP && r.Rip == stubTrapRIP:
			if !answered {
				return 0, errors.New("process: an injected system call ran without its notification")
			}
			if ret := int64(r.Rax); ret < 0 && ret > -4096 {
				return 0, unix.Errno(-ret)
			}
			return r.Rax, nil
		case isFaultSignal(sig):
			return 0, fmt.Errorf("process: the guest process got %v at %#x during setup", sig, r.Rip)
		}
		// A signal from another process, which interrupted the call if it
		// was waiting: discard it; the call restarts.
		answered = false
		if err := unix.PtraceCont(v.pid, 0); err != nil {
			return 0, fmt.Errorf("process: PTRACE_CONT: %w", err)
		}
	}
}

// continueCall waits briefly for the notification of the injected call nr
// and lets it run; false if none came.
func (v *VCPU) continueCall(nr uintptr) (bool, error) {
	fds := []unix.PollFd{{Fd: int32(v.listener), Events: unix.POLLIN}}
	n, err := unix.Poll(fds, 10) // ms
	if err == unix.EINTR || n == 0 {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("process: poll the seccomp listener: %w", err)
	}
	if fds[0].Revents&unix.POLLIN == 0 {
		return false, nil // the process is going away: wait4 says so
	}
	v.notif = seccompNotif{}
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(v.listener), unix.SECCOMP_IOCTL_NOTIF_RECV,
		uintptr(unsafe.Pointer(&v.notif))); e != 0 {
		if e == unix.ENOENT || e == unix.EINTR {
			return false, nil
		}
		return false, fmt.Errorf("process: receive from the guest process: %w", e)
	}
	if v.notif.Nr != int32(nr) || v.notif.IP != gadgetRet || v.notif.Arch != unix.AUDIT_ARCH_X86_64 {
		return false, fmt.Errorf("process: unexpected system call %d at %#x during setup", v.notif.Nr, v.notif.IP)
	}
	v.resp = seccompResp{ID: v.notif.ID, Flags: unix.SECCOMP_USER_NOTIF_FLAG_CONTINUE}
	_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(v.listener), unix.SECCOMP_IOCTL_NOTIF_SEND,
		uintptr(unsafe.Pointer(&v.resp)))
	if e != 0 && e != unix.ENOENT {
		return false, fmt.Errorf("process: let the guest process's system call run: %w", e)
	}
	return e == 0, nil
}

// CanTrack reports whether the kernel can track a guest process's writes,
// by trying it on a page of this process: nil, or an error wrapping
// ErrNoWriteTracking.
func CanTrack() error {
	fd, _, e := unix.Syscall(unix.SYS_USERFAULTFD, UserfaultfdFlags, 0, 0)
	if e != 0 {
		return fmt.Errorf("process: userfaultfd: %w (%w)", e, ErrNoWriteTracking)
	}
	defer unix.Close(int(fd))
	api := [3]uint64{uffdAPI, uffdFeatures, 0}
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, fd, uffdioAPI, uintptr(unsafe.Pointer(&api))); e != 0 {
		return fmt.Errorf("process: UFFDIO_API: %w (%w)", e, ErrNoWriteTracking)
	}
	pm, err := unix.Open("/proc/self/pagemap", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("process: open /proc/self/pagemap: %w (%w)", err, ErrNoWriteTracking)
	}
	defer unix.Close(pm)
	var vec [1]pageRegion
	arg := pmScanArg{Size: uint64(unsafe.Sizeof(pmScanArg{})), Start: 0, End: pageSize,
		Vec: uint64(uintptr(unsafe.Pointer(&vec[0]))), VecLen: 1, CategoryMask: pageIsWritten, ReturnMask: pageIsWritten}
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(pm), pagemapScan, uintptr(unsafe.Pointer(&arg))); e != 0 {
		return fmt.Errorf("process: PAGEMAP_SCAN: %w (%w)", e, ErrNoWriteTracking)
	}
	return nil
}

// TrackIoctls are the ioctl requests of write tracking, for a seccomp filter
// of the monitor that allows them: UFFDIO_API, UFFDIO_REGISTER and
// UFFDIO_WRITEPROTECT, which the guest process issues at set-up under the
// filter it inherits, and PAGEMAP_SCAN, which the monitor issues.
func TrackIoctls() []uint32 {
	return []uint32{uffdioAPI, uffdioRegister, uffdioWriteProtect, pagemapScan}
}

// TemplateSeal is the one mprotect a fresh guest process makes, at its
// first reset, under the filter it inherits: its template, read-only
// (fresh.go). A confined monitor's filter must allow exactly that.
func TemplateSeal() (addr, size uint64, prot uint32) {
	return tmplBase, tmplSize, unix.PROT_READ
}

// UserfaultfdFlags are the flags of the guest process's userfaultfd call.
const UserfaultfdFlags = unix.O_CLOEXEC | uffdUserModeOnly
