package monitor

import (
	"context"
	"fmt"
	"io"
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
	"github.com/tendervm/tender/monitor/vcpu"
)

// DefaultMemSize is the guest memory size when Config.MemSize is zero.
const DefaultMemSize = 64 << 20

// DefaultConsoleLimit is the console output limit when Config.ConsoleLimit
// is zero.
const DefaultConsoleLimit = 16 << 20

// Config describes one guest.
type Config struct {
	// ELF is the guest executable. New loads it before it returns; NewPool
	// keeps a copy. Either way the caller may reuse the slice afterwards.
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
	// rest of the output is discarded; the run goes on, unless
	// ConsoleRequired.
	Console io.Writer
	// ConsoleRequired makes the console part of a run's outcome: a Write
	// that fails (its reader gone, a full disk) stops the guest, and Run
	// returns a *ConsoleError whatever the guest did, unless the guest
	// faulted, aborted or broke the protocol first. tender run sets it: its
	// console is stdout. Pools refuse it: a function's console is
	// diagnostics.
	ConsoleRequired bool
	// ConsoleLimit ends the run with a ProtocolError once the guest has
	// written more than this many bytes; DefaultConsoleLimit when zero,
	// unlimited when negative. Output up to the limit is delivered. A
	// function instance's limit counts per call (from the call's fn_next,
	// and before its first from its start), so that a warm one is not ended
	// by output its earlier calls wrote.
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
	// stopRun stops the Run under way, which closes runDone as it returns.
	stopRun context.CancelCauseFunc
	runDone chan struct{}
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
	if h.closed.Load() {
		return nil, closedError()
	}
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
