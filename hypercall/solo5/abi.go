// Package solo5 defines the parts of the Solo5 hvt guest ABI (version 2)
// that tender serves, so that unikernels built for Solo5's hvt target
// (MirageOS, Rumprun) run unchanged: the ELF notes that identify such an
// executable and declare its devices, the boot information, the memory
// layout and the hypercalls with their argument structures.
//
// The definitions are written from the ABI's published facts (see
// docs/solo5.md); no Solo5 code or header is used. Unlike tender's own ABI
// (package hypercall), the argument structures have the natural C layout of
// the guest's compiler: 64-bit pointers and sizes, then a 32-bit int result,
// padded to 8 bytes.
package solo5

// ELF notes. Both are owned by NoteName.
const (
	// NoteName is the owner name of Solo5's notes (without the NUL).
	NoteName = "Solo5"
	// NoteTypeABI ("ABI1") declares the target and ABI version: ABINoteSize
	// bytes, {u32 target, u32 version, u32 reserved[2]}.
	NoteTypeABI = 0x31494241
	// NoteTypeManifest ("MFT1") holds the device manifest.
	NoteTypeManifest = 0x3154464d
	// ABINoteSize is the size of the ABI1 descriptor.
	ABINoteSize = 16
	// TargetHVT is the ABI1 target of an hvt executable.
	TargetHVT = 1
	// ABIVersion is the hvt ABI version tender serves.
	ABIVersion = 2
	// Interp is the PT_INTERP path of a Solo5 executable, without its NUL.
	Interp = "/nonexistent/solo5/"
)

// Manifest layout. The MFT1 descriptor is ManifestPad bytes of padding (the
// manifest is 8-byte aligned inside the note, whose descriptor starts 4
// bytes past an 8-byte boundary), then the manifest: {u32 version, u32
// entries} followed by entries of EntrySize bytes.
const (
	// ManifestVersion is the only manifest version.
	ManifestVersion = 1
	// ManifestPad is the padding that starts the MFT1 descriptor.
	ManifestPad = 4
	// ManifestHeader is the size of {version, entries}.
	ManifestHeader = 8
	// MaxEntries is the largest number of entries, the reserved first one
	// included (a ready set has 64 bits).
	MaxEntries = 64
	// EntrySize is the size of one entry.
	EntrySize = 104
	// NameSize is the size of an entry's name field, NUL included.
	NameSize = 68
	// ManifestMax is the largest manifest, as copied to the guest.
	ManifestMax = ManifestHeader + MaxEntries*EntrySize
)

// Offsets inside a manifest entry.
const (
	EntryName      = 0  // char name[NameSize]
	EntryType      = 68 // u32
	EntryCapacity  = 72 // u64, block devices
	EntryBlockSize = 80 // u16, block devices
	EntryMAC       = 72 // u8[6], network devices
	EntryMTU       = 78 // u16, network devices
	EntryPrivate   = 88 // 8 bytes the guest never reads from the monitor
	EntryAttached  = 96 // bool
)

// BlockSizeMax is the largest block size a manifest entry can hold: the
// largest power of two in its u16 field.
const BlockSizeMax = 1 << 15

// Entry types.
const (
	TypeBlock         = 1
	TypeNet           = 2
	TypeReservedFirst = 1 << 30
)

// Guest-physical layout at boot. The boot information, the monitor's copy of
// the manifest and the command line share one read-only range.
const (
	// BootInfoAddr is the address of the boot information, passed in RDI.
	BootInfoAddr = 0x10000
	// BootInfoSize is sizeof the boot information.
	BootInfoSize = 56
	// ManifestAddr is where the monitor copies the completed manifest.
	ManifestAddr = 0x10040
	// CmdlineAddr is where the command line is placed.
	CmdlineAddr = 0x12000
	// CmdlineMax is the largest command line, NUL included.
	CmdlineMax = 0x2000
	// BootEnd is the end of the read-only boot range.
	BootEnd = CmdlineAddr + CmdlineMax
	// MemAlign is the granularity of a Solo5 guest's memory.
	MemAlign = 2 << 20
	// MemMax is the largest memory of a Solo5 guest, as Solo5 allows: all
	// of it is addressable with the 32-bit hypercall argument. A tender
	// guest has at most hypercall.MemMax.
	MemMax = 4 << 30
)

// Offsets of the boot information's fields.
const (
	BootMemSize       = 0  // u64
	BootKernelEnd     = 8  // u64: the end of the loaded image
	BootCPUCycleFreq  = 16 // u64: TSC rate in Hz
	BootCmdline       = 24 // u64: address of the command line
	BootManifest      = 32 // u64: address of the manifest copy
	BootHostFeatures  = 40 // u32: 0, no shared-memory ring
	BootGuestFeatures = 44 // u32
	BootNetRing       = 48 // u64: 0
)

// Hypercalls: `outl %eax, %dx` with DX = hypercall.PIOBase + nr and EAX the
// 32-bit guest-physical address of the argument structure.
const (
	NrWalltime   = 1
	NrPuts       = 2
	NrPoll       = 3
	NrBlockWrite = 4
	NrBlockRead  = 5
	NrNetWrite   = 6
	NrNetRead    = 7
	NrHalt       = 8
	// Count bounds the numbers.
	Count = 9
)

// Names maps each hypercall number to a short name for errors.
var Names = [Count]string{
	NrWalltime:   "solo5_walltime",
	NrPuts:       "solo5_puts",
	NrPoll:       "solo5_poll",
	NrBlockWrite: "solo5_block_write",
	NrBlockRead:  "solo5_block_read",
	NrNetWrite:   "solo5_net_write",
	NrNetRead:    "solo5_net_read",
	NrHalt:       "solo5_halt",
}

// Results, in the ret fields.
const (
	ResultOK          = 0
	ResultAgain       = 1
	ResultInvalid     = 2
	ResultUnspecified = 3
)

// Walltime is the argument of NrWalltime.
type Walltime struct {
	Nsecs uint64 // out: ns since the Unix epoch
}

// Puts is the argument of NrPuts.
type Puts struct {
	Data uint64 // in: address of the bytes
	Len  uint64 // in: their number
}

// Poll is the argument of NrPoll.
type Poll struct {
	Timeout  uint64 // in: ns to wait at most
	ReadySet uint64 // out: bit h set when device h has input
	Ret      int32  // out
	_        uint32
}

// Block is the argument of NrBlockWrite and NrBlockRead.
type Block struct {
	Handle uint64
	Offset uint64
	Data   uint64
	Len    uint64
	Ret    int32
	_      uint32
}

// NetWrite is the argument of NrNetWrite.
type NetWrite struct {
	Handle uint64
	Data   uint64
	Len    uint64
	Ret    int32
	_      uint32
}

// NetRead is the argument of NrNetRead; Len is the buffer size in and the
// frame length out.
type NetRead struct {
	Handle uint64
	Data   uint64
	Len    uint64
	Ret    int32
	_      uint32
}

// Halt is the argument of NrHalt.
type Halt struct {
	Cookie     uint64 // in: ignored
	ExitStatus int32  // in
	_          uint32
}

// ExitAbort is the exit status of an aborted guest.
const ExitAbort = 255

// ArgSize is the size of hypercall nr's argument structure, 0 for an unknown
// number.
func ArgSize(nr uint32) uint64 {
	switch nr {
	case NrWalltime:
		return 8
	case NrPuts, NrHalt:
		return 16
	case NrPoll:
		return 24
	case NrBlockWrite, NrBlockRead:
		return 40
	case NrNetWrite, NrNetRead:
		return 32
	}
	return 0
}

// ArgWritten reports whether the monitor writes into hypercall nr's argument.
func ArgWritten(nr uint32) bool {
	return nr != NrPuts && nr != NrHalt && ArgSize(nr) != 0
}
