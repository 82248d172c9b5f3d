// Package ptrace is the process backend of the monitor: it runs a guest as an
// ordinary Linux process confined by seccomp, for hosts without /dev/kvm.
// ptrace(2) only sets the process up; seccomp user notification serves it.
//
// # How it works
//
// A Spawner writes a tiny static executable (one read-only, executable page
// at 0x7e0000000000, built in memory; see stub.go) to a memfd and starts it
// traced, with the guest memfd as its only open file. Stopped right after
// execve, the process gets the guest's region table in a writable page of the
// stub (process_vm_writev) and runs the stub's set-up routine, which in one
// stop maps each region of the guest memfd at its guest-physical address (so
// guest-virtual = guest-physical = offset in guest memory, and the monitor's
// guestmem view shares the same pages), maps a signal stack, closes every
// file descriptor, installs the stub's signal handler for the fault signals,
// blocks every other signal, sets no_new_privs and installs a seccomp filter
// with a notification listener. The monitor takes the listener with
// pidfd_getfd, makes the process close its copy through a `syscall; int3`
// gadget, sets the registers to the guest's initial state and detaches: the
// guest runs.
//
// At CPL 3 without I/O permission, `outl %eax,%dx` raises #GP, which Linux
// turns into SIGSEGV. Every exception of the guest enters the stub's handler,
// which reports the signal, trap number, error code, fault address, RIP, RAX
// and RDX in one system call; the filter turns it into a notification that
// Run receives. Run decodes the instruction at RIP from guest memory and
// reports a hypercall, other port I/O, or a CPU fault. The answer to the
// notification tells the handler how far to advance RIP (past a served
// hypercall, or not at all), and the guest resumes through rt_sigreturn. A
// hypercall is thus one notification round trip, with no ptrace stop and no
// thread of the monitor's tied to the guest.
//
// # Threading
//
// Linux ties a tracee to the thread that traces it, and the parent-death
// signal to the thread that forked it; a Go thread ends when a goroutine
// locked to it exits. So guests are started and set up on the Spawner's own
// thread, which stays locked until Spawner.Close. After New, Run may be
// called from any goroutine, one call at a time, and Kick from any goroutine
// at any time. If the monitor dies, the kernel kills its guests
// (PR_SET_PDEATHSIG), so a guest never outlives its monitor.
//
// # Differences from the KVM backend
//
//   - The guest starts running in New, and waits at its first exit for Run.
//   - ExitHypercall carries RIP (the address of the out instruction).
//   - #BP (vector 3) and #DB (vector 1) report RIP after the instruction, as
//     the CPU pushes it. Vectors and error codes are those the kernel
//     recorded for the signal.
//   - Port I/O other than a hypercall is ExitBadIO and is not performed;
//     running again re-executes the instruction. Likewise after ExitFault
//     the faulting instruction runs again (trap-like ones continue after it).
//   - ExitSyscall (the guest executed syscall, int $0x80, sysenter or a
//     vsyscall) ends the guest: Reason is the system call number as seen by
//     seccomp (an i386 number for int $0x80), or EAX for a sysenter the CPU
//     refused, and RIP the address of the instruction.
//   - A guest process started after the monitor confined itself (package
//     confine) inherits the monitor's filter: a system call that filter
//     forbids kills the process, reported as ExitSyscall with Reason
//     vcpu.SyscallUnknown.
//   - Kick kills the guest process; Run then returns ExitKicked, now and on
//     every later call. Any other death of the process is ExitUnknown with
//     Reason the raw wait status; later Runs fail.
//   - Signals sent to the guest by other processes are discarded (fault
//     signals) or stay blocked for ever (the others); only SIGKILL ends it,
//     and SIGSTOP pauses it.
//   - The guest's address space also holds the stub page, the signal stack,
//     the initial stack the kernel built for the stub (its argument and
//     auxiliary vectors, no environment), the vDSO and the vsyscall page.
//     The guest can read them, write the signal stack and run the stub's
//     code but gains nothing: the only system calls that pass the filter are
//     rt_sigreturn from the stub's restorer and close from its gadget (there
//     is nothing left to close), and whatever it makes the handler report
//     is a hypercall or fault it could have made itself.
//   - The guest sees the host's TSC, CPUID and FPU state as a process does;
//     rdtsc does not exit.
//   - The process needs Linux 5.9 or later (close_range; from 6.6 the kernel
//     switches to the waiting side of a notification directly, which makes
//     exits cheaper), /proc mounted, and guest regions not below
//     vm.mmap_min_addr unless the monitor has CAP_SYS_RAWIO.
package ptrace

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"runtime"
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

// File descriptors of the guest process at execve.
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

// rflagsInit is the guest's initial RFLAGS: the reserved bit 1 and IF.
const rflagsInit = 0x202

// VCPU runs one guest in a process of its own. It implements vcpu.VCPU.
type VCPU struct {
	mem     *guestmem.Memory
	regions []vcpu.Region // the guest's regions, sorted
	pid     int           // the guest process

	spawner *Spawner // which started it

	mu     sync.Mutex // orders Kick against Close
	pidfd  int        // the guest process's pidfd, or -1; guarded by mu
	closed bool       // guarded by mu

	kicked atomic.Bool

	// The fields below belong to the goroutine calling New, Run or Close.
	listener int             // the seccomp notification descriptor, or -1
	initRegs unix.PtraceRegs // the process's registers at execve, for its selectors
	notif    seccompNotif    // the notification being served
	resp     seccompResp     // its answer
	pending  bool            // notif awaits its answer
	// recvWakes says a blocked receive returns when the process dies
	// (Linux 6.6); without it, receive polls first.
	recvWakes bool
	skip      uint64 // the answer: bytes to advance RIP by (a served hypercall)
	ended     error  // why Run can no longer run the guest, or nil
	reaped    bool   // the process has been waited for
}

var _ vcpu.VCPU = (*VCPU)(nil)

// New starts a process that runs the guest described by boot in mem, from
// the spawner's thread. mem must come from guestmem.NewShared: the process
// maps its memfd. The guest starts at once and runs until its first exit,
// where it waits for Run.
func New(s *Spawner, mem *guestmem.Memory, boot vcpu.Boot) (*VCPU, error) {
	return s.start(mem, boot, false)
}

// Spawner starts guest processes. Linux ties a tracee to the thread that
// traces it, and the parent-death signal (which kills a guest whose monitor
// dies) to the thread that forked it, not to the process. A Go thread ends
// when a goroutine locked to it exits, which any code in the process may
// do; so guests are started and set up on a thread that the Spawner keeps
// locked until Close. Starts are serialized on that thread; once set up, a
// guest is served from any goroutine.
type Spawner struct {
	mu     sync.Mutex // held while a request is sent: orders starts against Close
	closed bool
	reqs   chan spawnReq
	done   chan struct{}
	stub   int // the stub executable's memfd, closed when the thread ends

	liveMu sync.Mutex
	live   map[*VCPU]struct{} // guests started and not yet closed
}

type spawnReq struct {
	mem       *guestmem.Memory
	boot      vcpu.Boot
	pollFirst bool
	reply     chan spawned
}

type spawned struct {
	v   *VCPU
	err error
}

// NewSpawner starts a spawner's thread.
func NewSpawner() (*Spawner, error) {
	stub, err := stubFile()
	if err != nil {
		return nil, err
	}
	s := &Spawner{live: map[*VCPU]struct{}{}, reqs: make(chan spawnReq), done: make(chan struct{}), stub: stub}
	go s.loop()
	return s, nil
}

// loop serves start requests on a thread it never unlocks: the thread exits
// with it.
func (s *Spawner) loop() {
	runtime.LockOSThread()
	defer close(s.done)
	defer unix.Close(s.stub)
	for r := range s.reqs {
		v, err := spawn(s.stub, r.mem, r.boot, r.pollFirst)
		if err == nil {
			v.spawner = s
			s.liveMu.Lock()
			s.live[v] = struct{}{}
			s.liveMu.Unlock()
		}
		r.reply <- spawned{v, err}
	}
}

// start is New; pollFirst serves the guest as on kernels before 6.6, for
// tests of that path.
func (s *Spawner) start(mem *guestmem.Memory, boot vcpu.Boot, pollFirst bool) (*VCPU, error) {
	if mem == nil || mem.FD() < 0 {
		return nil, errors.New("ptrace: guest memory must come from guestmem.NewShared")
	}
	if err := checkRegions(mem.Size(), boot.Regions); err != nil {
		return nil, err
	}
	reply := make(chan spawned, 1)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, errors.New("ptrace: spawner closed")
	}
	// Sent under mu so that Close cannot close reqs meanwhile; the loop
	// takes requests as fast as it serves them.
	s.reqs <- spawnReq{mem, boot, pollFirst, reply}
	s.mu.Unlock()
	r := <-reply
	return r.v, r.err
}

// Close ends the spawner's thread and kicks every guest it started that is
// not closed yet: their Run returns ExitKicked. Close them as usual.
func (s *Spawner) Close() error {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.reqs)
	}
	s.mu.Unlock()
	<-s.done
	s.liveMu.Lock()
	left := make([]*VCPU, 0, len(s.live))
	for v := range s.live {
		left = append(left, v)
	}
	s.liveMu.Unlock()
	for _, v := range left {
		v.Kick()
	}
	return nil
}

// forget drops a closed guest.
func (s *Spawner) forget(v *VCPU) {
	s.liveMu.Lock()
	delete(s.live, v)
	s.liveMu.Unlock()
}

// spawn starts the guest process and sets it up, on the spawner's thread.
func spawn(stub int, mem *guestmem.Memory, boot vcpu.Boot, pollFirst bool) (*VCPU, error) {
	v := &VCPU{mem: mem, regions: slices.Clone(boot.Regions), pidfd: -1, listener: -1}
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
	pid, err := syscall.ForkExec(fmt.Sprintf("/proc/self/fd/%d", stubFD), []string{"tender-guest"}, attr)
	if err != nil {
		return nil, fmt.Errorf("ptrace: start the guest process: %w", err)
	}
	v.pid = pid
	if err := v.setup(boot, pollFirst); err != nil {
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

// setup takes the guest process from its post-execve stop to the guest's first
// instruction: it maps guest memory, closes descriptors, installs the seccomp
// filter and loads the guest's initial registers.
func (v *VCPU) setup(boot vcpu.Boot, pollFirst bool) error {
	if v.pidfd < 0 {
		return errors.New("ptrace: the kernel returned no pidfd (Linux 5.3 or later is needed)")
	}
	ws, err := v.wait()
	if err != nil {
		return err
	}
	if !ws.Stopped() || ws.StopSignal() != unix.SIGTRAP {
		return fmt.Errorf("ptrace: the guest process did not stop after execve: %s", describe(ws))
	}
	if err := unix.PtraceSetOptions(v.pid, unix.PTRACE_O_EXITKILL); err != nil {
		return fmt.Errorf("ptrace: PTRACE_SETOPTIONS: %w", err)
	}
	if err := unix.PtraceGetRegs(v.pid, &v.initRegs); err != nil {
		return fmt.Errorf("ptrace: PTRACE_GETREGS: %w", err)
	}

	// The region table goes to the stub's writable page; the set-up
	// routine maps every region from it.
	regions := boot.Regions
	if len(regions) > tableEntries {
		return fmt.Errorf("ptrace: %d guest regions, at most %d", len(regions), tableEntries)
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
			return fmt.Errorf("ptrace: write the region table into the guest process: %d bytes, %v", n, err)
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
		return fmt.Errorf("ptrace: map guest region [%#x, +%#x) %v in the guest process: %w", reg.Addr, reg.Size, reg.Perm, err)
	}
	if step := r.R12; step != 0 {
		name := fmt.Sprintf("step %d", step)
		if step <= uint64(len(setupSteps)) {
			name = setupSteps[step-1]
		}
		return fmt.Errorf("ptrace: %s in the guest process: %w", name, unix.Errno(-int64(r.Rax)))
	}
	fd := r.Rax
	if v.listener, err = unix.PidfdGetfd(v.pidfd, int(fd), 0); err != nil {
		v.listener = -1
		return fmt.Errorf("ptrace: take the seccomp listener from the guest process: %w", err)
	}
	unix.CloseOnExec(v.listener)
	if _, err := v.inject(unix.SYS_CLOSE, uintptr(fd)); err != nil {
		return fmt.Errorf("ptrace: close the listener in the guest process: %w", err)
	}
	// Since Linux 6.6 the kernel can switch straight to the waiting side of
	// a notification on the same CPU, like a synchronous call, and a
	// receive returns when the process dies. Older kernels lack both: it
	// costs time, and a poll before every receive.
	_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(v.listener), unix.SECCOMP_IOCTL_NOTIF_SET_FLAGS,
		unix.SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP)
	v.recvWakes = e == 0 && !pollFirst

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
		return fmt.Errorf("ptrace: set the guest's registers: %w", err)
	}
	// Let go: the guest runs, its exceptions go to the handler, and the
	// pending SIGTRAP of the last injected call is discarded.
	if err := unix.PtraceDetach(v.pid); err != nil {
		return fmt.Errorf("ptrace: PTRACE_DETACH: %w", err)
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
		return r, fmt.Errorf("ptrace: set registers: %w", err)
	}
	for {
		if err := unix.PtraceCont(v.pid, 0); err != nil {
			return r, fmt.Errorf("ptrace: PTRACE_CONT: %w", err)
		}
		ws, err := v.wait()
		if err != nil {
			return r, err
		}
		if !ws.Stopped() {
			return r, fmt.Errorf("ptrace: the guest process ended during setup: %s", describe(ws))
		}
		if err := unix.PtraceGetRegs(v.pid, &r); err != nil {
			return r, fmt.Errorf("ptrace: PTRACE_GETREGS: %w", err)
		}
		switch sig := ws.StopSignal(); {
		case sig == unix.SIGTRAP && r.Rip == trapRIP:
			return r, nil
		case isFaultSignal(sig):
			return r, fmt.Errorf("ptrace: the guest process got %v at %#x during setup", sig, r.Rip)
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

// seccompNotif is struct seccomp_notif: one system call of the guest process
// waiting for the monitor's answer.
type seccompNotif struct {
	ID    uint64
	Pid   uint32
	Flags uint32
	// struct seccomp_data
	Nr   int32
	Arch uint32
	IP   uint64
	Args [6]uint64
}

// seccompResp is struct seccomp_notif_resp.
type seccompResp struct {
	ID    uint64
	Val   int64
	Error int32
	Flags uint32
}

// Run resumes the guest and returns at its next exit. After ExitHypercall the
// guest continues after the out instruction. A non-nil error is a host
// failure, or a Run after the guest ended (ExitSyscall, ExitUnknown) or after
// Close. Run may be called from any goroutine, one call at a time.
func (v *VCPU) Run() (vcpu.Exit, error) {
	if v.kicked.Load() {
		return vcpu.Exit{Kind: vcpu.ExitKicked}, nil
	}
	if v.ended != nil {
		return vcpu.Exit{}, v.ended
	}
	for {
		if v.pending {
			// ENOENT: the process died waiting; the next receive says so.
			if err := v.answer(v.skip); err != nil && err != unix.ENOENT {
				v.ended = fmt.Errorf("ptrace: answer the guest process: %w", err)
				return vcpu.Exit{}, v.ended
			}
			v.pending, v.skip = false, 0
		}
		if err := v.receive(); err != nil {
			if err != unix.ENOENT {
				v.ended = fmt.Errorf("ptrace: receive from the guest process: %w", err)
				return vcpu.Exit{}, v.ended
			}
			dead, err := v.dead()
			if err != nil {
				v.ended = err
				return vcpu.Exit{}, err
			}
			if !dead {
				continue // a notification withdrawn by a stop signal
			}
			ws, err := v.wait()
			if err != nil {
				v.ended = err
				return vcpu.Exit{}, err
			}
			return v.died(ws), nil
		}
		v.pending = true
		if exit, ok := v.decode(); ok {
			return exit, nil
		}
	}
}

// receive waits for the guest process's next notification, or ENOENT when
// the process has ended. It makes system calls the Go scheduler knows
// about: they block for as long as the guest runs.
func (v *VCPU) receive() error {
	if !v.recvWakes {
		// Before Linux 6.6 a receive sleeps on through the death of the
		// process: wait for either first.
		dead, err := v.dead()
		if err != nil {
			return err
		}
		if dead {
			return unix.ENOENT
		}
	}
	v.notif = seccompNotif{} // the kernel insists on a zeroed buffer
	for {
		_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(v.listener), unix.SECCOMP_IOCTL_NOTIF_RECV,
			uintptr(unsafe.Pointer(&v.notif)))
		if e != unix.EINTR {
			return errnoErr(e)
		}
	}
}

// answer completes the current notification with val, which the handler
// adds to the guest's RIP. It never blocks, so it is a raw system call.
func (v *VCPU) answer(val uint64) error {
	v.resp = seccompResp{ID: v.notif.ID, Val: int64(val)}
	_, _, e := unix.RawSyscall(unix.SYS_IOCTL, uintptr(v.listener), unix.SECCOMP_IOCTL_NOTIF_SEND,
		uintptr(unsafe.Pointer(&v.resp)))
	return errnoErr(e)
}

// dead waits until the guest process has ended (true) or a notification is
// ready (false). A process that ends makes its pidfd readable (and orphans
// the listener); a notification makes the listener readable, also that of a
// process that was stopped and continued, which restarts its system call.
func (v *VCPU) dead() (bool, error) {
	fds := []unix.PollFd{{Fd: int32(v.pidfd), Events: unix.POLLIN}, {Fd: int32(v.listener), Events: unix.POLLIN}}
	for {
		_, err := unix.Poll(fds, -1)
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			return false, fmt.Errorf("ptrace: poll the guest process: %w", err)
		}
		return fds[0].Revents != 0 || fds[1].Revents&(unix.POLLHUP|unix.POLLERR) != 0, nil
	}
}

// decode turns the current notification into an exit. It reports false for a
// signal another process sent, which the guest never sees: the next Run
// step answers it and waits for the next notification.
func (v *VCPU) decode() (vcpu.Exit, bool) {
	n := &v.notif
	if n.Arch != unix.AUDIT_ARCH_X86_64 || n.Nr != handlerNr || n.IP != handlerSyscallRet {
		// The guest's own system call (any syscall, int $0x80 or vsyscall
		// instruction is two bytes long). It stays unanswered.
		v.ended = errors.New("ptrace: the guest attempted a system call and cannot continue")
		return vcpu.Exit{Kind: vcpu.ExitSyscall, Reason: uint64(uint32(n.Nr)), RIP: n.IP - 2}, true
	}
	signo := unix.Signal(uint32(n.Args[0]))
	code := int32(n.Args[0] >> 32)
	trapno, errCode := n.Args[1]>>32, uint64(uint32(n.Args[1]))
	cr2, rip, rax, rdx := n.Args[2], n.Args[3], n.Args[4], n.Args[5]
	if code <= 0 {
		// SI_USER, SI_TKILL, SI_QUEUE...: another process sent it, the
		// guest did not raise it.
		return vcpu.Exit{}, false
	}
	vector, ok := faultVector(signo, code, trapno)
	if !ok {
		return vcpu.Exit{}, false
	}
	if vector == x86.VecGP && code == siKernel {
		// Port I/O at CPL 3 raises #GP; the guest has no I/O permission.
		if io, ok := x86.DecodePortIO(v.code(rip), uint16(rdx)); ok {
			if io.Hypercall(hypercall.PIOBase, hypercall.Count) && v.executable(rip, uint64(io.Len)) {
				v.skip = uint64(io.Len)
				return vcpu.Exit{Kind: vcpu.ExitHypercall, Nr: uint32(io.Port - hypercall.PIOBase),
					Arg: uint64(uint32(rax)), RIP: rip}, true
			}
			return vcpu.Exit{Kind: vcpu.ExitBadIO, Port: io.Port, Size: io.Size, Out: io.Out, Str: io.Str, RIP: rip}, true
		}
	}
	if vector == x86.VecUD && x86.IsSyscall(v.code(rip)) {
		// sysenter in 64-bit mode is #UD on AMD (Intel hands it to
		// the kernel as a system call): an attempted system call all
		// the same, reported as the KVM backend does.
		v.ended = errors.New("ptrace: the guest attempted a system call and cannot continue")
		return vcpu.Exit{Kind: vcpu.ExitSyscall, Reason: uint64(uint32(rax)), RIP: rip}, true
	}
	e := vcpu.Exit{Kind: vcpu.ExitFault, Vector: vector, RIP: rip}
	if x86.HasErrorCode(vector) {
		e.ErrorCode, e.HasErrorCode = errCode, true
	}
	if vector == x86.VecPF {
		e.CR2 = cr2
	}
	return e, true
}

// faultVector returns the exception behind a fault signal: the trap number
// the kernel recorded, when it is one that raises this signal, or else the
// vector si_code points to (a signal the kernel raised for no exception of
// the guest's, which leaves a stale trap number).
func faultVector(sig unix.Signal, code int32, trapno uint64) (uint8, bool) {
	t := uint8(trapno)
	switch sig {
	case unix.SIGSEGV:
		if trapno < 32 && (t == x86.VecBR || t == x86.VecGP || t == x86.VecPF || t == x86.VecCP) {
			return t, true
		}
		return x86.VecPF, true
	case unix.SIGBUS:
		if trapno < 32 && (t == x86.VecSS || t == x86.VecPF || t == x86.VecAC || t == x86.VecMC) {
			return t, true
		}
		if code == busAdrAln {
			return x86.VecAC, true
		}
		return x86.VecPF, true
	case unix.SIGILL:
		return x86.VecUD, true
	case unix.SIGFPE:
		if trapno < 32 && (t == x86.VecDE || t == x86.VecMF || t == x86.VecXM) {
			return t, true
		}
		if code == fpeIntDiv || code == fpeIntOvf {
			return x86.VecDE, true
		}
		return x86.VecXM, true
	case unix.SIGTRAP:
		if trapno < 32 && (t == x86.VecDB || t == x86.VecBP) {
			return t, true
		}
		if code == trapTrace || code == trapHWBkpt {
			return x86.VecDB, true
		}
		return x86.VecBP, true
	}
	return 0, false
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

// died records the guest process's death, described by ws, and returns the exit to
// report for it.
func (v *VCPU) died(ws unix.WaitStatus) vcpu.Exit {
	v.ended = fmt.Errorf("ptrace: the guest process has ended: %s", describe(ws))
	if v.kicked.Load() && ws.Signaled() && ws.Signal() == unix.SIGKILL {
		return vcpu.Exit{Kind: vcpu.ExitKicked}
	}
	if ws.Signaled() && ws.Signal() == unix.SIGSYS {
		// Only a seccomp filter raises SIGSYS in the guest (one sent by
		// another process stays blocked): that of a confined monitor,
		// which the process inherited, stopped a system call the monitor
		// may not make either. The kernel tells no number.
		return vcpu.Exit{Kind: vcpu.ExitSyscall, Reason: vcpu.SyscallUnknown}
	}
	return vcpu.Exit{Kind: vcpu.ExitUnknown, Reason: uint64(ws)}
}

// wait waits for the next stop or the death of the guest process.
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
	if v.spawner != nil {
		v.spawner.forget(v)
	}

	var errs []error
	if v.pid > 0 && !v.reaped {
		// Not yet reaped, so the pid is still this process.
		if err := unix.Kill(v.pid, unix.SIGKILL); err != nil && err != unix.ESRCH {
			errs = append(errs, fmt.Errorf("ptrace: kill the guest process: %w", err))
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
	if v.listener >= 0 {
		if err := unix.Close(v.listener); err != nil {
			errs = append(errs, fmt.Errorf("ptrace: close the seccomp listener: %w", err))
		}
		v.listener = -1
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
