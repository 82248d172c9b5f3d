package monitor

import (
	"encoding/binary"
	"fmt"
	"strings"
	"time"

	"github.com/tendervm/tender/hypercall"
	"github.com/tendervm/tender/hypercall/solo5"
	"github.com/tendervm/tender/monitor/vcpu"
)

// Solo5 reports whether the guest is a Solo5 hvt executable.
func (vm *VM) Solo5() bool { return vm.img.Solo5 != nil }

// solo5Table is the hypercall table of a Solo5 guest: Solo5's numbers, on
// the same ports as tender's.
func solo5Table() table {
	return table{
		solo5.NrWalltime:   (*run).s5Walltime,
		solo5.NrPuts:       (*run).s5Puts,
		solo5.NrPoll:       (*run).s5Poll,
		solo5.NrBlockWrite: (*run).s5Block,
		solo5.NrBlockRead:  (*run).s5Block,
		solo5.NrNetWrite:   (*run).s5Net,
		solo5.NrNetRead:    (*run).s5Net,
		solo5.NrHalt:       (*run).s5Halt,
	}
}

// solo5CommandLine is a Solo5 guest's command line: its arguments, checked as
// a tender guest's, without a program name.
func solo5CommandLine(args []string) (string, error) {
	for i, w := range args {
		if w == "" || strings.ContainsAny(w, " \t\n\r\v\f\x00") {
			return "", fmt.Errorf("monitor: guest argument %d (%q) is empty or contains white space or NUL", i, w)
		}
	}
	s := strings.Join(args, " ")
	if len(s)+1 > solo5.CmdlineMax {
		return "", fmt.Errorf("monitor: guest command line of %d bytes exceeds %d", len(s)+1, solo5.CmdlineMax)
	}
	return s, nil
}

// checkSolo5 refuses what tender cannot give a Solo5 guest yet: devices.
func checkSolo5(g *guest) error {
	for h, e := range g.img.Solo5.Devices() {
		kind := "network"
		if e.Type == solo5.TypeBlock {
			kind = "block"
		}
		// TODO(solo5): attach network devices through netState, and block
		// devices once the block device type lands (merge with the
		// -block work).
		return fmt.Errorf("monitor: Solo5 guest declares %s device %q (handle %d): Solo5 devices are not supported yet", kind, e.Name, h+1)
	}
	if len(g.cfg.Net) > 0 {
		for name := range g.cfg.Net {
			return fmt.Errorf("monitor: network device %q was attached but the guest declares no network devices", name)
		}
	}
	if g.cfg.MemSize%solo5.MemAlign != 0 {
		return fmt.Errorf("monitor: Solo5 guest memory of %d bytes: want a multiple of %d MiB", g.cfg.MemSize, solo5.MemAlign>>20)
	}
	return nil
}

// loadSolo5 lays out a Solo5 guest: the boot information, the completed
// manifest and the command line in one read-only range at
// solo5.BootInfoAddr, the image, the rest read-write; RSP starts 8 bytes
// below the top of memory.
func (vm *VM) loadSolo5(cmdline string) error {
	regions := []vcpu.Region{{Addr: solo5.BootInfoAddr, Size: solo5.BootEnd - solo5.BootInfoAddr, Perm: vcpu.Read}}
	if err := vm.mem.Populate(solo5.BootInfoAddr, solo5.BootEnd-solo5.BootInfoAddr); err != nil {
		return err
	}
	regions, err := vm.loadSegments(regions)
	if err != nil {
		return err
	}
	if err := vm.mem.Write(solo5.CmdlineAddr, append([]byte(cmdline), 0)); err != nil {
		return err
	}
	if err := vm.mem.Write(solo5.ManifestAddr, solo5Manifest(vm)); err != nil {
		return err
	}
	if err := vm.mem.SetLayout(regions); err != nil {
		return err
	}
	size := vm.mem.Size()
	vm.boot = vcpu.Boot{Regions: regions, Entry: vm.img.Entry, StackTop: size - 8, BootInfo: solo5.BootInfoAddr, EmulatePriv: true}
	bi := make([]byte, solo5.BootInfoSize)
	le := binary.LittleEndian
	le.PutUint64(bi[solo5.BootMemSize:], size)
	le.PutUint64(bi[solo5.BootKernelEnd:], vm.img.End)
	le.PutUint64(bi[solo5.BootCmdline:], solo5.CmdlineAddr)
	le.PutUint64(bi[solo5.BootManifest:], solo5.ManifestAddr)
	return vm.mem.Write(solo5.BootInfoAddr, bi)
}

// solo5Manifest is the manifest as the guest reads it at boot: the file's
// entries with attached set for every device (each must be attached).
func solo5Manifest(vm *VM) []byte {
	ents := vm.img.Solo5.Entries
	b := make([]byte, solo5.ManifestHeader+len(ents)*solo5.EntrySize)
	binary.LittleEndian.PutUint32(b[0:], solo5.ManifestVersion)
	binary.LittleEndian.PutUint32(b[4:], uint32(len(ents)))
	for i, e := range ents {
		d := b[solo5.ManifestHeader+i*solo5.EntrySize:]
		copy(d[solo5.EntryName:], e.Name)
		binary.LittleEndian.PutUint32(d[solo5.EntryType:], e.Type)
		if i > 0 {
			d[solo5.EntryAttached] = 1
		}
	}
	return b
}

// s5Args returns the argument structure of Solo5 hypercall nr at arg,
// checked as tender's are: inside memory the guest may read, and write too
// when the monitor answers in it.
func (r *run) s5Args(nr uint32, arg uint64) ([]byte, error) {
	need := vcpu.Read
	if solo5.ArgWritten(nr) {
		need |= vcpu.Write
	}
	b, err := r.vm.mem.Guest(arg, solo5.ArgSize(nr), need)
	if err != nil {
		return nil, &ProtocolError{Hypercall: solo5.Names[nr], Reason: "argument structure: " + err.Error()}
	}
	return b, nil
}

func (r *run) s5Walltime(arg uint64) (outcome, error) {
	a, err := r.s5Args(solo5.NrWalltime, arg)
	if err != nil {
		return 0, err
	}
	binary.LittleEndian.PutUint64(a, uint64(time.Now().UnixNano()))
	return resume, nil
}

// s5Puts writes to the console as console_write does, with the same
// per-call and per-run limits.
func (r *run) s5Puts(arg uint64) (outcome, error) {
	a, err := r.s5Args(solo5.NrPuts, arg)
	if err != nil {
		return 0, err
	}
	data, n := binary.LittleEndian.Uint64(a), binary.LittleEndian.Uint64(a[8:])
	if n > hypercall.ConsoleWriteMax {
		return 0, &ProtocolError{Hypercall: solo5.Names[solo5.NrPuts], Reason: fmt.Sprintf("length %d exceeds %d", n, hypercall.ConsoleWriteMax)}
	}
	buf, err := r.vm.mem.Guest(data, n, vcpu.Read)
	if err != nil {
		return 0, &ProtocolError{Hypercall: solo5.Names[solo5.NrPuts], Reason: "buffer: " + err.Error()}
	}
	return r.console(solo5.Names[solo5.NrPuts], buf)
}

// s5Poll waits for the timeout (at most hypercall.PollMax) or until the run
// is stopped; no device can have input yet.
func (r *run) s5Poll(arg uint64) (outcome, error) {
	a, err := r.s5Args(solo5.NrPoll, arg)
	if err != nil {
		return 0, err
	}
	ready, err := r.pollWait(binary.LittleEndian.Uint64(a))
	if err != nil {
		return 0, err
	}
	binary.LittleEndian.PutUint64(a[8:], ready)
	binary.LittleEndian.PutUint32(a[16:], solo5.ResultOK)
	return resume, nil
}

// s5Block answers block_read and block_write "invalid": no Solo5 guest has
// a block device yet (checkSolo5 refuses them).
// TODO(solo5): serve them from the block device type of the -block merge.
func (r *run) s5Block(arg uint64) (outcome, error) {
	return r.s5Invalid(solo5.NrBlockRead, arg, 32)
}

// s5Net answers net_write and net_read "invalid": no Solo5 guest has a
// network device yet.
func (r *run) s5Net(arg uint64) (outcome, error) {
	return r.s5Invalid(solo5.NrNetRead, arg, 24)
}

// s5Invalid writes ResultInvalid at offset ret of hypercall nr's checked
// argument structure.
func (r *run) s5Invalid(nr uint32, arg uint64, ret int) (outcome, error) {
	a, err := r.s5Args(nr, arg)
	if err != nil {
		return 0, err
	}
	binary.LittleEndian.PutUint32(a[ret:], solo5.ResultInvalid)
	return resume, nil
}

// s5Halt ends the run: a status of 0 to hypercall.ExitStatusMax is the
// guest's exit status, solo5.ExitAbort an abort, anything else a protocol
// error (statuses above are the monitor's own).
func (r *run) s5Halt(arg uint64) (outcome, error) {
	a, err := r.s5Args(solo5.NrHalt, arg)
	if err != nil {
		return 0, err
	}
	st := int32(binary.LittleEndian.Uint32(a[8:]))
	switch {
	case st == solo5.ExitAbort:
		return 0, &AbortError{Message: "Solo5 guest halted with the abort status (255)"}
	case st < 0 || st > hypercall.ExitStatusMax:
		return 0, &ProtocolError{Hypercall: solo5.Names[solo5.NrHalt], Reason: fmt.Sprintf("exit status %d: want 0 to %d, or %d to abort", st, hypercall.ExitStatusMax, solo5.ExitAbort)}
	}
	r.status = int(st)
	return exited, nil
}
