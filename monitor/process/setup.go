package process

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"golang.org/x/sys/unix"

	"github.com/tendervm/tender/monitor/vcpu"
)

// checkRegions validates the boot regions against guest memory of size
// bytes: the guest process keeps the addresses from stubBase up for itself.
func checkRegions(size uint64, regions []vcpu.Region) error {
	var end uint64
	for i, r := range regions {
		switch {
		case r.Size == 0 || r.Addr%pageSize != 0 || r.Size%pageSize != 0:
			return fmt.Errorf("process: region %d [%#x, +%#x) is empty or not page-aligned", i, r.Addr, r.Size)
		case r.Addr > size || r.Size > size-r.Addr:
			return fmt.Errorf("process: region %d [%#x, +%#x) leaves guest memory of %#x bytes", i, r.Addr, r.Size, size)
		case r.Addr+r.Size > stubBase:
			// The set-up routine unmaps everything above the stub's
			// page but the signal stack (setupCode).
			return fmt.Errorf("process: region %d [%#x, +%#x) reaches the stub at %#x", i, r.Addr, r.Size, uint64(stubBase))
		case i > 0 && r.Addr < end:
			return fmt.Errorf("process: region %d [%#x, +%#x) overlaps or precedes the one before", i, r.Addr, r.Size)
		case r.Perm&^(vcpu.Read|vcpu.Write|vcpu.Exec) != 0:
			return fmt.Errorf("process: region %d has unknown permissions %#x", i, uint8(r.Perm))
		}
		end = r.Addr + r.Size
	}
	return nil
}

// prot converts guest permissions to mmap protection. On x86 every present
// page is readable, so any permission implies PROT_READ.
func prot(p vcpu.Perm) uintptr {
	var pr uintptr
	if p != 0 {
		pr |= unix.PROT_READ
	}
	if p&vcpu.Write != 0 {
		pr |= unix.PROT_WRITE
	}
	if p&vcpu.Exec != 0 {
		pr |= unix.PROT_EXEC
	}
	return pr
}

// setup takes the guest process from its post-execve stop to the guest's first
// instruction: it maps guest memory, closes descriptors, installs the seccomp
// filter and loads the guest's initial registers.
func (v *VCPU) setup(boot vcpu.Boot, opts options) error {
	if v.pidfd < 0 {
		return errors.New("process: the kernel returned no pidfd (Linux 5.3 or later is needed)")
	}
	ws, err := v.wait()
	if err != nil {
		return err
	}
	if !ws.Stopped() || ws.StopSignal() != unix.SIGTRAP {
		return fmt.Errorf("process: the guest process did not stop after execve: %s", describe(ws))
	}
	if err := unix.PtraceSetOptions(v.pid, unix.PTRACE_O_EXITKILL); err != nil {
		return fmt.Errorf("process: PTRACE_SETOPTIONS: %w", err)
	}
	if err := unix.PtraceGetRegs(v.pid, &v.initRegs); err != nil {
		return fmt.Errorf("process: PTRACE_GETREGS: %w", err)
	}

	// The region table goes to the stub's writable page; the set-up
	// routine maps every region from it.
	regions := boot.Regions
	if len(regions) > tableEntries {
		return fmt.Errorf("process: %d guest regions, at most %d", len(regions), tableEntries)
	}
	if len(regions) > 0 {
		table := make([]byte, 24*len(regions))
		for i, r := range regions {
			binary.LittleEndian.PutUint64(table[24*i:], r.Addr)
			binary.LittleEndian.PutUint64(table[24*i+8:], r.Size)
			binary.LittleEndian.PutUint64(table[24*i+16:], uint64(prot(r.Perm)))
		}
		local := []unix.Iovec{{Base: &table[0], Len: uint64(len(table))}}
		remote := []unix.RemoteIovec{{Base: stubTable, Len: len(table)}}
		if n, err := unix.ProcessVMWritev(v.pid, local, remote, 0); err != nil || n != len(table) {
			return fmt.Errorf("process: write the region table into the guest process: %d bytes, %v", n, err)
		}
	}
	// Then in one stop: regions, signal stack, descriptors, handlers, mask,
	// no_new_privs and the seccomp filter (see setupCode).
	r := v.initRegs
	r.Rip, r.Orig_rax = stubBase+stubSetup, math.MaxUint64
	r.R13 = uint64(len(regions))
	r, err = v.execute(r, setupTrapRIP)
	if err != nil {
		return err
	}
	if r.R12 == stepMapRegion && r.R13 > 0 && r.R13 <= uint64(len(regions)) {
		reg := regions[uint64(len(regions))-r.R13]
		err := error(unix.Errno(-int64(r.Rax)))
		if err == unix.EPERM {
			err = fmt.Errorf("%w (is the region below vm.mmap_min_addr?)", err)
		}
		return fmt.Errorf("process: map guest region [%#x, +%#x) %v in the guest process: %w", reg.Addr, reg.Size, reg.Perm, err)
	}
	if step := r.R12; step != 0 {
		name := fmt.Sprintf("step %d", step)
		if step <= uint64(len(setupSteps)) {
			name = setupSteps[step-1]
		}
		return fmt.Errorf("process: %s in the guest process: %w", name, unix.Errno(-int64(r.Rax)))
	}
	fd := r.Rax
	if v.listener, err = unix.PidfdGetfd(v.pidfd, int(fd), 0); err != nil {
		v.listener = -1
		return fmt.Errorf("process: take the seccomp listener from the guest process: %w", err)
	}
	unix.CloseOnExec(v.listener)
	if _, err := v.inject(unix.SYS_CLOSE, uintptr(fd)); err != nil {
		return fmt.Errorf("process: close the listener in the guest process: %w", err)
	}
	// Since Linux 6.6 the kernel can switch straight to the waiting side of
	// a notification on the same CPU, like a synchronous call; older ones
	// cost time. A receive returns when the process dies only where the
	// process's exit drops its filter (6.11, exitReleasesFilter); before,
	// a poll for its death precedes every receive (notify.go).
	_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(v.listener), unix.SECCOMP_IOCTL_NOTIF_SET_FLAGS,
		unix.SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP)
	v.recvWakes = e == 0 && !opts.pollFirst
	if opts.track {
		if err := v.trackWrites(opts.trackAll); err != nil {
			return err
		}
	}

	regs := unix.PtraceRegs{
		Cs: v.initRegs.Cs, Ss: v.initRegs.Ss,
		Ds: v.initRegs.Ds, Es: v.initRegs.Es,
		Rip:      boot.Entry,
		Rsp:      boot.StackTop,
		Rdi:      boot.BootInfo,
		Eflags:   rflagsInit,
		Orig_rax: math.MaxUint64, // not in a system call: no restart logic
	}
	if err := unix.PtraceSetRegs(v.pid, &regs); err != nil {
		return fmt.Errorf("process: set the guest's registers: %w", err)
	}
	if boot.Start != nil {
		if err := boot.Start(); err != nil {
			return err
		}
	}
	// Let go: the guest runs, its exceptions go to the handler, and the
	// pending SIGTRAP of the last injected call is discarded.
	if err := unix.PtraceDetach(v.pid); err != nil {
		return fmt.Errorf("process: PTRACE_DETACH: %w", err)
	}
	return nil
}

// inject makes the stopped process execute system call nr with args and
// returns its result.
func (v *VCPU) inject(nr uintptr, args ...uintptr) (uint64, error) {
	var a [6]uint64
	for i, x := range args {
		a[i] = uint64(x)
	}
	r := v.initRegs
	r.Rip = stubBase + stubSyscall
	r.Rax, r.Orig_rax = uint64(nr), math.MaxUint64
	r.Rdi, r.Rsi, r.Rdx, r.R10, r.R8, r.R9 = a[0], a[1], a[2], a[3], a[4], a[5]
	r, err := v.execute(r, stubTrapRIP)
	if err != nil {
		return 0, err
	}
	if ret := int64(r.Rax); ret < 0 && ret > -4096 {
		return 0, unix.Errno(-ret)
	}
	return r.Rax, nil
}

// execute runs the stopped process from registers r until the int3 that
// leaves it stopped at trapRIP, and returns its registers there.
func (v *VCPU) execute(r unix.PtraceRegs, trapRIP uint64) (unix.PtraceRegs, error) {
	if err := unix.PtraceSetRegs(v.pid, &r); err != nil {
		return r, fmt.Errorf("process: set registers: %w", err)
	}
	for {
		if err := unix.PtraceCont(v.pid, 0); err != nil {
			return r, fmt.Errorf("process: PTRACE_CONT: %w", err)
		}
		ws, err := v.wait()
		if err != nil {
			return r, err
		}
		if !ws.Stopped() {
			return r, fmt.Errorf("process: the guest process ended during setup: %s", describe(ws))
		}
		if err := unix.PtraceGetRegs(v.pid, &r); err != nil {
			return r, fmt.Errorf("process: PTRACE_GETREGS: %w", err)
		}
		switch sig := ws.StopSignal(); {
		case sig == unix.SIGTRAP && r.Rip == trapRIP:
			return r, nil
		case isFaultSignal(sig):
			return r, fmt.Errorf("process: the guest process got %v at %#x during setup", sig, r.Rip)
		}
		// A signal from another process: discard it.
	}
}

// isFaultSignal reports whether sig is one the CPU or seccomp raises for the
// guest's own instructions.
func isFaultSignal(sig unix.Signal) bool {
	switch sig {
	case unix.SIGSEGV, unix.SIGBUS, unix.SIGILL, unix.SIGFPE, unix.SIGTRAP, unix.SIGSYS:
		return true
	}
	return false
}
