// Package ptrace is the process backend of the monitor: it runs a guest as an
// ordinary Linux process traced with ptrace(2), for hosts without /dev/kvm.
//
// # How it works
//
// New writes a tiny static executable (one read-only, executable page at
// 0x7e0000000000, built in memory) to a memfd and starts it traced, with the
// guest memfd as its only open file. Stopped right after execve, the tracee
// is made to issue a handful of system calls through a `syscall; int3`
// gadget in that page: it maps every boot region of the guest memfd at its
// guest-physical address (so guest-virtual = guest-physical = offset in
// guest memory, and the monitor's guestmem view shares the same pages),
// closes every file descriptor, sets no_new_privs and installs a seccomp
// filter that traps every system call. Its registers are then set to the
// guest's initial state.
//
// At CPL 3 without I/O permission, `outl %eax,%dx` raises #GP, which Linux
// turns into SIGSEGV (si_code SI_KERNEL). Run resumes the tracee and waits
// for its next signal-delivery stop; it decodes the instruction at RIP from
// guest memory and reports a hypercall, other port I/O, or a CPU fault. The
// signal is never delivered: the guest has no handlers, and every exit is
// reported to the monitor instead. After a hypercall, the next Run resumes
// the guest after the out instruction.
//
// # Threading
//
// Linux ties a tracee to the thread that traces it. New, Run and Close must be
// called from one goroutine that stays locked to its OS thread
// (runtime.LockOSThread) for the vCPU's whole life; Run fails if called from
// another thread. (Close also works from another goroutine, as long as no Run
// is in progress.) Kick may be called from any goroutine. If the tracing
// thread exits, the kernel kills the tracee (PR_SET_PDEATHSIG and
// PTRACE_O_EXITKILL), so a guest never outlives its monitor.
//
// # Differences from the KVM backend
//
//   - ExitHypercall carries RIP (the address of the out instruction).
//   - Page faults (vector 14) have CR2 but no error code: signals do not carry
//     it. No fault has an error code (HasErrorCode is always false).
//   - #BP (vector 3) and #DB (vector 1) report RIP after the instruction, as
//     the CPU pushes it. Floating-point exceptions are #MF (16) when the
//     faulting instruction is x87 and #XM (19) otherwise.
//   - Port I/O other than a hypercall is ExitBadIO and is not performed;
//     running again re-executes the instruction. Likewise after ExitFault
//     the faulting instruction runs again (trap-like ones continue after it).
//   - ExitSyscall (the guest executed syscall, int $0x80 or a vsyscall) ends
//     the guest: Reason is the system call number as seen by seccomp (an i386
//     number for int $0x80) and RIP the address of the instruction.
//   - Kick kills the tracee; Run then returns ExitKicked, now and on every
//     later call. Any other death of the tracee is ExitUnknown with Reason
//     the raw wait status; later Runs fail.
//   - Signals sent to the tracee by other processes are discarded; only
//     SIGKILL ends it.
//   - The guest's address space also holds the stub page, the initial stack
//     the kernel built for the stub (its argument and auxiliary vectors, no
//     environment), the vDSO and the vsyscall page. The guest can read or
//     execute them but gains nothing: no system call can succeed.
//   - The guest sees the host's TSC, CPUID and FPU state as a process does;
//     rdtsc does not exit.
//   - The tracee needs Linux 5.3 or later (pidfd), /proc mounted, and guest
//     regions not below vm.mmap_min_addr unless the monitor has
//     CAP_SYS_RAWIO.
package ptrace

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/tendervm/tender/hypercall"
	"github.com/tendervm/tender/monitor/guestmem"
	"github.com/tendervm/tender/monitor/vcpu"
	"github.com/tendervm/tender/monitor/x86"
)

const pageSize = hypercall.PageSize

// File descriptors of the tracee at execve.
const (
	guestFD = 3 // the guest memfd
	stubFD  = 4 // the stub executable, execed as /proc/self/fd/4
)

// Signal codes (si_code) the backend tells apart. x/sys/unix lacks them.
const (
	siKernel    = 0x80 // SI_KERNEL: raised by the kernel, e.g. for #GP
	segvBndErr  = 3    // SEGV_BNDERR: bound range exceeded (#BR)
	segvCPErr   = 10   // SEGV_CPERR: control protection (#CP)
	busAdrAln   = 1    // BUS_ADRALN: alignment check (#AC)
	busMCEErrAR = 4    // BUS_MCEERR_AR: machine check, action required
	busMCEErrAO = 5    // BUS_MCEERR_AO: machine check, action optional
	fpeIntDiv   = 1    // FPE_INTDIV: #DE
	fpeIntOvf   = 2    // FPE_INTOVF
	trapTrace   = 2    // TRAP_TRACE: single step
	trapHWBkpt  = 4    // TRAP_HWBKPT: debug register hit
	sysSeccomp  = 1    // SYS_SECCOMP: a seccomp filter trapped a system call
)

// x86 exception vectors.
const (
	vecDE = 0  // divide error
	vecDB = 1  // debug
	vecBP = 3  // breakpoint
	vecBR = 5  // bound range exceeded
	vecUD = 6  // invalid opcode
	vecSS = 12 // stack-segment fault
	vecGP = 13 // general protection
	vecPF = 14 // page fault
	vecMF = 16 // x87 floating-point error
	vecAC = 17 // alignment check
	vecMC = 18 // machine check
	vecXM = 19 // SIMD floating-point exception
	vecCP = 21 // control protection
)

// rflagsInit is the guest's initial RFLAGS: the reserved bit 1 and IF.
const rflagsInit = 0x202

// VCPU runs one guest in a traced process. It implements vcpu.VCPU.
type VCPU struct {
	mem     *guestmem.Memory
	regions []vcpu.Region // the guest's regions, sorted
	pid     int           // the tracee
	tid     int           // the tracing thread

	mu     sync.Mutex // orders Kick against Close
	pidfd  int        // the tracee's pidfd, or -1; guarded by mu
	closed bool       // guarded by mu

	kicked atomic.Bool

	// The fields below belong to the goroutine that calls New, Run and Close.
	initRegs unix.PtraceRegs // the tracee's registers at execve, for its selectors
	regs     unix.PtraceRegs // the tracee's registers at the current stop
	skip     uint64          // bytes to advance RIP by before resuming (a served hypercall)
	ended    error           // why Run can no longer run the guest, or nil
	reaped   bool            // the tracee has been waited for
	siginfo  [16]uint64      // PTRACE_GETSIGINFO buffer (siginfo_t is 128 bytes)
}

var _ vcpu.VCPU = (*VCPU)(nil)

// New starts a process that runs the guest described by boot in mem, stopped
// before the guest's first instruction. mem must come from guestmem.NewShared:
// the process maps its memfd. The calling goroutine must be locked to its OS
// thread (runtime.LockOSThread) and must make every later Run and Close call
// from that thread; see the package documentation.
func New(mem *guestmem.Memory, boot vcpu.Boot) (*VCPU, error) {
	if mem == nil || mem.FD() < 0 {
		return nil, errors.New("ptrace: guest memory must come from guestmem.NewShared")
	}
	if err := checkRegions(mem.Size(), boot.Regions); err != nil {
		return nil, err
	}
	stub, err := stubFile()
	if err != nil {
		return nil, err
	}
	v := &VCPU{mem: mem, regions: slices.Clone(boot.Regions), tid: unix.Gettid(), pidfd: -1}
	const closed = ^uintptr(0) // -1: the child closes this descriptor
	attr := &syscall.ProcAttr{
		Env:   []string{},
		Files: []uintptr{closed, closed, closed, uintptr(mem.FD()), uintptr(stub)},
		Sys: &syscall.SysProcAttr{
			Ptrace:    true,
			Pdeathsig: syscall.SIGKILL,
			Setpgid:   true, // keep terminal signals (^C) away from the guest
			PidFD:     &v.pidfd,
		},
	}
	pid, err := syscall.ForkExec(fmt.Sprintf("/proc/self/fd/%d", stubFD), []string{"tender-ptrace"}, attr)
	unix.Close(stub)
	if err != nil {
		return nil, fmt.Errorf("ptrace: start tracee: %w", err)
	}
	v.pid = pid
	if err := v.setup(boot); err != nil {
		v.Close()
		return nil, err
	}
	return v, nil
}

// checkRegions validates the boot regions against guest memory of size bytes.
func checkRegions(size uint64, regions []vcpu.Region) error {
	var end uint64
	for i, r := range regions {
		switch {
		case r.Size == 0 || r.Addr%pageSize != 0 || r.Size%pageSize != 0:
			return fmt.Errorf("ptrace: region %d [%#x, +%#x) is empty or not page-aligned", i, r.Addr, r.Size)
		case r.Addr > size || r.Size > size-r.Addr:
			return fmt.Errorf("ptrace: region %d [%#x, +%#x) leaves guest memory of %#x bytes", i, r.Addr, r.Size, size)
		case i > 0 && r.Addr < end:
			return fmt.Errorf("ptrace: region %d [%#x, +%#x) overlaps or precedes the one before", i, r.Addr, r.Size)
		case r.Perm&^(vcpu.Read|vcpu.Write|vcpu.Exec) != 0:
			return fmt.Errorf("ptrace: region %d has unknown permissions %#x", i, uint8(r.Perm))
		}
		end = r.Addr + r.Size
	}
	return nil
}

// stubFile returns a close-on-exec memfd holding the stub executable.
func stubFile() (int, error) {
	fd, err := unix.MemfdCreate("tender-ptrace-stub", unix.MFD_CLOEXEC|unix.MFD_EXEC)
	if err == unix.EINVAL { // before Linux 6.3, which introduced MFD_EXEC
		fd, err = unix.MemfdCreate("tender-ptrace-stub", unix.MFD_CLOEXEC)
	}
	if err != nil {
		return -1, fmt.Errorf("ptrace: memfd_create: %w", err)
	}
	img := stubELF()
	if n, err := unix.Write(fd, img); err != nil || n != len(img) {
		unix.Close(fd)
		if err == nil {
			err = fmt.Errorf("short write (%d of %d bytes)", n, len(img))
		}
		return -1, fmt.Errorf("ptrace: write stub: %w", err)
	}
	return fd, nil
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

// setup takes the tracee from its post-execve stop to the guest's first
// instruction: it maps guest memory, closes descriptors, installs the seccomp
// filter and loads the guest's initial registers.
func (v *VCPU) setup(boot vcpu.Boot) error {
	if v.pidfd < 0 {
		return errors.New("ptrace: the kernel returned no pidfd (Linux 5.3 or later is needed)")
	}
	ws, err := v.wait()
	if err != nil {
		return err
	}
	if !ws.Stopped() || ws.StopSignal() != unix.SIGTRAP {
		return fmt.Errorf("ptrace: tracee did not stop after execve: %s", describe(ws))
	}
	if err := unix.PtraceSetOptions(v.pid, unix.PTRACE_O_EXITKILL); err != nil {
		return fmt.Errorf("ptrace: PTRACE_SETOPTIONS: %w", err)
	}
	if err := unix.PtraceGetRegs(v.pid, &v.initRegs); err != nil {
		return fmt.Errorf("ptrace: PTRACE_GETREGS: %w", err)
	}

	for _, r := range boot.Regions {
		addr, err := v.inject(unix.SYS_MMAP, uintptr(r.Addr), uintptr(r.Size), prot(r.Perm),
			unix.MAP_SHARED|unix.MAP_FIXED_NOREPLACE, guestFD, uintptr(r.Addr))
		if err == nil && addr != r.Addr { // a kernel before 4.17 took the address as a hint
			err = fmt.Errorf("mapped at %#x instead", addr)
		}
		if err == unix.EPERM {
			err = fmt.Errorf("%w (is the region below vm.mmap_min_addr?)", err)
		}
		if err != nil {
			return fmt.Errorf("ptrace: map guest region [%#x, +%#x) %v in the tracee: %w", r.Addr, r.Size, r.Perm, err)
		}
	}
	// Close every descriptor, including any a careless parent leaked without
	// close-on-exec. Before Linux 5.9, close the two we passed.
	if _, err := v.inject(unix.SYS_CLOSE_RANGE, 0, math.MaxUint32, 0); err == unix.ENOSYS {
		for _, fd := range []uintptr{guestFD, stubFD} {
			if _, err := v.inject(unix.SYS_CLOSE, fd); err != nil {
				return fmt.Errorf("ptrace: close fd %d in the tracee: %w", fd, err)
			}
		}
	} else if err != nil {
		return fmt.Errorf("ptrace: close_range in the tracee: %w", err)
	}
	if _, err := v.inject(unix.SYS_PRCTL, unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("ptrace: PR_SET_NO_NEW_PRIVS in the tracee: %w", err)
	}
	// From here on every system call of the tracee raises SIGSYS.
	if _, err := v.inject(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, 0, stubBase+stubFprog); err != nil {
		return fmt.Errorf("ptrace: seccomp in the tracee: %w", err)
	}

	v.regs = unix.PtraceRegs{
		Cs: v.initRegs.Cs, Ss: v.initRegs.Ss,
		Ds: v.initRegs.Ds, Es: v.initRegs.Es,
		Rip:      boot.Entry,
		Rsp:      boot.StackTop,
		Rdi:      boot.BootInfo,
		Eflags:   rflagsInit,
		Orig_rax: math.MaxUint64, // not in a system call: no restart logic
	}
	if err := unix.PtraceSetRegs(v.pid, &v.regs); err != nil {
		return fmt.Errorf("ptrace: set the guest's registers: %w", err)
	}
	return nil
}

// inject makes the stopped tracee execute system call nr with args and
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
	if err := unix.PtraceSetRegs(v.pid, &r); err != nil {
		return 0, fmt.Errorf("ptrace: set registers: %w", err)
	}
	for {
		if err := unix.PtraceCont(v.pid, 0); err != nil {
			return 0, fmt.Errorf("ptrace: PTRACE_CONT: %w", err)
		}
		ws, err := v.wait()
		if err != nil {
			return 0, err
		}
		if !ws.Stopped() {
			return 0, fmt.Errorf("ptrace: tracee ended during setup: %s", describe(ws))
		}
		if err := unix.PtraceGetRegs(v.pid, &r); err != nil {
			return 0, fmt.Errorf("ptrace: PTRACE_GETREGS: %w", err)
		}
		switch sig := ws.StopSignal(); {
		case sig == unix.SIGTRAP && r.Rip == stubTrapRIP:
			if ret := int64(r.Rax); ret < 0 && ret > -4096 {
				return 0, unix.Errno(-ret)
			}
			return r.Rax, nil
		case isFaultSignal(sig):
			return 0, fmt.Errorf("ptrace: tracee got %v at %#x during setup", sig, r.Rip)
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

// Run resumes the guest and returns at its next exit. It must be called from
// the thread that called New. After ExitHypercall the guest continues after
// the out instruction. A non-nil error is a host failure, or a Run after the
// guest ended (ExitSyscall, ExitUnknown) or after Close.
func (v *VCPU) Run() (vcpu.Exit, error) {
	if v.kicked.Load() {
		return vcpu.Exit{Kind: vcpu.ExitKicked}, nil
	}
	if v.ended != nil {
		return vcpu.Exit{}, v.ended
	}
	if tid := unix.Gettid(); tid != v.tid {
		return vcpu.Exit{}, fmt.Errorf("ptrace: Run on thread %d, but the tracer is thread %d (use runtime.LockOSThread)", tid, v.tid)
	}
	if v.skip != 0 {
		v.regs.Rip += v.skip
		v.skip = 0
		if err := v.setRegs(); err != nil {
			return v.ptraceFailed("PTRACE_SETREGS", err)
		}
	}
	for {
		if err := v.cont(); err != nil {
			return v.ptraceFailed("PTRACE_CONT", err)
		}
		ws, err := v.wait()
		if err != nil {
			v.ended = err
			return vcpu.Exit{}, err
		}
		if !ws.Stopped() {
			return v.died(ws), nil
		}
		exit, done, err := v.stopped(ws.StopSignal())
		if done || err != nil {
			return exit, err
		}
	}
}

// stopped examines a signal-delivery stop of the tracee. It returns the exit
// to report and done, or done false to resume the guest discarding the signal.
func (v *VCPU) stopped(sig unix.Signal) (exit vcpu.Exit, done bool, err error) {
	if !isFaultSignal(sig) {
		return vcpu.Exit{}, false, nil
	}
	if err := v.getRegs(); err != nil {
		exit, err = v.ptraceFailed("PTRACE_GETREGS", err)
		return exit, true, err
	}
	if sig == unix.SIGSEGV {
		if exit, ok := v.fastHypercall(); ok {
			return exit, true, nil
		}
	}
	if err := v.getSiginfo(); err != nil {
		exit, err = v.ptraceFailed("PTRACE_GETSIGINFO", err)
		return exit, true, err
	}
	// siginfo_t on x86-64: si_signo, si_errno, si_code (int32 each), then at
	// offset 16 si_addr, or si_call_addr, si_syscall (int32), si_arch.
	code := int32(v.siginfo[1])
	addr := v.siginfo[2]
	syscallNr := uint64(uint32(v.siginfo[3]))
	if code <= 0 {
		// SI_USER, SI_TKILL, SI_QUEUE...: another process sent it, the
		// guest did not raise it.
		return vcpu.Exit{}, false, nil
	}
	rip := v.regs.Rip
	e := vcpu.Exit{Kind: vcpu.ExitFault, RIP: rip}
	switch sig {
	case unix.SIGSEGV:
		switch code {
		case siKernel: // #GP, which is what port I/O raises at CPL 3
			e.Vector = vecGP
			if io, ok := x86.DecodePortIO(v.code(rip), uint16(v.regs.Rdx)); ok {
				if io.Hypercall(hypercall.PIOBase, hypercall.Count) {
					return v.hypercall(io), true, nil
				}
				return vcpu.Exit{Kind: vcpu.ExitBadIO, Port: io.Port, Size: io.Size, Out: io.Out, RIP: rip}, true, nil
			}
		case segvBndErr:
			e.Vector = vecBR
		case segvCPErr:
			e.Vector = vecCP
		default: // SEGV_MAPERR, SEGV_ACCERR, SEGV_PKUERR
			e.Vector, e.CR2 = vecPF, addr
		}
	case unix.SIGBUS:
		switch code {
		case busAdrAln:
			e.Vector = vecAC
		case siKernel:
			e.Vector = vecSS
		case busMCEErrAR, busMCEErrAO:
			e.Vector = vecMC
		default: // BUS_ADRERR, BUS_OBJERR: a page with no backing
			e.Vector, e.CR2 = vecPF, addr
		}
	case unix.SIGILL:
		e.Vector = vecUD
	case unix.SIGFPE:
		switch {
		case code == fpeIntDiv || code == fpeIntOvf:
			e.Vector = vecDE
		case x86.IsX87(v.code(rip)):
			e.Vector = vecMF
		default:
			e.Vector = vecXM
		}
	case unix.SIGTRAP:
		e.Vector = vecBP
		if code == trapTrace || code == trapHWBkpt {
			e.Vector = vecDB
		}
	case unix.SIGSYS:
		if code != sysSeccomp {
			return vcpu.Exit{}, false, nil
		}
		// The filter skipped the call; RIP is after the two-byte syscall,
		// int $0x80 or sysenter instruction.
		v.ended = errors.New("ptrace: the guest attempted a system call and cannot continue")
		return vcpu.Exit{Kind: vcpu.ExitSyscall, Reason: syscallNr, RIP: rip - 2}, true, nil
	}
	return e, true, nil
}

// fastHypercall recognizes a hypercall from registers and guest memory alone,
// sparing PTRACE_GETSIGINFO on the hot path. If the instruction at RIP is
// `outl %eax,%dx` to a hypercall port and lies wholly in executable guest
// memory, its fetch cannot have faulted and it has no memory operand, so the
// only SIGSEGV it can raise is its #GP. (A SIGSEGV sent by another process
// while RIP is there is served as the hypercall the guest was about to make:
// the guest cannot tell the difference.)
func (v *VCPU) fastHypercall() (vcpu.Exit, bool) {
	rip := v.regs.Rip
	io, ok := x86.DecodePortIO(v.code(rip), uint16(v.regs.Rdx))
	if !ok || !io.Hypercall(hypercall.PIOBase, hypercall.Count) || !v.executable(rip, uint64(io.Len)) {
		return vcpu.Exit{}, false
	}
	return v.hypercall(io), true
}

// hypercall returns the exit for the hypercall instruction io at RIP and
// arranges for the next Run to resume after it.
func (v *VCPU) hypercall(io x86.PortIO) vcpu.Exit {
	v.skip = uint64(io.Len)
	return vcpu.Exit{Kind: vcpu.ExitHypercall, Nr: uint32(io.Port - hypercall.PIOBase),
		Arg: uint64(uint32(v.regs.Rax)), RIP: v.regs.Rip}
}

// executable reports whether [addr, addr+n) lies in executable guest regions.
func (v *VCPU) executable(addr, n uint64) bool {
	for _, r := range v.regions {
		if addr < r.Addr {
			return false // sorted: no later region holds addr
		}
		if r.Perm&vcpu.Exec == 0 || addr-r.Addr >= r.Size {
			continue
		}
		if n <= r.Size-(addr-r.Addr) {
			return true
		}
		n -= r.Size - (addr - r.Addr) // the rest must be in the next region
		addr = r.Addr + r.Size
	}
	return false
}

// code returns the guest bytes at rip, up to the longest instruction, or nil
// if rip is outside guest memory.
func (v *VCPU) code(rip uint64) []byte {
	size := v.mem.Size()
	if rip >= size {
		return nil
	}
	b, err := v.mem.Slice(rip, min(x86.MaxInsnLen, size-rip))
	if err != nil {
		return nil
	}
	return b
}

// ptraceFailed handles a failed ptrace request. ESRCH means the tracee was
// killed while stopped (by Kick, or by another process): it waits for its
// death and reports it. Anything else is a host error that ends the guest.
func (v *VCPU) ptraceFailed(op string, err error) (vcpu.Exit, error) {
	if err != unix.ESRCH {
		v.ended = fmt.Errorf("ptrace: %s: %w", op, err)
		return vcpu.Exit{}, v.ended
	}
	for !v.reaped {
		ws, err := v.wait()
		if err != nil {
			v.ended = err
			return vcpu.Exit{}, err
		}
		if !ws.Stopped() {
			return v.died(ws), nil
		}
	}
	if v.ended == nil {
		v.ended = fmt.Errorf("ptrace: %s: %w", op, err)
	}
	return vcpu.Exit{}, v.ended
}

// died records the tracee's death, described by ws, and returns the exit to
// report for it.
func (v *VCPU) died(ws unix.WaitStatus) vcpu.Exit {
	v.ended = fmt.Errorf("ptrace: the guest process has ended: %s", describe(ws))
	if v.kicked.Load() && ws.Signaled() && ws.Signal() == unix.SIGKILL {
		return vcpu.Exit{Kind: vcpu.ExitKicked}
	}
	return vcpu.Exit{Kind: vcpu.ExitUnknown, Reason: uint64(ws)}
}

// wait waits for the next stop or the death of the tracee.
func (v *VCPU) wait() (unix.WaitStatus, error) {
	for {
		var ws unix.WaitStatus
		_, err := unix.Wait4(v.pid, &ws, unix.WALL, nil)
		switch err {
		case nil:
			if ws.Exited() || ws.Signaled() {
				v.reaped = true
			}
			return ws, nil
		case unix.EINTR:
			continue
		case unix.ECHILD:
			v.reaped = true
		}
		return 0, fmt.Errorf("ptrace: wait4: %w", err)
	}
}

// The ptrace requests of the hypercall path never block, so they are issued as
// raw system calls: telling the Go scheduler about them costs more than they
// do. Their buffers are fields of the heap-allocated VCPU.

// getRegs reads the stopped tracee's registers into v.regs.
func (v *VCPU) getRegs() error {
	_, _, e := unix.RawSyscall6(unix.SYS_PTRACE, unix.PTRACE_GETREGS, uintptr(v.pid), 0,
		uintptr(unsafe.Pointer(&v.regs)), 0, 0)
	return errnoErr(e)
}

// setRegs writes v.regs into the stopped tracee.
func (v *VCPU) setRegs() error {
	_, _, e := unix.RawSyscall6(unix.SYS_PTRACE, unix.PTRACE_SETREGS, uintptr(v.pid), 0,
		uintptr(unsafe.Pointer(&v.regs)), 0, 0)
	return errnoErr(e)
}

// getSiginfo reads the siginfo of the tracee's signal-delivery stop into
// v.siginfo.
func (v *VCPU) getSiginfo() error {
	_, _, e := unix.RawSyscall6(unix.SYS_PTRACE, unix.PTRACE_GETSIGINFO, uintptr(v.pid), 0,
		uintptr(unsafe.Pointer(&v.siginfo[0])), 0, 0)
	return errnoErr(e)
}

// cont resumes the stopped tracee without delivering its signal.
func (v *VCPU) cont() error {
	_, _, e := unix.RawSyscall6(unix.SYS_PTRACE, unix.PTRACE_CONT, uintptr(v.pid), 0, 0, 0, 0)
	return errnoErr(e)
}

func errnoErr(e unix.Errno) error {
	if e != 0 {
		return e
	}
	return nil
}

// describe formats a wait status.
func describe(ws unix.WaitStatus) string {
	switch {
	case ws.Exited():
		return fmt.Sprintf("exit status %d", ws.ExitStatus())
	case ws.Signaled():
		return fmt.Sprintf("killed by %v", ws.Signal())
	case ws.Stopped():
		return fmt.Sprintf("stopped by %v", ws.StopSignal())
	}
	return fmt.Sprintf("wait status %#x", uint32(ws))
}

// Kick makes the current Run, or the next one, return ExitKicked, and every
// Run after it. It kills the guest process, so the guest cannot be resumed.
// It is safe to call from any goroutine at any time, also after Close.
func (v *VCPU) Kick() {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.kicked.Store(true)
	if !v.closed && v.pidfd >= 0 {
		// A pidfd names this process even after it has been reaped and its
		// pid reused; signalling a dead one fails harmlessly with ESRCH.
		_ = unix.PidfdSendSignal(v.pidfd, unix.SIGKILL, nil, 0)
	}
}

// Close kills and reaps the guest process and releases its descriptors. It is
// idempotent; Run fails after it.
func (v *VCPU) Close() error {
	v.mu.Lock()
	if v.closed {
		v.mu.Unlock()
		return nil
	}
	v.closed = true
	v.mu.Unlock()

	var errs []error
	if v.pid > 0 && !v.reaped {
		// Not yet reaped, so the pid is still this process.
		if err := unix.Kill(v.pid, unix.SIGKILL); err != nil && err != unix.ESRCH {
			errs = append(errs, fmt.Errorf("ptrace: kill tracee: %w", err))
		}
		for !v.reaped {
			if _, err := v.wait(); err != nil {
				if !v.reaped {
					errs = append(errs, err)
				}
				break
			}
		}
	}
	v.mu.Lock()
	if v.pidfd >= 0 {
		if err := unix.Close(v.pidfd); err != nil {
			errs = append(errs, fmt.Errorf("ptrace: close pidfd: %w", err))
		}
		v.pidfd = -1
	}
	v.mu.Unlock()
	v.ended = errors.New("ptrace: vCPU is closed")
	return errors.Join(errs...)
}
