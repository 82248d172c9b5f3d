package kvm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	gokvm "github.com/bobuhiro11/gokvm/kvm"
	"golang.org/x/sys/unix"

	"github.com/tendervm/tender/monitor/guestmem"
	"github.com/tendervm/tender/monitor/vcpu"
	"github.com/tendervm/tender/monitor/x86"
)

// VCPU is a KVM virtual machine with its one vCPU, ready to run a loaded guest.
type VCPU struct {
	sys    *System
	mem    *guestmem.Memory
	vmfd   int
	vcpufd int
	run    []byte
	// syncRegs: KVM stores the general registers in run at every exit.
	syncRegs bool
	// canSyncSregs: KVM can store the special registers in run too;
	// syncSregs: Snapshot asked it to, at every exit.
	canSyncSregs, syncSregs bool
	// xsave: the host has XSAVE, and Snapshot uses KVM_GET_XSAVE.
	xsave bool
	// emulate: the guest's privileged set-up instructions are emulated
	// (vcpu.Boot.EmulatePriv; priv.go).
	emulate bool

	mu     sync.Mutex // orders Kick against Close (Kick writes to run)
	closed bool
	// tid is the thread that entered the vCPU last, which Kick signals.
	// Run stores it before it looks at kicked, and Kick sets kicked
	// before it loads tid: a kick either stops Run at its loop head or
	// reaches the thread in (or about to enter) KVM_RUN.
	tid    atomic.Int32
	kicked atomic.Bool
	tscHz  uint64
	timing Timing
	// restorePage: the guest maps x86.RestoreAddr, where Snapshot writes
	// the code that loads its x87/SSE/AVX state (vcpu.Boot.Snapshot).
	restorePage bool
	// restored is the state Restore set last, until the vCPU is entered.
	restored *State
	// fpuSets counts KVM_SET_FPU and KVM_SET_XSAVE calls, for tests.
	fpuSets uint64
	// entries counts KVM_RUN calls, those that finish an exit included,
	// for tests of what a reset costs.
	entries uint64
}

// Timing is where NewVCPU's time went, phase by phase.
type Timing struct {
	// Tables is building the page tables, GDT, IDT, TSS and stubs.
	Tables time.Duration
	// VM is KVM_CREATE_VM and the memory slot.
	VM time.Duration
	// VCPU is KVM_CREATE_VCPU and the mapping of its kvm_run.
	VCPU time.Duration
	// State is the vCPU's CPUID, special and general registers, XCRs,
	// MSRs and the reading of its TSC rate.
	State time.Duration
}

// NewVCPU builds the CPU structures for boot into mem, creates a VM over mem and
// sets its vCPU to start the guest at CPL 3. Frozen memory (a snapshot's
// view, guestmem.NewView) holds them already, built for the same boot by
// the vCPU whose guest the snapshot is: rebuilt, they would only copy the
// pages they lie in.
func (s *System) NewVCPU(mem *guestmem.Memory, boot vcpu.Boot) (*VCPU, error) {
	if mem.Size() > x86.MemMax {
		return nil, fmt.Errorf("kvm: guest memory of %d bytes exceeds %d", mem.Size(), uint64(x86.MemMax))
	}
	t := time.Now()
	if !mem.Frozen() {
		build := x86.Build
		if boot.Snapshot {
			build = x86.BuildFresh
		}
		if err := build(mem, boot.Regions); err != nil {
			return nil, err
		}
	}
	v := &VCPU{sys: s, mem: mem, vmfd: -1, vcpufd: -1, emulate: boot.EmulatePriv, restorePage: boot.Snapshot}
	v.timing.Tables = time.Since(t)
	s.life.RLock()
	defer s.life.RUnlock()
	if s.closed {
		return nil, ErrClosed
	}
	if err := v.create(s, boot); err != nil {
		v.Close()
		return nil, err
	}
	return v, nil
}

// kvmTSSAddr is where KVM_SET_TSS_ADDR puts the real-mode TSS: below 4 GiB,
// above hypercall.MemMax.
const kvmTSSAddr = 0xFFFBD000

// apicBase is the guest-physical page of the local APIC.
const apicBase = 0xFEE00000

func (v *VCPU) create(s *System, boot vcpu.Boot) error {
	t := time.Now()
	fd, err := ioctl(s.fd, reqCreateVM, nil, 0)
	if err != nil {
		return fmt.Errorf("KVM_CREATE_VM: %w", err)
	}
	// KVM creates VM and vCPU descriptors close-on-exec already.
	v.vmfd = int(fd)
	// Intel without "unrestricted guest" (CPUs before 2010) needs three
	// pages for a real-mode TSS somewhere in the physical address space,
	// outside every memory slot; hypercall.MemMax keeps this range free for
	// tender's guests. A Solo5 guest of more memory (up to 4 GiB) covers
	// it, so it is not set aside: tender never runs the vCPU in real mode,
	// and other hosts ignore the call or do not implement it.
	if v.mem.Size() <= kvmTSSAddr {
		_, _ = ioctl(v.vmfd, reqSetTSSAddr, nil, kvmTSSAddr)
	}
	// A vCPU without a local APIC in the kernel holds a static key that KVM
	// flips, patching kernel text on every CPU, when the host's first such
	// vCPU is created and its last destroyed; the local APIC's own keys are
	// released a second late, so VMs created one after the other share them.
	// On kvm_pvm this took 0.3 ms off each VM's create and destroy
	// (docs/performance.md). The guest never enables the APIC, and no
	// tender exit needs KVM_EXIT_HLT (the stubs report with out). Memory
	// reaching the APIC's page (a 4 GiB Solo5 guest) keeps the old way, as
	// Intel's APIC virtualization maps a page of its own there.
	if s.splitIRQChip && v.mem.Size() <= apicBase {
		c := enableCap{cap: uint32(capSplitIRQChip)}
		_ = ioctlErr(v.vmfd, reqEnableCap, unsafe.Pointer(&c))
	}
	region := gokvm.UserspaceMemoryRegion{
		Slot:          0,
		GuestPhysAddr: 0,
		MemorySize:    v.mem.Size(),
		UserspaceAddr: uint64(v.mem.HostAddr()),
	}
	if err := ioctlErr(v.vmfd, reqSetUserMemRegion, unsafe.Pointer(&region)); err != nil {
		return fmt.Errorf("KVM_SET_USER_MEMORY_REGION: %w", err)
	}
	t = lap(&v.timing.VM, t)
	cfd, err := ioctl(v.vmfd, reqCreateVCPU, nil, 0)
	if err != nil {
		return fmt.Errorf("KVM_CREATE_VCPU: %w", err)
	}
	v.vcpufd = int(cfd)
	v.run, err = unix.Mmap(v.vcpufd, 0, s.runSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("mmap kvm_run: %w", err)
	}
	t = lap(&v.timing.VCPU, t)
	cpu, err := s.features()
	if err != nil {
		return err
	}
	// CPUID first: KVM checks CR4 bits such as OSXSAVE against it.
	if err := ioctlErr(v.vcpufd, reqSetCPUID2, unsafe.Pointer(cpu.cpuid)); err != nil {
		return fmt.Errorf("KVM_SET_CPUID2: %w", err)
	}
	if err := v.setSregs(s, cpu); err != nil {
		return err
	}
	v.xsave = cpu.xcr0 != 0
	if cpu.xcr0 != 0 {
		xcrs := gokvm.XCRS{NrXRCS: 1}
		xcrs.Registers[0] = gokvm.XRC{XRC: 0, Value: cpu.xcr0}
		if err := ioctlErr(v.vcpufd, reqSetXCRs, unsafe.Pointer(&xcrs)); err != nil {
			return fmt.Errorf("KVM_SET_XCRS: %w", err)
		}
	}
	// EFER.SCE stays clear, so on hardware `syscall` is #UD. Some hosts
	// (kvm_pvm) ignore SCE and fetch from LSTAR at CPL 3; pointing it at a
	// page that is never mapped makes that a page fault the monitor
	// recognises (see fault).
	if err := setMSR(v.vcpufd, msrLSTAR, x86.SyscallSentinel); err != nil {
		return err
	}
	if s.syncRegs {
		binary.LittleEndian.PutUint64(v.run[runValidRegs:], syncX86Regs)
		v.syncRegs, v.canSyncSregs = true, s.syncSregs
	}
	if boot.Snapshot {
		probed, err := v.guestXSAVE(boot)
		if err != nil {
			return err
		}
		if probed { // a #UD leaves the vCPU in its CPL-0 stub
			if err := v.setSregs(s, cpu); err != nil {
				return err
			}
		}
	}
	// With sync regs they go in with the first KVM_RUN, which saves a
	// KVM_SET_REGS.
	if err := v.setRegs(gokvm.Regs{RIP: boot.Entry, RSP: boot.StackTop, RDI: boot.BootInfo, RFLAGS: 0x2}, syncX86Regs); err != nil {
		return err
	}
	khz := s.tscKHz.Load()
	if khz == 0 {
		if k, err := ioctl(v.vcpufd, reqGetTSCKHz, nil, 0); err == nil {
			khz = uint64(k)
			s.tscKHz.Store(khz)
		}
	}
	v.tscHz = khz * 1000
	lap(&v.timing.State, t)
	return nil
}

// lap stores the time since t in d and returns now, the next phase's start.
func lap(d *time.Duration, t time.Time) time.Time {
	now := time.Now()
	*d = now.Sub(t)
	return now
}

// Timing reports where NewVCPU's time went.
func (v *VCPU) Timing() Timing { return v.timing }

// setSregs sets the vCPU's special registers for long mode at CPL 3: the
// host's starting state (s.sregs once the first vCPU has read it) with
// tender's segments, descriptor tables and control registers.
func (v *VCPU) setSregs(s *System, cpu *cpuFeatures) error {
	if p := s.sregs.Load(); p != nil {
		sregs := *p
		if err := ioctlErr(v.vcpufd, reqSetSregs, unsafe.Pointer(&sregs)); err != nil {
			return fmt.Errorf("KVM_SET_SREGS: %w", err)
		}
		return nil
	}
	var sregs gokvm.Sregs
	if err := ioctlErr(v.vcpufd, reqGetSregs, unsafe.Pointer(&sregs)); err != nil {
		return fmt.Errorf("KVM_GET_SREGS: %w", err)
	}
	trType := cpu.trType
	code := gokvm.Segment{Base: 0, Limit: 0xFFFFFFFF, Selector: x86.UserCS, Typ: 0xB,
		Present: 1, DPL: 3, DB: 0, S: 1, L: 1, G: 1}
	data := gokvm.Segment{Base: 0, Limit: 0xFFFFFFFF, Selector: x86.UserDS, Typ: 0x3,
		Present: 1, DPL: 3, DB: 1, S: 1, L: 0, G: 1}
	sregs.CS = code
	sregs.DS, sregs.ES, sregs.FS, sregs.GS, sregs.SS = data, data, data, data, data
	sregs.TR = gokvm.Segment{Base: x86.TSSAddr, Limit: x86.TSSLimit, Selector: x86.TSSSel,
		Typ: trType, Present: 1}
	sregs.LDT = gokvm.Segment{Unusable: 1}
	sregs.GDT = gokvm.Descriptor{Base: x86.GDTAddr, Limit: x86.GDTLimit}
	sregs.IDT = gokvm.Descriptor{Base: x86.IDTAddr, Limit: x86.IDTLimit}
	sregs.CR0 = cr0PE | cr0MP | cr0ET | cr0NE | cr0WP | cr0PG
	sregs.CR3 = x86.PML4Addr
	sregs.CR4 = cr4PAE | cr4OSFXSR | cr4OSXMMEXCPT
	if cpu.xcr0 != 0 {
		sregs.CR4 |= cr4OSXSAVE
	}
	sregs.EFER = eferLME | eferLMA | eferNXE
	tmpl := sregs
	if err := ioctlErr(v.vcpufd, reqSetSregs, unsafe.Pointer(&sregs)); err != nil {
		return fmt.Errorf("KVM_SET_SREGS: %w", err)
	}
	s.sregs.CompareAndSwap(nil, &tmpl)
	return nil
}

// TSCHz is the guest's TSC frequency as KVM reports it, or 0 if unknown.
func (v *VCPU) TSCHz() uint64 { return v.tscHz }

// Run enters the guest until the next exit the monitor must handle. The
// calling goroutine must stay on its OS thread until Run returns
// (runtime.LockOSThread), as Kick signals that thread; successive Runs may
// come from different threads.
func (v *VCPU) Run() (vcpu.Exit, error) {
	v.tid.Store(int32(unix.Gettid()))
	v.restored = nil
	for {
		if v.kicked.Load() {
			return vcpu.Exit{Kind: vcpu.ExitKicked}, nil
		}
		binary.LittleEndian.PutUint32(v.run[runExitReason:], exitSentinel)
		// Not ioctl: KVM_RUN's EINTR is an exit of its own, which the
		// loop head turns into ExitKicked when Kick caused it. A raw
		// system call: see enter.
		v.entries++
		errno := v.sys.enter(v.vcpufd)
		switch errno {
		case 0, unix.EINTR, unix.EAGAIN:
		default:
			return vcpu.Exit{}, fmt.Errorf("KVM_RUN: %w", errno)
		}
		reason := binary.LittleEndian.Uint32(v.run[runExitReason:])
		if errno != 0 || reason == exitSentinel || gokvm.ExitType(reason) == gokvm.EXITINTR {
			// A signal: a kick, or the Go runtime's own preemption,
			// which it can carry out only at a call such as this one.
			if !v.kicked.Load() {
				runtime.Gosched()
			}
			continue // the loop head decides
		}
		x, err := v.decode(gokvm.ExitType(reason))
		if err == nil && x.Kind == 0 {
			continue // an emulated instruction: the guest goes on
		}
		return x, err
	}
}

// enter is KVM_RUN, as a raw system call unless Go cannot preempt a thread
// with a signal (rawRun): to Go's scheduler the goroutine then runs on, as
// it does, rather than blocks in the kernel. Its monitor thread would
// otherwise take the processor away from a vCPU thread in KVM_RUN on every
// 20 µs tick once the goroutine has made calls for 10 ms without blocking
// (the processor it gets back keeps a stale tick and is taken again), and
// where that thread shares the vCPU's CPU each tick is an exit of the
// guest: warm invocations on kvm_pvm took 60-140 µs instead of 39
// (docs/performance.md, "A slow phase"). A guest that runs on holds its
// processor until Go preempts it, with a signal (EINTR) after 10-20 ms, as
// Go code that computes would.
func (s *System) enter(vcpufd int) unix.Errno {
	if !s.rawRun {
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(vcpufd), reqRun, 0)
		return errno
	}
	_, _, errno := unix.RawSyscall(unix.SYS_IOCTL, uintptr(vcpufd), reqRun, 0)
	return errno
}

// asyncPreemptOff says whether GODEBUG turns off Go's preemption by signal
// (asyncpreemptoff=1, or gccheckmark=1, which implies it): a raw KVM_RUN
// would then hold its processor for as long as the guest runs, and a
// garbage collection would wait for it.
func asyncPreemptOff(godebug string) bool {
	off := false
	for _, kv := range strings.Split(godebug, ",") {
		switch k, v, _ := strings.Cut(strings.TrimSpace(kv), "="); k {
		case "asyncpreemptoff":
			off = v == "1"
		case "gccheckmark":
			if v == "1" {
				return true
			}
		}
	}
	return off
}

// Kick makes the current or next Run return ExitKicked: it sets immediate_exit
// (for a vCPU about to enter the guest) and signals the thread that entered
// the vCPU last (for one inside it). SIGURG is the Go runtime's own preemption signal, which every Go
// thread already tolerates at any time.
func (v *VCPU) Kick() {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.kicked.Store(true)
	if v.closed || v.run == nil {
		return
	}
	atomicStoreByte(&v.run[runImmediateExit], 1)
	if tid := v.tid.Load(); tid != 0 {
		_ = unix.Tgkill(unix.Getpid(), int(tid), unix.SIGURG)
	}
}

// atomicStoreByte stores v into the kvm_run word that holds b, which KVM reads
// concurrently. The other bytes of that word are never used by tender.
func atomicStoreByte(b *byte, v byte) {
	word := (*uint32)(unsafe.Pointer(uintptr(unsafe.Pointer(b)) &^ 3))
	shift := (uintptr(unsafe.Pointer(b)) & 3) * 8
	for {
		old := atomic.LoadUint32(word)
		if atomic.CompareAndSwapUint32(word, old, old&^(0xFF<<shift)|uint32(v)<<shift) {
			return
		}
	}
}

// Close releases the vCPU and the VM. The guest memory stays with its owner.
// The kernel's destruction of the VM may finish in the background (see
// teardown); System.Close waits for it.
func (v *VCPU) Close() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.closed {
		return nil
	}
	v.closed = true
	var errs []error
	if v.run != nil {
		errs = append(errs, unix.Munmap(v.run))
		v.run = nil
	}
	v.sys.teardown.close(v.vcpufd, v.vmfd)
	return errors.Join(errs...)
}
