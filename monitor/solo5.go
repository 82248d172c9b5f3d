package monitor

import (
	"encoding/binary"
	"fmt"
	"strings"
	"time"

	"github.com/tendervm/tender/hypercall"
	"github.com/tendervm/tender/hypercall/solo5"
	"github.com/tendervm/tender/monitor/blockdev"
	"github.com/tendervm/tender/monitor/loader"
	"github.com/tendervm/tender/monitor/netdev"
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
		solo5.NrBlockWrite: (*run).s5BlockWrite,
		solo5.NrBlockRead:  (*run).s5BlockRead,
		solo5.NrNetWrite:   (*run).s5NetWrite,
		solo5.NrNetRead:    (*run).s5NetRead,
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

// solo5Devices returns a Solo5 guest's devices, network and block, in
// manifest order. A device's handle is its manifest index, its index here
// one less: entry 0 is the reserved one.
func solo5Devices(g *guest) []loader.Device {
	var devs []loader.Device
	for _, e := range g.img.Solo5.Devices() {
		typ := uint32(hypercall.DeviceNet)
		if e.Type == solo5.TypeBlock {
			typ = hypercall.DeviceBlock
		}
		devs = append(devs, loader.Device{Type: typ, Name: e.Name})
	}
	return devs
}

// checkSolo5 checks a Solo5 guest's configuration: its memory, that every
// device its manifest declares is attached, and only those, and that each
// block device's block size fits the manifest's 16-bit field.
func checkSolo5(g *guest) error {
	if g.cfg.MemSize%solo5.MemAlign != 0 {
		return fmt.Errorf("monitor: Solo5 guest memory of %d bytes: want a multiple of %d MiB", g.cfg.MemSize, solo5.MemAlign>>20)
	}
	devs := solo5Devices(g)
	if _, err := netDevices(devs, g.cfg.Net); err != nil {
		return err
	}
	_, err := solo5Block(devs, g.cfg.Block)
	return err
}

// solo5Net returns the network state of a Solo5 guest: its devices, or none
// (poll still waits on the run's wake-up eventfd, which netState holds).
func solo5Net(devs []loader.Device, attached map[string]netdev.Device) (*netState, error) {
	ns, err := netDevices(devs, attached)
	if ns == nil && err == nil {
		ns = &netState{}
	}
	return ns, err
}

// solo5Block returns the block state of a Solo5 guest, or nil when it
// declares no block device. A block size above solo5.BlockSizeMax does not
// fit the manifest entry the guest reads, so it is refused here.
func solo5Block(devs []loader.Device, attached map[string]*blockdev.Device) (*blockState, error) {
	bs, err := blockDevices(devs, attached)
	if bs == nil || err != nil {
		return bs, err
	}
	for _, d := range bs.devs {
		if d.BlockSize() > solo5.BlockSizeMax {
			return nil, fmt.Errorf("monitor: block device %q has blocks of %d bytes: a Solo5 guest takes at most %d (bs=)", d.Name(), d.BlockSize(), solo5.BlockSizeMax)
		}
	}
	return bs, nil
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
	if err := vm.writeSegments(); err != nil {
		return err
	}
	regions = vm.segmentRegions(regions)
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
// entries with attached set for every device (each must be attached), a
// network device's MAC and MTU, a block device's capacity and block size.
func solo5Manifest(vm *VM) []byte {
	ents := vm.img.Solo5.Entries
	b := make([]byte, solo5.ManifestHeader+len(ents)*solo5.EntrySize)
	binary.LittleEndian.PutUint32(b[0:], solo5.ManifestVersion)
	binary.LittleEndian.PutUint32(b[4:], uint32(len(ents)))
	for i, e := range ents {
		d := b[solo5.ManifestHeader+i*solo5.EntrySize:]
		copy(d[solo5.EntryName:], e.Name)
		binary.LittleEndian.PutUint32(d[solo5.EntryType:], e.Type)
		if i == 0 {
			continue
		}
		d[solo5.EntryAttached] = 1
		switch {
		case e.Type == solo5.TypeNet && vm.net != nil && i-1 < len(vm.net.index) && vm.net.index[i-1] >= 0:
			nd := &vm.net.devs[vm.net.index[i-1]]
			mac := nd.dev.MAC()
			copy(d[solo5.EntryMAC:], mac[:])
			binary.LittleEndian.PutUint16(d[solo5.EntryMTU:], uint16(nd.mtu))
		case e.Type == solo5.TypeBlock && vm.block != nil && i-1 < len(vm.block.index) && vm.block.index[i-1] >= 0:
			bd := vm.block.devs[vm.block.index[i-1]]
			binary.LittleEndian.PutUint64(d[solo5.EntryCapacity:], bd.Capacity())
			binary.LittleEndian.PutUint16(d[solo5.EntryBlockSize:], uint16(bd.BlockSize()))
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

// s5Poll waits until a network device has input, the timeout passes (at
// most hypercall.PollMax) or the run is stopped; the ready set has bit h for
// handle h.
func (r *run) s5Poll(arg uint64) (outcome, error) {
	a, err := r.s5Args(solo5.NrPoll, arg)
	if err != nil {
		return 0, err
	}
	ready, err := r.pollWait(binary.LittleEndian.Uint64(a))
	if err != nil {
		return 0, err
	}
	binary.LittleEndian.PutUint64(a[8:], ready<<1) // handles count from 1
	binary.LittleEndian.PutUint32(a[16:], solo5.ResultOK)
	return resume, nil
}

// s5Block serves block_write and block_read {handle, offset, data, len,
// ret}: exactly one block, checked in blockIO's order (device, request,
// then buffer). A refused request, a write to a read-only device included,
// is "invalid"; a host failure or short transfer "unspecified", counted.
func (r *run) s5Block(nr uint32, arg uint64) (outcome, error) {
	a, err := r.s5Args(nr, arg)
	if err != nil {
		return 0, err
	}
	le := binary.LittleEndian
	h, off, data, n := le.Uint64(a), le.Uint64(a[8:]), le.Uint64(a[16:]), le.Uint64(a[24:])
	write := nr == solo5.NrBlockWrite
	res := uint32(solo5.ResultInvalid)
	if d, st := r.s5BlockDevice(h); d != nil && n == d.BlockSize() && d.Check(write, off, n) == nil {
		need := vcpu.Write // the monitor fills the buffer
		if write {
			need = vcpu.Read
		}
		buf, err := r.vm.mem.Guest(data, n, need)
		if err != nil {
			return 0, &ProtocolError{Hypercall: solo5.Names[nr], Reason: "buffer: " + err.Error()}
		}
		res = s5Result(blockTransfer(d, st, write, buf, off))
	}
	le.PutUint32(a[32:], res)
	return resume, nil
}

func (r *run) s5BlockWrite(arg uint64) (outcome, error) { return r.s5Block(solo5.NrBlockWrite, arg) }

func (r *run) s5BlockRead(arg uint64) (outcome, error) { return r.s5Block(solo5.NrBlockRead, arg) }

// s5BlockDevice returns the block device with Solo5 handle h, or nil.
func (r *run) s5BlockDevice(h uint64) (*blockdev.Device, *BlockStats) {
	if h == 0 || r.vm.block == nil {
		return nil, nil // the reserved entry, or no block device at all
	}
	return r.blockDevice(h - 1)
}

// s5Device returns the network device with Solo5 handle h, or nil.
func (r *run) s5Device(h uint64) (*netDevice, *NetStats) {
	if h == 0 {
		return nil, nil // the reserved entry
	}
	return r.device(h - 1)
}

// s5Result maps a tender device result to Solo5's.
func s5Result(res uint64) uint32 {
	switch res {
	case hypercall.ResultOK:
		return solo5.ResultOK
	case hypercall.ResultAgain:
		return solo5.ResultAgain
	case hypercall.ResultIO:
		return solo5.ResultUnspecified
	}
	// ResultInvalid, ResultTooLarge, ResultTruncated, ResultReadOnly.
	return solo5.ResultInvalid
}

// s5NetWrite sends one frame {handle, data, len, ret}, as net_write does.
func (r *run) s5NetWrite(arg uint64) (outcome, error) {
	a, err := r.s5Args(solo5.NrNetWrite, arg)
	if err != nil {
		return 0, err
	}
	le := binary.LittleEndian
	h, data, n := le.Uint64(a), le.Uint64(a[8:]), le.Uint64(a[16:])
	res := uint64(hypercall.ResultInvalid)
	if d, st := r.s5Device(h); d != nil && n >= netdev.HeaderLen && n <= uint64(d.max) {
		frame, err := r.vm.mem.Guest(data, n, vcpu.Read)
		if err != nil {
			return 0, &ProtocolError{Hypercall: solo5.Names[solo5.NrNetWrite], Reason: "frame: " + err.Error()}
		}
		res = d.send(frame, st)
	}
	le.PutUint32(a[24:], s5Result(res))
	return resume, nil
}

// s5NetRead takes one frame {handle, data, len (in: the buffer's size, out:
// the frame's length), ret}, as net_read does.
func (r *run) s5NetRead(arg uint64) (outcome, error) {
	a, err := r.s5Args(solo5.NrNetRead, arg)
	if err != nil {
		return 0, err
	}
	le := binary.LittleEndian
	h, data, size := le.Uint64(a), le.Uint64(a[8:]), le.Uint64(a[16:])
	n, res := uint64(0), uint64(hypercall.ResultInvalid)
	if d, st := r.s5Device(h); d != nil {
		buf, err := r.vm.mem.Guest(data, size, vcpu.Write)
		if err != nil {
			return 0, &ProtocolError{Hypercall: solo5.Names[solo5.NrNetRead], Reason: "buffer: " + err.Error()}
		}
		n, res = d.receive(buf, st)
		if res != hypercall.ResultOK {
			n = 0
		}
	}
	le.PutUint64(a[16:], n)
	le.PutUint32(a[24:], s5Result(res))
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
