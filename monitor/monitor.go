// Package monitor runs unikernel guests: static ELF executables that talk to
// the host only through tender's hypercalls (package hypercall).
//
// A Host is a connection to the hypervisor, shared by any number of VMs. A VM
// is one guest: New validates and loads its ELF into fresh guest memory, Run
// boots it and serves its hypercalls until it exits, and Close releases
// everything. There is no global state: every resource hangs off a Host or VM.
//
//	host, err := monitor.NewHost(monitor.HostConfig{})
//	...
//	defer host.Close()
//	vm, err := host.New(monitor.Config{ELF: image, Console: os.Stdout})
//	...
//	defer vm.Close()
//	res, err := vm.Run(ctx)
//
// Two backends run guests. BackendKVM (the default) runs each guest in its own
// KVM virtual machine at CPL 3 under page tables and descriptor tables the
// monitor owns. BackendProcess, for hosts without KVM, runs it as a Linux
// process set up under ptrace, whose seccomp filter hands every system call
// to the monitor as a user notification (the stub's fault reports, which
// carry the hypercalls, and any system call of the guest's own, which ends
// the run), except rt_sigreturn and close issued from the stub's code page.
package monitor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/tendervm/tender/hypercall"
	"github.com/tendervm/tender/hypercall/solo5"
	"github.com/tendervm/tender/monitor/blockdev"
	"github.com/tendervm/tender/monitor/guestmem"
	"github.com/tendervm/tender/monitor/loader"
	"github.com/tendervm/tender/monitor/netdev"
	"github.com/tendervm/tender/monitor/tsc"
	"github.com/tendervm/tender/monitor/vcpu"
)

// Backend selects how guests are run.
type Backend string

// Backends.
const (
	// BackendKVM runs each guest in a KVM virtual machine.
	BackendKVM Backend = "kvm"
	// BackendProcess runs each guest as a traced, seccomp-confined process.
	BackendProcess Backend = "process"
	// BackendAuto is BackendKVM where KVM can be used, else BackendProcess.
	BackendAuto Backend = "auto"
)

// HostConfig configures a Host. The zero value uses KVM at /dev/kvm.
type HostConfig struct {
	// Backend is BackendKVM when empty.
	Backend Backend
	// Device is the KVM device node, kvm.DefaultDevice when empty.
	Device string
}

// Host is a connection to the hypervisor that creates VMs. It is safe for
// concurrent use. Close it after every VM created from it.
type Host struct {
	backend Backend
	be      backend // what running a guest takes (backend.go)

	// tscHz is the host TSC frequency, measured once for backends that
	// cannot report the guest's, from tscMark (taken by NewHost, or on
	// first use) to its first use.
	tscMu   sync.Mutex
	tscMark tsc.Mark
	tscHz   uint64
}

// NewHost opens the hypervisor. With BackendKVM it fails, wrapping
// kvm.ErrUnavailable, where KVM cannot be used.
func NewHost(cfg HostConfig) (*Host, error) {
	h := &Host{backend: cfg.Backend}
	var err error
	switch cfg.Backend {
	case "", BackendKVM, BackendAuto:
		h.be, err = openKVM(cfg.Device)
		if err == nil || cfg.Backend != BackendAuto {
			if err != nil {
				return nil, err
			}
			h.backend = BackendKVM
			break
		}
		h.backend = BackendProcess
		fallthrough
	case BackendProcess:
		if h.be, err = openProcess(); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("monitor: unknown backend %q (want %q, %q or %q)", cfg.Backend, BackendKVM, BackendProcess, BackendAuto)
	}
	if h.be.clockFirst() {
		// Every guest needs the host's rate: measure it over the time
		// the first one takes to load and start.
		h.tscMark = tsc.Now()
	}
	return h, nil
}

// Backend reports which backend the host runs guests with (never
// BackendAuto).
func (h *Host) Backend() Backend { return h.backend }

// Settle waits for the set-up NewHost left running in the background
// (under KVM, reading the CPU features it supports). A process that
// confines itself with a seccomp filter after NewHost calls it first, so
// that nothing of that set-up meets the filter (confine.ForHost does).
func (h *Host) Settle() { h.be.settle() }

// Close releases the hypervisor connection. Guests of the host's that are
// still running are killed.
func (h *Host) Close() error { return h.be.close() }

// tscWindow is the shortest time the host TSC is measured over: about 0.02%
// against the monotonic clock.
const tscWindow = 500 * time.Microsecond

// hostTSCHz returns the host TSC frequency, for a backend that could not
// report the guest's (the process backend; KVM without KVM_GET_TSC_KHZ):
// measured on first use from the mark NewHost took, after waiting out what
// is left of tscWindow (asleep, not spinning).
func (h *Host) hostTSCHz() uint64 {
	h.tscMu.Lock()
	defer h.tscMu.Unlock()
	if h.tscHz == 0 {
		if h.tscMark == (tsc.Mark{}) {
			h.tscMark = tsc.Now()
		}
		h.tscHz = h.tscMark.Hz(tscWindow)
	}
	return h.tscHz
}

// DefaultMemSize is the guest memory size when Config.MemSize is zero.
const DefaultMemSize = 64 << 20

// DefaultConsoleLimit is the console output limit when Config.ConsoleLimit
// is zero.
const DefaultConsoleLimit = 16 << 20

// Config describes one guest.
type Config struct {
	// ELF is the guest executable.
	ELF []byte
	// Name is the program name the guest sees as its first word of the
	// command line; "guest" when empty.
	Name string
	// Args are the guest's arguments. None may contain white space or NUL.
	Args []string
	// MemSize is the guest memory size in bytes, a multiple of
	// hypercall.MemAlign between hypercall.MemMin and hypercall.MemMax
	// (solo5.MemMax for a Solo5 guest); DefaultMemSize when zero. Memory is allocated as the guest touches it.
	MemSize uint64
	// Console receives the guest's console output; io.Discard when nil.
	// The vCPU never calls Write: a goroutine of the run's does, while the
	// guest runs on up to ConsoleBuffer bytes ahead, then waits. The run's
	// deadline or cancellation ends that wait, and output not delivered by
	// then is dropped (Stats.ConsoleDropped). Run returns once the output
	// is delivered, except that a Write still blocked when the run is
	// stopped is left to return on its goroutine. After a failed Write the
	// rest of the output is discarded; the run goes on.
	Console io.Writer
	// ConsoleLimit ends the run with a ProtocolError once the guest has
	// written more than this many bytes; DefaultConsoleLimit when zero,
	// unlimited when negative. Output up to the limit is delivered.
	ConsoleLimit int64
	// Net attaches network devices by name: each device the guest declares
	// in its manifest must be attached, and only those (see
	// docs/network.md). The VM does not own them: close them after Run. A
	// device serves one running VM at a time.
	Net map[string]netdev.Device
	// Block attaches block devices by name, under the same rule as Net:
	// every block device the guest declares, and only those. The VM does
	// not own them: close them after Run. Guests running at the same time
	// may share one, but nothing orders their writes.
	Block map[string]*blockdev.Device
	// Ready, when set, is called by every run of a guest made from this
	// configuration (Run, and each pool instance's boot) on the goroutine
	// that serves the vCPU, once the VM, its vCPU and its devices exist,
	// just before the guest is entered (KVM) or its first exit served
	// (process). An error ends the run. tender run installs its seccomp
	// filter here (package confine): all the run needs is open by then.
	Ready func() error
}

// VM is one loaded guest. Run it once; then Close it.
type VM struct {
	host    *Host
	cfg     Config
	mem     *guestmem.Memory
	img     *loader.Image
	boot    vcpu.Boot
	console io.Writer
	limit   int64
	table   table
	fn      *fnState    // set when the VM serves function invocations
	net     *netState   // set when the guest declares network devices
	block   *blockState // set when the guest declares block devices
	// from, for a Fresh instance started from its pool's image, says how
	// (see instantiate); nil otherwise.
	from *imageStart
	// loadTime is how long New took to map and load the guest
	// (Phases.Load).
	loadTime time.Duration

	mu      sync.Mutex
	started bool
	closed  bool
}

// New validates cfg, parses and checks the ELF, and loads it into fresh guest
// memory. Nothing runs until Run.
func (h *Host) New(cfg Config) (*VM, error) {
	g, err := prepare(cfg)
	if err != nil {
		return nil, err
	}
	return h.instantiate(g, nil)
}

// guest is a validated configuration with its parsed image: what every
// instance of one function shares.
type guest struct {
	cfg     Config
	cmdline string
	img     *loader.Image
}

// memSizeError is the error for a guest memory of size bytes.
func memSizeError(size uint64) error {
	return fmt.Errorf("monitor: guest memory of %d bytes: want a multiple of %d MiB from %d MiB to %d MiB (%d MiB for a Solo5 guest)",
		size, hypercall.MemAlign>>20, hypercall.MemMin>>20, hypercall.MemMax>>20, solo5.MemMax>>20)
}

// prepare validates cfg and parses its ELF, touching no guest memory.
func prepare(cfg Config) (*guest, error) {
	if cfg.MemSize == 0 {
		cfg.MemSize = DefaultMemSize
	}
	// A Solo5 guest may have more memory than a tender guest: which it is
	// is known once the ELF is parsed.
	if cfg.MemSize < hypercall.MemMin || cfg.MemSize > solo5.MemMax || cfg.MemSize%hypercall.MemAlign != 0 {
		return nil, memSizeError(cfg.MemSize)
	}
	img, err := loader.Parse(cfg.ELF, cfg.MemSize)
	if err != nil {
		return nil, err
	}
	if img.Solo5 == nil && cfg.MemSize > hypercall.MemMax {
		return nil, memSizeError(cfg.MemSize)
	}
	if img.Solo5 != nil {
		cmdline, err := solo5CommandLine(cfg.Args)
		if err != nil {
			return nil, err
		}
		g := &guest{cfg: cfg, cmdline: cmdline, img: img}
		return g, checkSolo5(g)
	}
	cmdline, err := commandLine(cfg.Name, cfg.Args)
	if err != nil {
		return nil, err
	}
	if _, err := netDevices(img.Devices, cfg.Net); err != nil {
		return nil, err
	}
	if _, err := blockDevices(img.Devices, cfg.Block); err != nil {
		return nil, err
	}
	return &guest{cfg: cfg, cmdline: cmdline, img: img}, nil
}

// instantiate maps fresh guest memory and loads a prepared guest into it.
// For a Fresh instance (fresh not nil) whose pool has an image, the memory
// is a view of the image instead, already loaded, and the vCPU starts from
// the image's state (VM.from).
func (h *Host) instantiate(g *guest, fresh *freshState) (*VM, error) {
	cfg := g.cfg
	tbl := coreTable()
	var net *netState
	var block *blockState
	var err error
	if g.img.Solo5 != nil {
		tbl = solo5Table()
		devs := solo5Devices(g)
		if net, err = solo5Net(devs, cfg.Net); err == nil {
			block, err = solo5Block(devs, cfg.Block)
		}
	} else if net, err = netDevices(g.img.Devices, cfg.Net); err == nil {
		block, err = blockDevices(g.img.Devices, cfg.Block)
	}
	if err != nil {
		return nil, err
	}
	t := time.Now()
	var (
		mem  *guestmem.Memory
		from *imageStart
	)
	if fresh != nil && fresh.image != nil {
		if fd, start := fresh.image.get(); fd >= 0 {
			if mem, err = h.be.viewMemory(fd, cfg.MemSize); err != nil {
				return nil, err
			}
			from = &start
		}
	}
	if mem == nil {
		if mem, err = h.be.newMemory(cfg.MemSize, fresh != nil); err != nil {
			return nil, err
		}
	}
	vm := &VM{host: h, cfg: cfg, mem: mem, img: g.img, console: cfg.Console, limit: cfg.ConsoleLimit, table: tbl, net: net, block: block, from: from}
	if net != nil && g.img.Solo5 == nil {
		net.register(&vm.table)
	}
	if block != nil && g.img.Solo5 == nil {
		block.register(&vm.table)
	}
	if vm.console == nil {
		vm.console = io.Discard
	}
	if vm.limit == 0 {
		vm.limit = DefaultConsoleLimit
	}
	load := func() error { return vm.load(g.cmdline) }
	if from != nil {
		load = vm.layout // the image holds the loaded guest
	}
	if err := load(); err != nil {
		mem.Close()
		return nil, err
	}
	vm.boot.Snapshot = fresh != nil
	vm.loadTime = time.Since(t)
	return vm, nil
}

func commandLine(name string, args []string) (string, error) {
	if name == "" {
		name = "guest"
	}
	words := append([]string{name}, args...)
	for i, w := range words {
		if w == "" || strings.ContainsAny(w, " \t\n\r\v\f\x00") {
			return "", fmt.Errorf("monitor: guest argument %d (%q) is empty or contains white space or NUL", i, w)
		}
	}
	s := strings.Join(words, " ")
	if len(s)+1 > hypercall.CmdlineMax {
		return "", fmt.Errorf("monitor: guest command line of %d bytes exceeds %d", len(s)+1, hypercall.CmdlineMax)
	}
	return s, nil
}

// load copies the image and command line into guest memory and derives the
// guest's mappings: boot info read-only, each segment with its own
// permissions, everything above the image read-write for heap and stack.
func (vm *VM) load(cmdline string) error {
	if vm.img.Solo5 != nil {
		return vm.loadSolo5(cmdline)
	}
	// Pages written here are allocated in one go rather than fault by
	// fault.
	prefault := []struct{ addr, n uint64 }{
		{hypercall.BootInfoAddr, hypercall.PageSize},
		{hypercall.CmdlineAddr, uint64(len(cmdline)) + 1},
	}
	for _, p := range prefault {
		if err := vm.mem.Populate(p.addr, p.n); err != nil {
			return err
		}
	}
	if err := vm.writeSegments(); err != nil {
		return err
	}
	if err := vm.mem.Write(hypercall.CmdlineAddr, append([]byte(cmdline), 0)); err != nil {
		return err
	}
	if err := vm.layout(); err != nil {
		return err
	}
	return vm.writeBootInfo(hypercall.BootInfo{
		Magic:      hypercall.BootInfoMagic,
		Version:    hypercall.ABIVersion,
		MemSize:    vm.mem.Size(),
		HeapStart:  vm.img.End,
		StackTop:   vm.mem.Size(),
		Cmdline:    hypercall.CmdlineAddr,
		CmdlineLen: uint64(len(cmdline)),
	})
}

// writeSegments copies the image into guest memory, allocating its pages
// and the top of the stack the guest starts on in one go.
func (vm *VM) writeSegments() error {
	for _, s := range vm.img.Segments {
		if err := vm.mem.Populate(s.Addr, uint64(len(s.Data))); err != nil {
			return err
		}
	}
	if err := vm.mem.Populate(vm.mem.Size()-hypercall.PageSize, hypercall.PageSize); err != nil {
		return err
	}
	for _, s := range vm.img.Segments {
		if err := vm.mem.Write(s.Addr, s.Data); err != nil {
			return err
		}
	}
	return nil
}

// segmentRegions returns regions with the image's mappings appended: each
// segment with its own permissions, everything above the image read-write
// for heap and stack.
func (vm *VM) segmentRegions(regions []vcpu.Region) []vcpu.Region {
	for _, s := range vm.img.Segments {
		lo := s.Addr &^ (hypercall.PageSize - 1)
		hi := (s.Addr + s.MemSize + hypercall.PageSize - 1) &^ (hypercall.PageSize - 1)
		regions = append(regions, vcpu.Region{Addr: lo, Size: hi - lo, Perm: s.Perm | vcpu.Read})
	}
	return append(regions, vcpu.Region{Addr: vm.img.End, Size: vm.mem.Size() - vm.img.End, Perm: vcpu.Read | vcpu.Write})
}

// layout derives the guest's mappings and boot state from its image,
// writing nothing: load does it for a new guest, and it is all a view of a
// Fresh pool's image needs.
func (vm *VM) layout() error {
	regions := vm.segmentRegions([]vcpu.Region{{Addr: hypercall.BootInfoAddr, Size: hypercall.CmdlineAddr + hypercall.CmdlineMax - hypercall.BootInfoAddr, Perm: vcpu.Read}})
	// Hypercall buffers are checked against the very table the guest's
	// mappings are built from.
	if err := vm.mem.SetLayout(regions); err != nil {
		return err
	}
	vm.boot = vcpu.Boot{Regions: regions, Entry: vm.img.Entry, StackTop: vm.mem.Size(), BootInfo: hypercall.BootInfoAddr}
	return nil
}

// bootTSCHzAddr is where BootInfo.TSCHz lies, followed by BootTSC and
// BootWalltime: the fields Run fills in once the vCPU exists.
const bootTSCHzAddr = hypercall.BootInfoAddr + uint64(unsafe.Offsetof(hypercall.BootInfo{}.TSCHz))

func (vm *VM) writeBootInfo(bi hypercall.BootInfo) error {
	fields := []uint64{bi.Magic, bi.Version, bi.MemSize, bi.HeapStart, bi.StackTop,
		bi.Cmdline, bi.CmdlineLen, bi.TSCHz, bi.BootTSC, bi.BootWalltime}
	for i, v := range fields {
		if err := vm.mem.PutUint64(hypercall.BootInfoAddr+uint64(8*i), v); err != nil {
			return err
		}
	}
	return nil
}

// writeClock fills in the guest's TSC rate, its TSC at boot and the wall
// clock at that moment.
func (vm *VM) writeClock(tscHz, bootTSC uint64) error {
	if vm.img.Solo5 != nil {
		// A Solo5 guest reads only the TSC rate; wall time is a hypercall.
		return vm.mem.PutUint64(solo5.BootInfoAddr+solo5.BootCPUCycleFreq, tscHz)
	}
	for i, v := range []uint64{tscHz, bootTSC, uint64(time.Now().UnixNano())} {
		if err := vm.mem.PutUint64(bootTSCHzAddr+uint64(8*i), v); err != nil {
			return err
		}
	}
	return nil
}

// Result is the outcome of a run.
type Result struct {
	// Status is the guest's exit status; meaningful only when Run returned no
	// error.
	Status int
	// Stats describes the run, also when it failed.
	Stats Stats
}

// ErrAlreadyRun is returned by a second Run of the same VM.
var ErrAlreadyRun = errors.New("monitor: VM already ran; create a new one")

// Run boots the guest and serves its hypercalls until it exits, fails, or ctx
// is done; a cancelled run stops within milliseconds and returns a
// StoppedError. The guest's vCPU is served on the calling goroutine (locked
// to its OS thread for the duration under KVM).
func (vm *VM) Run(ctx context.Context) (Result, error) {
	if vm.host.be.lockThread() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
	}
	r, err := vm.begin(ctx)
	if err != nil {
		return r.finish(0, err)
	}
	status, err := r.loop(ctx)
	return r.finish(status, err)
}

// begin starts a run: it creates the vCPU, fills in the guest's clock and
// wires ctx to stop it. On error the run must still be finished.
func (vm *VM) begin(ctx context.Context) (*run, error) {
	r := &run{vm: vm, start: time.Now()}
	r.stats.solo5 = vm.img.Solo5 != nil
	ph := &r.stats.Phases
	ph.Load = vm.loadTime
	vm.mu.Lock()
	if vm.started || vm.closed {
		vm.mu.Unlock()
		return r, ErrAlreadyRun
	}
	vm.started = true
	vm.mu.Unlock()

	if ctx.Err() != nil {
		return r, stopped(ctx)
	}
	// Guest TSC and wall clock sampled together, so the guest can tell wall
	// time without an exit. A guest process starts running at once, so its
	// clock goes in just before (Boot.Start); a KVM vCPU says its TSC rate
	// once it exists and runs only in the loop.
	first := vm.host.be.clockFirst()
	boot := vm.boot
	if first {
		// Written once the guest process is set up, just before it
		// runs, so that the host's TSC calibration (started by NewHost)
		// overlaps the process's start rather than delaying it.
		boot.Start = func() error {
			t := time.Now()
			err := vm.writeClock(vm.host.hostTSCHz(), tsc.Read())
			ph.Clock = time.Since(t)
			return err
		}
	}
	cpu, tscHz, err := vm.host.be.newVCPU(vm.mem, boot, ph)
	if err != nil {
		return r, err
	}
	r.cpu = cpu
	r.cleanups = append(r.cleanups, func() { cpu.Close() })
	if !first && vm.from != nil {
		// A view of a Fresh pool's image: the guest booted there, and
		// its clock goes on from the image's.
		t := time.Now()
		tsc, err := vm.imageTSC()
		if err != nil {
			return r, err
		}
		if err := vm.host.be.restoreVCPU(cpu, vm.from.state, tsc); err != nil {
			return r, err
		}
		ph.Clock = time.Since(t)
		r.first = &vcpu.Exit{Kind: vcpu.ExitHypercall, Nr: hypercall.NrFnNext, Arg: vm.from.arg}
	} else if !first {
		t := time.Now()
		if tscHz == 0 {
			tscHz = vm.host.hostTSCHz()
		}
		boot, err := vm.host.be.guestTSC(cpu)
		if err != nil {
			return r, err
		}
		if err := vm.writeClock(tscHz, boot); err != nil {
			return r, err
		}
		ph.Clock = time.Since(t)
	}
	kick := cpu.Kick
	if vm.net != nil {
		// A guest blocked in poll is woken too, so it stops at once.
		w, err := vm.net.begin(r)
		if err != nil {
			return r, err
		}
		r.cleanups = append(r.cleanups, func() { w.Close() })
		kick = func() { cpu.Kick(); w.Wake() }
	}
	if vm.block != nil {
		vm.block.begin(r)
	}
	if vm.console != io.Discard {
		// So is a guest waiting for a stalled console.
		con, k := newConsoleSink(vm.console), kick
		r.con = con
		kick = func() { k(); con.wake() }
	}
	r.stats.Setup = time.Since(r.start)
	stop := context.AfterFunc(ctx, kick)
	r.cleanups = append(r.cleanups, func() { stop() })
	if vm.fn != nil {
		vm.fn.kick = kick
	}
	if vm.cfg.Ready != nil {
		t := time.Now()
		if err := vm.cfg.Ready(); err != nil {
			return r, err
		}
		ph.Ready = time.Since(t)
	}
	return r, nil
}

// finish ends a run that stopped with status and err: it delivers the
// console output left, fails the call in flight, if any, and releases the
// vCPU.
func (r *run) finish(status int, err error) (Result, error) {
	if con := r.con; con != nil {
		// The output goes out before Run returns, within the run's or
		// the call's deadline (a kick ends the flush). An instance that
		// ends before taking the call handed over has no kick armed, so
		// that call's deadline bounds the wait; one retired, none.
		switch f := r.vm.fn; {
		case f == nil || f.cur != nil:
			con.flush()
		case f.next != nil:
			con.flushBy(f.next.deadline, f.next.ctx.Done())
		}
		r.stats.ConsoleDropped = con.end()
	}
	if r.vm.fn != nil {
		r.vm.fn.end(status, err)
	}
	for i := len(r.cleanups) - 1; i >= 0; i-- {
		r.cleanups[i]()
	}
	r.cleanups = nil
	return r.result(status), err
}

// Close releases the guest's memory. It must not be called while Run is
// running.
func (vm *VM) Close() error {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	if vm.closed {
		return nil
	}
	vm.closed = true
	return vm.mem.Close()
}

// Run loads and runs one guest on a host of its own, then releases
// everything: the one-call form of NewHost, Host.New, VM.Run and Close.
func Run(ctx context.Context, hc HostConfig, cfg Config) (Result, error) {
	h, err := NewHost(hc)
	if err != nil {
		return Result{}, err
	}
	defer h.Close()
	vm, err := h.New(cfg)
	if err != nil {
		return Result{}, err
	}
	defer vm.Close()
	return vm.Run(ctx)
}
