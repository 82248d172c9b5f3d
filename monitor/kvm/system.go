package kvm

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"unsafe"

	gokvm "github.com/bobuhiro11/gokvm/kvm"
	"golang.org/x/sys/unix"
)

// System is an open KVM device with the facts every VM needs, read once.
// It is safe for concurrent use. Stop and close its vCPUs before Close
// (monitor.Host.Close kicks every run of its own first).
type System struct {
	// life is held shared while a VM is created from fd, and exclusively
	// by Close, which sets closed.
	life      sync.RWMutex
	closed    bool
	closeOnce sync.Once
	closeErr  error

	fd       int
	runSize  int
	syncRegs bool // KVM_CAP_SYNC_REGS covers the general registers

	// cpu is what KVM_GET_SUPPORTED_CPUID says, read in the background by
	// Open (it costs 0.45-0.65 ms on kvm_pvm hosts, which execute each
	// cpuid nested) while the first VM is loaded and created: cpuReady is
	// closed once it is set.
	cpu      cpuFeatures
	cpuReady chan struct{}
	// syncSregs: it covers the special registers too (see Snapshot).
	syncSregs bool
	// splitIRQChip: VMs can have their local APIC in the kernel (see
	// create).
	splitIRQChip bool
	// rawRun: KVM_RUN is a raw system call (enter), which needs Go's
	// preemption by signal.
	rawRun bool

	// sregs is the special-register state every vCPU starts with, built
	// from the first vCPU's and reused, which saves each later vCPU a
	// KVM_GET_SREGS; tscKHz is the TSC rate KVM gave the first vCPU, which
	// every vCPU of the process gets (tender never sets it). Both are set
	// once, by the first vCPU that gets them.
	sregs  atomic.Pointer[gokvm.Sregs]
	tscKHz atomic.Uint64
	// xstate says whether guest code can use XSAVE (xstate.go), once a
	// vCPU knows.
	xstate atomic.Int32
	// guestXCR0 is the guest's XCR0 as the probe read it (xstateUsable).
	guestXCR0 atomic.Uint64

	// teardown destroys closed VMs in the background (teardown.go).
	teardown teardown
}

// Config says how to open KVM.
type Config struct {
	// Device is the KVM device node, DefaultDevice when empty.
	Device string
	// CPUIDCache, when set, is a file that keeps the host's supported
	// CPUID between processes (cpuidcache.go): read instead of asking KVM
	// when it was written under the same boot and the same KVM modules,
	// else written after asking. Its directory is created (mode 0700) if
	// absent; a file or directory another user may write is not used.
	CPUIDCache string
}

// Open opens the KVM device at path (DefaultDevice when empty), without a
// CPUID cache.
func Open(path string) (*System, error) { return OpenConfig(Config{Device: path}) }

// OpenConfig opens KVM as cfg says.
func OpenConfig(cfg Config) (*System, error) {
	path := cfg.Device
	if path == "" {
		path = DefaultDevice
	}
	var fd int
	var err error
	for {
		fd, err = unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("%w: open %s: %w", ErrUnavailable, path, err)
	}
	s := &System{fd: fd, rawRun: !asyncPreemptOff(os.Getenv("GODEBUG"))}
	s.teardown.init()
	if err := s.init(cfg.CPUIDCache); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return s, nil
}

func (s *System) init(cpuidCache string) error {
	v, err := ioctl(s.fd, reqGetAPIVersion, nil, 0)
	if err != nil {
		return fmt.Errorf("%w: KVM_GET_API_VERSION: %w", ErrUnavailable, err)
	}
	if v != 12 {
		return fmt.Errorf("%w: KVM API version %d, want 12", ErrUnavailable, v)
	}
	size, err := ioctl(s.fd, reqGetVCPUMmapSize, nil, 0)
	if err != nil {
		return fmt.Errorf("KVM_GET_VCPU_MMAP_SIZE: %w", err)
	}
	s.runSize = int(size)
	if s.runSize < runSyncRegs+int(unsafe.Sizeof(gokvm.Regs{})) {
		return fmt.Errorf("%w: kvm_run of %d bytes is too small", ErrUnavailable, s.runSize)
	}
	s.cpuReady = make(chan struct{})
	go func() {
		defer close(s.cpuReady)
		s.cpu = supportedCPUID(s.fd, cpuidCache)
	}()
	// Sync regs let every exit bring the general registers in kvm_run, which
	// saves a KVM_GET_REGS on each hypercall.
	if c, err := ioctl(s.fd, reqCheckExtension, nil, capSyncRegs); err == nil && uint64(c)&syncX86Regs != 0 {
		s.syncRegs = true
		s.syncSregs = uint64(c)&syncX86Sregs != 0 && s.runSize >= runSyncSregs+int(unsafe.Sizeof(gokvm.Sregs{}))
	}
	if c, err := ioctl(s.fd, reqCheckExtension, nil, capSplitIRQChip); err == nil && c > 0 {
		s.splitIRQChip = true
	}
	return nil
}

// cpuFeatures is the CPUID every vCPU gets and what tender derives from it.
type cpuFeatures struct {
	cpuid  *cpuid2
	xcr0   uint64 // 0 when the host has no XSAVE
	trType uint8  // the TSS type TR gets: see tssType
	cached bool   // read from the cache file (cpuidcache.go)
	err    error
}

// supportedCPUID asks KVM for the CPUID it supports, or the cache file
// (cpuidcache.go) when there is one.
func supportedCPUID(kvmfd int, cache string) cpuFeatures {
	var (
		c      *cpuid2
		cached bool
		err    error
	)
	if cache != "" {
		c, cached, err = cachedCPUID(kvmfd, cache)
	} else {
		c, err = askCPUID(kvmfd)
	}
	if err != nil {
		return cpuFeatures{err: err}
	}
	entries := c.entries[:min(c.nent, maxCPUIDEntries)]
	return cpuFeatures{cpuid: c, xcr0: xcr0(entries), trType: tssType(entries), cached: cached}
}

// askCPUID is KVM_GET_SUPPORTED_CPUID.
func askCPUID(kvmfd int) (*cpuid2, error) {
	c := &cpuid2{nent: maxCPUIDEntries}
	if err := ioctlErr(kvmfd, reqGetSupportedCPUID, unsafe.Pointer(c)); err != nil {
		return nil, fmt.Errorf("KVM_GET_SUPPORTED_CPUID: %w", err)
	}
	return c, nil
}

// Settle waits for what Open does in the background (reading the supported
// CPUID), so that a seccomp filter installed afterwards meets none of its
// system calls.
func (s *System) Settle() { <-s.cpuReady }

// features waits for Open's KVM_GET_SUPPORTED_CPUID.
func (s *System) features() (*cpuFeatures, error) {
	<-s.cpuReady
	return &s.cpu, s.cpu.err
}

// tssType picks the type of the 64-bit TSS loaded in TR. VMX requires the
// busy type (11) for a guest in IA-32e mode. SVM checks neither, and QEMU's
// emulation of it denies every I/O-bitmap access unless TR holds the
// available type (9), which is also what LTR leaves in its own TR cache; so
// AMD hosts get 9, and tender's KVM tests can run on an emulated AMD CPU.
func tssType(entries []gokvm.CPUIDEntry2) uint8 {
	for _, e := range entries {
		// "AuthenticAMD" or "HygonGenuine": EBX starts "Auth" or "Hygo".
		if e.Function == 0 && (e.Ebx == 0x68747541 || e.Ebx == 0x6f677948) {
			return 0x9
		}
	}
	return 0xB
}

// xcr0 picks the XSAVE state components to enable: x87, SSE and AVX, as far
// as the host supports them.
func xcr0(entries []gokvm.CPUIDEntry2) uint64 {
	var xsave bool
	for _, e := range entries {
		if e.Function == 1 {
			xsave = e.Ecx&(1<<26) != 0
		}
	}
	if !xsave {
		return 0
	}
	for _, e := range entries {
		if e.Function == 0xD && e.Index == 0 {
			return uint64(e.Eax) & 0x7 // x87 | SSE | AVX
		}
	}
	return 0x3
}

// Close closes the KVM device: NewVCPU fails from then on, and Close waits
// for the VMs closed so far to be destroyed. It may be called more than
// once, concurrently too.
func (s *System) Close() error {
	s.closeOnce.Do(func() { s.closeErr = s.close() }) // a concurrent Close waits
	return s.closeErr
}

func (s *System) close() error {
	s.life.Lock() // no VM is being created meanwhile
	s.closed = true
	s.life.Unlock()
	<-s.cpuReady // it uses s.fd
	terr := s.teardown.wait()
	return errors.Join(unix.Close(s.fd), terr)
}
