// Package hypercall defines tender's guest ABI: the hypercall convention and
// numbers, the argument structures passed between guest and monitor, the boot
// information handed to the guest, the guest-physical memory layout and the ELF
// note every guest carries.
//
// It is the single source of truth for both sides: the monitor imports it, and
// `go generate` writes the C header (guest/include/tender_abi.h) that guests
// include. docs/abi.md specifies the same ABI in prose.
//
// # Calling convention
//
// A guest runs at CPL 3 in 64-bit long mode with identity-mapped memory. It
// issues hypercall nr by executing `outl %eax, %dx` with DX = PIOBase+nr and
// EAX = the guest-physical address of the call's argument structure. The vCPU is
// stopped while the monitor serves the call; results are written back into the
// argument structure before the guest continues with the next instruction.
//
// Every argument structure is made of little-endian 64-bit fields at 8-byte
// offsets, so its layout is the same in C, Go, Rust or Zig without packing
// attributes. A structure must lie wholly inside guest memory; a pointer or
// length that does not ends the run with an error (the monitor fails closed).
package hypercall

import "unsafe"

//go:generate go run ./genheader ../guest/include/tender_abi.h

// ABIVersion is the version of this ABI. A guest declares the version it was
// built for in its ABI note; the monitor refuses other versions.
const ABIVersion = 1

// PIOBase is the first I/O port of the hypercall range: hypercall nr is issued
// on port PIOBase+nr.
const PIOBase = 0x500

// Count is the number of hypercall slots. Ports PIOBase..PIOBase+Count-1 are
// open to the guest in the TSS I/O permission bitmap; any other port raises a
// general-protection fault inside the guest.
const Count = 32

// Hypercall numbers. Zero is never a valid hypercall.
const (
	// NrWalltime reads the host's wall clock into Walltime.Nsecs.
	NrWalltime = 1
	// NrConsoleWrite writes ConsoleWrite.Len bytes at ConsoleWrite.Data to the
	// console.
	NrConsoleWrite = 2
	// NrExit ends the run with Exit.Status as the guest's exit status.
	NrExit = 3
	// NrAbort ends the run as aborted with the message in Abort.
	NrAbort = 4
	// NrFnNext returns the reply to the previous function invocation (if
	// any) and waits for the next request: FnNext. A warm invocation costs
	// this one exit.
	NrFnNext = 5
	// NrNetInfo describes a declared network device: NetInfo.
	NrNetInfo = 6
	// NrNetWrite sends one Ethernet frame: NetWrite.
	NrNetWrite = 7
	// NrNetRead takes one received frame, without blocking: NetRead.
	NrNetRead = 8
	// NrPoll waits until a device has input or a timeout passes: Poll.
	NrPoll = 9
	// NrBlockInfo describes a declared block device: BlockInfo.
	NrBlockInfo = 10
	// NrBlockRead reads whole blocks from a block device: BlockIO.
	NrBlockRead = 11
	// NrBlockWrite writes whole blocks to a block device: BlockIO.
	NrBlockWrite = 12
)

// Names maps each defined hypercall number to a short name used in errors and
// statistics.
var Names = [Count]string{
	NrWalltime:     "walltime",
	NrConsoleWrite: "console_write",
	NrExit:         "exit",
	NrAbort:        "abort",
	NrFnNext:       "fn_next",
	NrNetInfo:      "net_info",
	NrNetWrite:     "net_write",
	NrNetRead:      "net_read",
	NrPoll:         "poll",
	NrBlockInfo:    "block_info",
	NrBlockRead:    "block_read",
	NrBlockWrite:   "block_write",
}

// ArgSize is the size of the argument structure of hypercall nr, derived from
// the structure itself; 0 for an unassigned number.
func ArgSize(nr uint32) uint64 {
	switch nr {
	case NrWalltime:
		return uint64(unsafe.Sizeof(Walltime{}))
	case NrConsoleWrite:
		return uint64(unsafe.Sizeof(ConsoleWrite{}))
	case NrExit:
		return uint64(unsafe.Sizeof(Exit{}))
	case NrAbort:
		return uint64(unsafe.Sizeof(Abort{}))
	case NrFnNext:
		return uint64(unsafe.Sizeof(FnNext{}))
	case NrNetInfo:
		return uint64(unsafe.Sizeof(NetInfo{}))
	case NrNetWrite:
		return uint64(unsafe.Sizeof(NetWrite{}))
	case NrNetRead:
		return uint64(unsafe.Sizeof(NetRead{}))
	case NrPoll:
		return uint64(unsafe.Sizeof(Poll{}))
	case NrBlockInfo:
		return uint64(unsafe.Sizeof(BlockInfo{}))
	case NrBlockRead, NrBlockWrite:
		return uint64(unsafe.Sizeof(BlockIO{}))
	}
	return 0
}

// ArgWritten reports whether the monitor writes results (the "out" fields)
// into the argument structure of hypercall nr, which must then lie in memory
// the guest may write as well as read.
func ArgWritten(nr uint32) bool {
	switch nr {
	case NrConsoleWrite, NrExit, NrAbort:
		return false
	}
	return ArgSize(nr) != 0
}

// Walltime is the argument of NrWalltime.
type Walltime struct {
	// Nsecs is set by the monitor to nanoseconds since the Unix epoch.
	Nsecs uint64 `c:"nsecs"`
}

// ConsoleWrite is the argument of NrConsoleWrite.
type ConsoleWrite struct {
	// Data is the guest-physical address of the bytes to write.
	Data uint64 `c:"data"`
	// Len is the number of bytes; at most ConsoleWriteMax.
	Len uint64 `c:"len"`
}

// ConsoleWriteMax is the largest Len a single NrConsoleWrite accepts.
const ConsoleWriteMax = 64 << 10

// Exit is the argument of NrExit.
type Exit struct {
	// Status is the guest's exit status, 0..ExitStatusMax.
	Status uint64 `c:"status"`
}

// ExitStatusMax is the largest exit status a guest may report. Statuses above
// it are reserved for the monitor's own outcomes (see docs/abi.md).
const ExitStatusMax = 239

// Abort is the argument of NrAbort.
type Abort struct {
	// Msg is the guest-physical address of a message, Len bytes long.
	Msg uint64 `c:"msg"`
	// Len is the message length; longer messages are truncated to AbortMsgMax.
	Len uint64 `c:"len"`
}

// AbortMsgMax is the longest abort message the monitor keeps.
const AbortMsgMax = 4096

// FnNext is the argument of NrFnNext. The guest fills the In fields, the
// monitor the Out fields before the guest continues.
type FnNext struct {
	// Flags (in): FnHasReply when ReplyStatus/ReplyData/ReplyLen carry the
	// reply to the request this guest received from its previous FnNext.
	Flags uint64 `c:"flags"`
	// ReplyStatus (in) is the function's status: 0 success, anything else an
	// error the caller sees (the body may explain it).
	ReplyStatus uint64 `c:"reply_status"`
	// ReplyData (in) is the address of the reply body.
	ReplyData uint64 `c:"reply_data"`
	// ReplyLen (in) is the reply body's length, at most FnReplyMax.
	ReplyLen uint64 `c:"reply_len"`
	// ReqBuf (in) is the address of the buffer the next request body is
	// written to.
	ReqBuf uint64 `c:"req_buf"`
	// ReqCap (in) is that buffer's size; it must be at least FnRequestMax
	// so that every request the monitor accepts fits.
	ReqCap uint64 `c:"req_cap"`
	// ReqID (out) identifies the request: unique within the pool of
	// instances serving the function, numbered from 1.
	ReqID uint64 `c:"req_id"`
	// ReqLen (out) is the request body's length.
	ReqLen uint64 `c:"req_len"`
	// ReqDeadline (out) is the wall-clock time, ns since the Unix epoch, by
	// which the reply must be returned; the monitor stops the guest then.
	ReqDeadline uint64 `c:"req_deadline"`
}

// FnHasReply is the FnNext flag that says a reply is being returned.
const FnHasReply = 1

// Function invocation limits.
const (
	// FnRequestMax is the largest request body.
	FnRequestMax = 1 << 20
	// FnReplyMax is the largest reply body.
	FnReplyMax = 1 << 20
)

// Results of device hypercalls, written to their Result field. Unlike the
// protocol violations that end a run (a structure or buffer outside guest
// memory), these are ordinary outcomes the guest handles.
const (
	// ResultOK: done.
	ResultOK = 0
	// ResultAgain: nothing to read now (NrNetRead).
	ResultAgain = 1
	// ResultInvalid: the handle names no declared device of the call's
	// kind, or an argument is out of range (for example a frame shorter
	// than an Ethernet header, or a block offset that is not a multiple of
	// the block size).
	ResultInvalid = 2
	// ResultTooLarge: a frame longer than the device's MTU plus the
	// Ethernet header (NrNetWrite), or a block transfer longer than
	// BlockIOMax.
	ResultTooLarge = 3
	// ResultTruncated: the received frame was longer than the guest's
	// buffer; it was dropped and Len says how long it was (NrNetRead).
	ResultTruncated = 4
	// ResultIO: the host device failed: the frame was not sent, or the
	// block read or write did not complete (its blocks may be partly
	// written).
	ResultIO = 5
	// ResultReadOnly: a block write to a device attached read-only.
	ResultReadOnly = 6
)

// NetInfo is the argument of NrNetInfo.
type NetInfo struct {
	// Handle (in) is the device's index in the guest's device manifest.
	Handle uint64 `c:"handle"`
	// Result (out) is ResultOK or ResultInvalid.
	Result uint64 `c:"result"`
	// MAC (out) is the guest's MAC address in the low 48 bits, first octet
	// in the least significant byte.
	MAC uint64 `c:"mac"`
	// MTU (out) is the largest IP packet; frames carry up to MTU+14 bytes.
	MTU uint64 `c:"mtu"`
}

// NetWrite is the argument of NrNetWrite.
type NetWrite struct {
	// Handle (in) selects the device.
	Handle uint64 `c:"handle"`
	// Data (in) is the address of the frame, starting with the Ethernet
	// header (no preamble, no FCS).
	Data uint64 `c:"data"`
	// Len (in) is the frame length.
	Len uint64 `c:"len"`
	// Result (out): ResultOK, ResultInvalid, ResultTooLarge or ResultIO.
	Result uint64 `c:"result"`
}

// NetRead is the argument of NrNetRead.
type NetRead struct {
	// Handle (in) selects the device.
	Handle uint64 `c:"handle"`
	// Data (in) is the address of the buffer for the frame.
	Data uint64 `c:"data"`
	// Cap (in) is the buffer size.
	Cap uint64 `c:"cap"`
	// Len (out) is the frame length.
	Len uint64 `c:"len"`
	// Result (out): ResultOK, ResultAgain, ResultInvalid or
	// ResultTruncated.
	Result uint64 `c:"result"`
}

// Poll is the argument of NrPoll.
type Poll struct {
	// Timeout (in) is how long to wait at most, in nanoseconds; 0 returns
	// at once. A relative time, so guest and host need not agree on a
	// clock. The monitor waits at most PollMax per call.
	Timeout uint64 `c:"timeout"`
	// Ready (out) has bit i set when device i has input.
	Ready uint64 `c:"ready"`
	// Result (out) is ResultOK.
	Result uint64 `c:"result"`
}

// PollMax bounds one NrPoll wait, so a guest that polls with a far deadline
// still returns to its loop (and the monitor to its checks) regularly.
const PollMax = 1_000_000_000

// BlockInfo is the argument of NrBlockInfo.
type BlockInfo struct {
	// Handle (in) is the device's index in the guest's device manifest.
	Handle uint64 `c:"handle"`
	// Result (out) is ResultOK or ResultInvalid.
	Result uint64 `c:"result"`
	// Capacity (out) is the device's size in bytes, a multiple of
	// BlockSize.
	Capacity uint64 `c:"capacity"`
	// BlockSize (out) is the size of a block: a power of two from
	// BlockSizeMin to BlockSizeMax.
	BlockSize uint64 `c:"block_size"`
	// Flags (out) is BlockReadOnly when writes fail with ResultReadOnly.
	Flags uint64 `c:"flags"`
}

// BlockReadOnly is the BlockInfo flag of a device attached read-only.
const BlockReadOnly = 1

// BlockIO is the argument of NrBlockRead and NrBlockWrite: Len bytes at
// byte Offset of the device, from or into the guest's buffer at Data.
// Offset and Len are multiples of the block size, Len is 1 to BlockIOMax
// bytes, and the blocks lie wholly inside the device; otherwise nothing is
// transferred and Result says why.
type BlockIO struct {
	// Handle (in) selects the device.
	Handle uint64 `c:"handle"`
	// Offset (in) is the byte offset on the device.
	Offset uint64 `c:"offset"`
	// Data (in) is the address of the guest's buffer.
	Data uint64 `c:"data"`
	// Len (in) is the number of bytes.
	Len uint64 `c:"len"`
	// Result (out): ResultOK, ResultInvalid, ResultTooLarge, ResultIO or
	// (writes) ResultReadOnly.
	Result uint64 `c:"result"`
}

// Block device limits.
const (
	// BlockIOMax is the most bytes one NrBlockRead or NrBlockWrite
	// transfers, so that one hypercall holds the vCPU for a bounded time.
	BlockIOMax = 1 << 20
	// BlockSizeMin and BlockSizeMax bound a device's block size.
	BlockSizeMin = 512
	BlockSizeMax = 64 << 10
)

// Device manifest: an ELF note of type NoteTypeDevices whose descriptor is a
// sequence of DeviceEntry. A device's handle is its index in it.
const (
	// NoteTypeDevices is the note type of the device manifest.
	NoteTypeDevices = 2
	// DeviceNet is a network device.
	DeviceNet = 1
	// DeviceBlock is a block device.
	DeviceBlock = 2
	// DeviceNameMax is the longest device name, without the NUL.
	DeviceNameMax = 23
	// DevicesMax is the largest number of devices a guest may declare.
	DevicesMax = 8
)

// DeviceEntry is one device of the manifest.
type DeviceEntry struct {
	// Type is DeviceNet or DeviceBlock.
	Type uint32 `c:"type"`
	// Reserved must be zero.
	Reserved uint32 `c:"reserved"`
	// Name is the NUL-padded device name, unique within the manifest: the
	// NAME of `tender run -net NAME=...` or `-block NAME=...`.
	Name [DeviceNameMax + 1]byte `c:"name"`
}

// BootInfoMagic identifies a BootInfo structure ("TENDERBI", little-endian).
const BootInfoMagic = 0x49425245444e4554

// BootInfo is what the guest finds at the address in RDI on entry. It lies in
// a read-only page.
type BootInfo struct {
	// Magic is BootInfoMagic.
	Magic uint64 `c:"magic"`
	// Version is ABIVersion.
	Version uint64 `c:"version"`
	// MemSize is the size of guest memory in bytes; guest-physical addresses
	// run from 0 to MemSize-1.
	MemSize uint64 `c:"mem_size"`
	// HeapStart is the first free, writable byte after the loaded image,
	// page-aligned.
	HeapStart uint64 `c:"heap_start"`
	// StackTop is the initial stack pointer (the top of guest memory). The
	// stack grows down towards HeapStart.
	StackTop uint64 `c:"stack_top"`
	// Cmdline is the guest-physical address of the NUL-terminated command
	// line: the program name, then each argument, separated by single spaces
	// (arguments never contain white space).
	Cmdline uint64 `c:"cmdline"`
	// CmdlineLen is the length of the command line without the NUL.
	CmdlineLen uint64 `c:"cmdline_len"`
	// TSCHz is the frequency of the time-stamp counter, so the guest reads
	// monotonic time with rdtsc and no exit.
	TSCHz uint64 `c:"tsc_hz"`
	// BootTSC is the TSC value at which BootWalltime was sampled.
	BootTSC uint64 `c:"boot_tsc"`
	// BootWalltime is the host wall clock in nanoseconds since the Unix epoch
	// at BootTSC.
	BootWalltime uint64 `c:"boot_walltime"`
}

// Guest-physical memory layout. Everything below ImageBase belongs to the
// monitor; the guest sees only BootInfoAddr..CmdlineAddr+CmdlineMax, read-only.
const (
	// PageSize is the size of a small page.
	PageSize = 0x1000
	// BootInfoAddr is where BootInfo is placed.
	BootInfoAddr = 0x10000
	// CmdlineAddr is where the command line is placed.
	CmdlineAddr = 0x11000
	// CmdlineMax is the largest command line, including its NUL.
	CmdlineMax = 0x2000
	// ImageBase is the lowest address an ELF segment may occupy (1 MiB).
	ImageBase = 0x100000
	// MemMin is the smallest guest memory size.
	MemMin = 4 << 20
	// MemMax is the largest guest memory size. Argument addresses travel in
	// 32-bit EAX, and the top 1 GiB below 4 GiB is left free for the
	// hypervisor's own use (KVM's TSS on Intel).
	MemMax = 3 << 30
	// MemAlign is the granularity of guest memory sizes.
	MemAlign = 2 << 20
)

// ELF note identifying a tender guest. Its name is NoteName, its type
// NoteTypeABI, and its descriptor an ABINote.
const (
	// NoteName is the note owner name (without the terminating NUL).
	NoteName = "Tender"
	// NoteTypeABI is the note type of the ABI note.
	NoteTypeABI = 1
)

// ABINote is the descriptor of the ABI note.
type ABINote struct {
	// Version is the ABIVersion the guest was built for.
	Version uint32 `c:"version"`
	// Reserved must be zero.
	Reserved uint32 `c:"reserved"`
}
