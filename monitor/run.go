package monitor

import (
	"context"
	"fmt"
	"time"

	"github.com/tendervm/tender/hypercall"
	"github.com/tendervm/tender/hypercall/solo5"
	"github.com/tendervm/tender/monitor/vcpu"
)

// Stats describes one run.
type Stats struct {
	// Exits counts vCPU exits by kind (index with vcpu.ExitKind).
	Exits [vcpu.NumExitKinds]uint64
	// Hypercalls counts hypercalls by number.
	Hypercalls [hypercall.Count]uint64
	// Setup is the time from Run's start until the guest's first
	// instruction could run (VM and vCPU creation, boot information).
	Setup time.Duration
	// FirstHypercall is the time from Run's start to the guest's first
	// hypercall; zero if it made none.
	FirstHypercall time.Duration
	// Phases is where the start of the run went, phase by phase.
	Phases Phases
	// GuestTime is the time spent inside the guest (between entering it and
	// its exits), including the hypervisor's own exit handling.
	GuestTime time.Duration
	// Total is the wall time of Run.
	Total time.Duration
	// ConsoleBytes is how much console output the guest wrote.
	ConsoleBytes int64
	// ConsoleDropped is how many of ConsoleBytes were not delivered to
	// Config.Console by the end of the run: output still buffered when the
	// run was stopped with the console stalled, everything after a failed
	// Write, and a Write still under way (which may yet complete).
	ConsoleDropped int64
	// Net counts each network device's traffic, in manifest order (by
	// handle, when the guest declares no other devices); nil when the
	// guest declares no network devices.
	Net []NetStats
	// Block counts each block device's traffic, in manifest order; nil
	// when the guest declares no block devices.
	Block []BlockStats
	// solo5 says the guest is a Solo5 guest, whose hypercall numbers
	// HypercallCounts names with Solo5's names.
	solo5 bool
}

// Phases is where the start of a run went, phase by phase, each timed with
// the monotonic clock around its step. A phase a backend does not have is
// zero. Load happens in Host.New, the rest in Run (Setup covers Tables to
// Clock).
type Phases struct {
	// Load is mapping guest memory and copying the image, command line
	// and boot information into it.
	Load time.Duration
	// Tables is building the guest's page tables, GDT, IDT, TSS and
	// exception stubs (KVM).
	Tables time.Duration
	// VM is creating the VM and its memory slot (KVM), or starting the
	// guest process (process).
	VM time.Duration
	// VCPU is creating the vCPU and mapping its kvm_run (KVM).
	VCPU time.Duration
	// State is setting the vCPU's state: CPUID, special and general
	// registers, XCRs, MSRs, and reading its TSC rate (KVM).
	State time.Duration
	// Clock is writing the guest's clock into its boot information,
	// including any wait for the host's TSC calibration (process: part
	// of VM, just before the guest runs).
	Clock time.Duration
	// Ready is Config.Ready (tender run installs its seccomp filter there).
	Ready time.Duration
	// FirstExit is the first entry into the guest until its first exit
	// (process: from the first wait for an exit).
	FirstExit time.Duration
}

// ExitCounts returns the non-zero exit counters by kind name.
func (s *Stats) ExitCounts() map[string]uint64 {
	m := map[string]uint64{}
	for k, n := range s.Exits {
		if n != 0 {
			m[vcpu.ExitKind(k).String()] = n
		}
	}
	return m
}

// HypercallCounts returns the non-zero hypercall counters by name.
func (s *Stats) HypercallCounts() map[string]uint64 {
	m := map[string]uint64{}
	for nr, n := range s.Hypercalls {
		switch {
		case n == 0:
		case s.solo5 && nr < solo5.Count:
			m[solo5.Names[nr]] = n
		default:
			m[hypercallName(uint32(nr))] = n
		}
	}
	return m
}

func hypercallName(nr uint32) string {
	if nr < hypercall.Count && hypercall.Names[nr] != "" {
		return hypercall.Names[nr]
	}
	return fmt.Sprintf("hypercall %d", nr)
}

// outcome is what a hypercall handler decides about the run.
type outcome uint8

const (
	resume outcome = iota // continue the guest
	exited                // the guest exited with r.status
	parked                // the guest waits for a function call the pool has not handed over
)

// handler serves one hypercall whose argument structure is at arg. An error
// ends the run.
type handler func(r *run, arg uint64) (outcome, error)

// table is a fixed hypercall table, indexed by number. Numbers without a
// handler are protocol violations.
type table [hypercall.Count]handler

// coreTable is the table every guest gets; devices add their handlers to a
// VM's own copy while the VM is set up, never later.
func coreTable() table {
	return table{
		hypercall.NrWalltime:     (*run).walltime,
		hypercall.NrConsoleWrite: (*run).consoleWrite,
		hypercall.NrExit:         (*run).exit,
		hypercall.NrAbort:        (*run).abort,
		hypercall.NrFnNext:       (*run).fnNext,
	}
}

// run is the state of one Run.
type run struct {
	vm    *VM
	start time.Time
	stats Stats
	// consoleFrom is ConsoleBytes when the current function call was
	// taken: the console limit counts from there.
	consoleFrom int64
	status      int
	cpu         vcpu.VCPU
	con         *consoleSink // nil when the console is io.Discard
	cleanups    []func()     // undo begin, last first
	// entered says the vCPU has run (Phases.FirstExit is set).
	entered bool
	// first, when set, is the exit the loop takes first, without entering
	// the guest (a Fresh instance started from its pool's image).
	first *vcpu.Exit
	// parked says the loop returned because the guest waits for its next
	// function call; handing one over and looping again resumes it.
	parked bool
	// lastExit is when the vCPU last exited, from the loop's own clock
	// readings: a parked guest has waited since then.
	lastExit time.Time
}

func (r *run) result(status int) Result {
	r.stats.Total = time.Since(r.start)
	return Result{Status: status, Stats: r.stats}
}

// loop is the vCPU loop: enter the guest, dispatch its exit, repeat. It
// returns when the guest has exited or failed, or has parked (r.parked).
func (r *run) loop(ctx context.Context) (int, error) {
	cpu := r.cpu
	for {
		// Times since the run's start read the monotonic clock only:
		// time.Now reads the wall clock as well, 30-40 ns more per
		// exit on small hosts (issue 11).
		t := time.Since(r.start)
		var (
			x   vcpu.Exit
			err error
		)
		if r.first != nil {
			// Started from a Fresh pool's image: its first exit is
			// the image's, taken without entering the guest.
			x, r.first = *r.first, nil
		} else {
			x, err = cpu.Run()
		}
		d := time.Since(r.start) - t
		r.stats.GuestTime += d
		r.lastExit = r.start.Add(t + d)
		if !r.entered {
			r.entered = true
			r.stats.Phases.FirstExit = d
		}
		if err != nil {
			return 0, err
		}
		if int(x.Kind) < len(r.stats.Exits) {
			r.stats.Exits[x.Kind]++
		}
		if x.InReset {
			return 0, lostInReset(x)
		}
		switch x.Kind {
		case vcpu.ExitHypercall:
			if r.stats.FirstHypercall == 0 {
				r.stats.FirstHypercall = time.Since(r.start)
			}
			var h handler
			if x.Nr < hypercall.Count {
				h = r.vm.table[x.Nr]
				r.stats.Hypercalls[x.Nr]++
			}
			if h == nil {
				return 0, &ProtocolError{Reason: fmt.Sprintf("unknown hypercall %d (port %#x)", x.Nr, hypercall.PIOBase+x.Nr)}
			}
			switch o, err := h(r, x.Arg); {
			case err != nil:
				return 0, err
			case o == exited:
				return r.status, nil
			case o == parked:
				r.parked = true
				return 0, nil
			}
		case vcpu.ExitKicked:
			if err := r.vm.fn.errStopped(); err != nil {
				return 0, err
			}
			if ctx.Err() == nil && r.vm.host.closed.Load() {
				return 0, closedError() // Host.Close kicked it
			}
			return 0, stopped(ctx)
		case vcpu.ExitFault:
			return 0, &FaultError{Vector: x.Vector, ErrorCode: x.ErrorCode, HasErrorCode: x.HasErrorCode, RIP: x.RIP, CR2: x.CR2}
		default:
			return 0, crash(x)
		}
	}
}

// args returns the argument structure of hypercall nr at arg, checked to lie
// in memory the guest may read, and write too if the monitor answers in it.
func (r *run) args(nr uint32, arg uint64) ([]byte, error) {
	need := vcpu.Read
	if hypercall.ArgWritten(nr) {
		need |= vcpu.Write
	}
	b, err := r.vm.mem.Guest(arg, hypercall.ArgSize(nr), need)
	if err != nil {
		return nil, &ProtocolError{Hypercall: hypercallName(nr), Reason: "argument structure: " + err.Error()}
	}
	if need&vcpu.Write != 0 {
		r.vm.mem.Note(b) // a Fresh instance's reset puts it back (guestmem.Keep)
	}
	return b, nil
}

// buffer returns the guest buffer [addr, addr+n) that hypercall nr reads
// (need vcpu.Read) or fills (vcpu.Write), checked against the guest's own
// page permissions; what names it in an error.
func (r *run) buffer(nr uint32, what string, addr, n uint64, need vcpu.Perm) ([]byte, error) {
	b, err := r.vm.mem.Guest(addr, n, need)
	if err != nil {
		return nil, &ProtocolError{Hypercall: hypercallName(nr), Reason: what + ": " + err.Error()}
	}
	return b, nil
}

func (r *run) walltime(arg uint64) (outcome, error) {
	var w hypercall.Walltime
	a, err := readArgs(r, hypercall.NrWalltime, arg, &w)
	if err != nil {
		return 0, err
	}
	w.Nsecs = uint64(time.Now().UnixNano())
	writeArgs(a, &w)
	return resume, nil
}

func (r *run) consoleWrite(arg uint64) (outcome, error) {
	var w hypercall.ConsoleWrite
	if _, err := readArgs(r, hypercall.NrConsoleWrite, arg, &w); err != nil {
		return 0, err
	}
	data, n := w.Data, w.Len
	if n > hypercall.ConsoleWriteMax {
		return 0, &ProtocolError{Hypercall: "console_write", Reason: fmt.Sprintf("length %d exceeds %d", n, hypercall.ConsoleWriteMax)}
	}
	buf, err := r.buffer(hypercall.NrConsoleWrite, "buffer", data, n, vcpu.Read)
	if err != nil {
		return 0, err
	}
	return r.console("console_write", buf)
}

// console delivers buf, which hypercall name passed, to the console, up to
// the run's output limit.
func (r *run) console(name string, buf []byte) (outcome, error) {
	n := uint64(len(buf))
	over := false
	used := r.stats.ConsoleBytes - r.consoleFrom
	if lim := r.vm.limit; lim > 0 && used+int64(n) > lim {
		buf, over = buf[:lim-used], true
	}
	r.stats.ConsoleBytes += int64(len(buf))
	if r.con != nil && len(buf) > 0 {
		// If the run is kicked while this waits for the console, the
		// vCPU stops at its next entry.
		r.con.write(buf)
	}
	if over {
		return 0, &ProtocolError{Hypercall: name, Reason: fmt.Sprintf("console output limit of %d bytes reached", r.vm.limit)}
	}
	return resume, nil
}

func (r *run) exit(arg uint64) (outcome, error) {
	var e hypercall.Exit
	if _, err := readArgs(r, hypercall.NrExit, arg, &e); err != nil {
		return 0, err
	}
	st := e.Status
	if st > hypercall.ExitStatusMax {
		return 0, &ProtocolError{Hypercall: "exit", Reason: fmt.Sprintf("status %d above %d (statuses above are reserved for the monitor)", st, hypercall.ExitStatusMax)}
	}
	r.status = int(st)
	return exited, nil
}

func (r *run) abort(arg uint64) (outcome, error) {
	var ab hypercall.Abort
	if _, err := readArgs(r, hypercall.NrAbort, arg, &ab); err != nil {
		return 0, err
	}
	msg, n := ab.Msg, min(ab.Len, hypercall.AbortMsgMax)
	b, err := r.buffer(hypercall.NrAbort, "message", msg, n, vcpu.Read)
	if err != nil {
		return 0, err
	}
	return 0, &AbortError{Message: string(b)}
}
