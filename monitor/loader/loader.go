// Package loader validates a guest executable and describes how to load it.
//
// It is deliberately strict: the guest ELF is attacker-controlled input, so
// Parse accepts only the narrow shape the tender toolchain produces (a static,
// non-PIE x86-64 executable linked at or above hypercall.ImageBase, carrying a
// Tender ABI note) and rejects everything else with a precise reason. All
// arithmetic on header values is overflow-checked, nothing is allocated in
// proportion to sizes read from the file, and Parse never panics.
//
// Only the ELF header, the program headers and the notes are read; section
// headers are ignored because loading does not need them.
//
// Besides the ABI note, a guest may carry device notes (type
// hypercall.NoteTypeDevices): together, in file order, they form its device
// manifest, returned as Image.Devices. Any other Tender note type is refused.
//
// A Solo5 hvt executable (one carrying Solo5's ABI1 note for target hvt,
// version 2) is accepted too, with its MFT1 manifest returned as
// Image.Solo5 (solo5.go). Such an executable may, and only it may, have a
// PT_INTERP naming solo5.Interp and a PT_TLS segment; every other rule holds
// for it unchanged.
//
// In error messages "segment N" is the program header at index N.
package loader

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"slices"

	"github.com/tendervm/tender/hypercall"
	"github.com/tendervm/tender/monitor/internal/elf"
	"github.com/tendervm/tender/monitor/vcpu"
)

// Limits of what Parse accepts.
const (
	// MaxProgHeaders is the largest program header table accepted. Real
	// guests have fewer than ten; the bound keeps the work per file small.
	MaxProgHeaders = 64
	// MaxLoadSegments is the largest number of PT_LOAD segments accepted.
	MaxLoadSegments = 16
	// MaxFileSize is the largest guest executable accepted. Its loadable
	// contents must fit in guest memory anyway; the rest is symbols and
	// debug information, which the loader never reads.
	MaxFileSize = 256 << 20
	// MinStack is the guest memory that must remain above the image for the
	// stack.
	MinStack = 64 << 10
)

const (
	ehdrSize = 64 // sizeof(Elf64_Ehdr)
	phdrSize = 56 // sizeof(Elf64_Phdr)
	pageSize = hypercall.PageSize
	pnXNum   = 0xffff // e_phnum escape: the real count is in section header 0
)

// ErrInvalid is the class of every error Parse returns:
// errors.Is(err, ErrInvalid) reports whether a guest ELF was rejected.
var ErrInvalid = errors.New("invalid guest ELF")

// Error is a rejected guest ELF. Reason says what is wrong, with the offending
// values.
type Error struct {
	Reason string
}

// Error returns "invalid guest ELF: " followed by the reason.
func (e *Error) Error() string { return "invalid guest ELF: " + e.Reason }

// Is makes errors.Is(err, ErrInvalid) true for every *Error.
func (e *Error) Is(target error) bool { return target == ErrInvalid }

func invalid(format string, args ...any) error {
	return &Error{Reason: fmt.Sprintf(format, args...)}
}

// Segment is one loadable segment, validated.
type Segment struct {
	// Addr is the segment's address (p_vaddr, equal to p_paddr): guest
	// memory is identity-mapped, so it is both guest-virtual and
	// guest-physical.
	Addr uint64
	// MemSize is the segment's size in memory (p_memsz).
	MemSize uint64
	// Data is the segment's p_filesz bytes from the file, aliasing the input
	// (with its capacity clipped, so appending cannot clobber the file).
	// Memory from Addr+len(Data) to Addr+MemSize is zero.
	Data []byte
	// Perm is the guest's access to the segment's pages. Read is always set:
	// a present user page on x86-64 is readable, so a segment flagged only
	// PF_W or PF_X is reported as it will really behave.
	Perm vcpu.Perm
}

// End returns the address just past the segment in memory.
func (s *Segment) End() uint64 { return s.Addr + s.MemSize }

// Image is a validated guest executable.
type Image struct {
	// Entry is the initial instruction pointer; it lies inside an executable
	// segment.
	Entry uint64
	// Segments are the loadable segments, sorted by Addr. They never share a
	// page, because permissions are granted per page.
	Segments []Segment
	// End is the page-aligned end of the highest segment: the first free page
	// after the image.
	End uint64
	// ABIVersion is the version declared by the guest's ABI note; it equals
	// hypercall.ABIVersion.
	ABIVersion uint32
	// Devices is the guest's device manifest, in file order: a device's
	// handle is its index. Empty when the guest declares no devices.
	Devices []Device
	// Solo5 is set for a Solo5 hvt executable: its validated manifest.
	// ABIVersion and Devices are then zero.
	Solo5 *Solo5Manifest
}

// Device is one entry of a guest's device manifest, validated: a known type,
// and a name of 1 to hypercall.DeviceNameMax printable ASCII characters (no
// space or '=') that no other device of the guest has.
type Device struct {
	// Type is the device type, hypercall.DeviceNet or
	// hypercall.DeviceBlock.
	Type uint32
	// Name is the device's name, without its NUL padding.
	Name string
}

// loadSeg is a PT_LOAD segment during validation, remembering its program
// header index for error messages.
type loadSeg struct {
	Segment
	index int
}

// Parse validates file as the executable of a guest with memSize bytes of
// memory and returns its image. The returned segments alias file. Every error
// is an *Error, so errors.Is(err, ErrInvalid) holds.
func Parse(file []byte, memSize uint64) (*Image, error) {
	if len(file) > MaxFileSize {
		return nil, invalid("file is %d bytes, over the %d MiB limit", len(file), MaxFileSize>>20)
	}
	hdr, err := parseHeader(file, uint64(len(file)))
	if err != nil {
		return nil, err
	}
	// The table bounds were checked by parseHeader, so these cannot fail.
	phoff := int(hdr.Phoff)
	phnum := int(hdr.Phnum)

	loads := make([]loadSeg, 0, MaxLoadSegments)
	var notes abiNotes
	// PT_INTERP and PT_TLS are allowed for Solo5 executables only, which
	// the notes (possibly later in the table) tell.
	interp, tls := -1, -1
	// Solo5's linker scripts leave an empty PT_LOAD (p_memsz 0), which
	// loads nothing; tender's own guests may have none.
	emptyLoad, emptyAddr := -1, uint64(0)
	var interpData []byte
	var tlsHdr elf.Prog64
	for i := 0; i < phnum; i++ {
		ph := decodeProg(file[phoff+i*phdrSize:])
		switch elf.ProgType(ph.Type) {
		case elf.PT_LOAD:
			if ph.Memsz == 0 && ph.Filesz == 0 {
				if emptyLoad < 0 {
					emptyLoad, emptyAddr = i, ph.Vaddr
				}
				continue
			}
			if len(loads) == MaxLoadSegments {
				return nil, invalid("more than %d PT_LOAD segments", MaxLoadSegments)
			}
			s, err := checkLoad(file, i, &ph, memSize)
			if err != nil {
				return nil, err
			}
			loads = append(loads, s)
		case elf.PT_NOTE:
			data, err := fileRange(file, i, ph.Off, ph.Filesz)
			if err != nil {
				return nil, err
			}
			align, err := noteAlign(i, ph.Align)
			if err != nil {
				return nil, err
			}
			if err := walkNotes(data, align, notes.visit); err != nil {
				return nil, invalid("segment %d (PT_NOTE): %v", i, err)
			}
		case elf.PT_INTERP:
			if interp >= 0 {
				return nil, invalid("segment %d: second PT_INTERP", i)
			}
			data, err := fileRange(file, i, ph.Off, ph.Filesz)
			if err != nil {
				return nil, err
			}
			interp, interpData = i, data
		case elf.PT_DYNAMIC:
			return nil, invalid("dynamic section (PT_DYNAMIC): only static executables without relocations are supported")
		case elf.PT_TLS:
			if tls >= 0 {
				return nil, invalid("segment %d: second PT_TLS", i)
			}
			if _, err := fileRange(file, i, ph.Off, ph.Filesz); err != nil {
				return nil, err
			}
			tls, tlsHdr = i, ph
		case elf.PT_SHLIB:
			return nil, invalid("segment %d has the reserved type PT_SHLIB", i)
		case elf.PT_GNU_STACK:
			if elf.ProgFlag(ph.Flags)&elf.PF_X != 0 {
				return nil, invalid("executable stack requested (PT_GNU_STACK with PF_X): link with -z noexecstack")
			}
		default:
			// PT_NULL, PT_PHDR, PT_GNU_PROPERTY, PT_GNU_RELRO,
			// PT_GNU_EH_FRAME and vendor types do not affect loading.
		}
	}
	if err := notes.check(); err != nil {
		if len(loads) == 0 && emptyLoad < 0 {
			return nil, invalid("no PT_LOAD segment")
		}
		return nil, err
	}
	if notes.solo5 == nil && emptyLoad >= 0 {
		return nil, invalid("segment %d at %#x is empty (p_memsz 0)", emptyLoad, emptyAddr)
	}
	if len(loads) == 0 {
		return nil, invalid("no PT_LOAD segment")
	}
	if notes.solo5 == nil {
		if interp >= 0 {
			return nil, invalid("dynamically linked (PT_INTERP): only static executables are supported")
		}
		if tls >= 0 {
			return nil, invalid("thread-local storage (PT_TLS) is not supported")
		}
	} else if err := checkSolo5Segments(interp, interpData, tls, &tlsHdr, loads); err != nil {
		return nil, err
	}

	// Permissions are per page, so no two segments may touch the same page.
	// After sorting by address it suffices to compare neighbours: if any two
	// overlap, some adjacent pair does. A stable sort keeps the messages for
	// equal addresses deterministic.
	slices.SortStableFunc(loads, func(a, b loadSeg) int { return cmp.Compare(a.Addr, b.Addr) })
	for k := 1; k < len(loads); k++ {
		prev, cur := &loads[k-1], &loads[k]
		if cur.Addr < prev.End() {
			return nil, invalid("segment %d [%#x, +%#x) overlaps segment %d [%#x, +%#x)",
				cur.index, cur.Addr, cur.MemSize, prev.index, prev.Addr, prev.MemSize)
		}
		// Rounding up overflows only if memSize is within a page of 2^64.
		prevEnd, ok := pageUp(prev.End())
		if !ok || pageDown(cur.Addr) < prevEnd {
			return nil, invalid("segment %d [%#x, +%#x) shares page %#x with segment %d [%#x, +%#x): permissions are per page, align segments to %#x",
				cur.index, cur.Addr, cur.MemSize, pageDown(cur.Addr), prev.index, prev.Addr, prev.MemSize, pageSize)
		}
	}

	entry := hdr.Entry
	if err := checkEntry(entry, loads); err != nil {
		return nil, err
	}

	end, ok := pageUp(loads[len(loads)-1].End())
	if !ok {
		return nil, invalid("image end %#x overflows", loads[len(loads)-1].End())
	}
	if top, ok := add(end, MinStack); !ok || top > memSize {
		return nil, invalid("image ends at %#x, leaving less than %d KiB for the stack: image too large for %s of guest memory",
			end, MinStack>>10, sizeString(memSize))
	}

	img := &Image{
		Entry:      entry,
		Segments:   make([]Segment, len(loads)),
		End:        end,
		ABIVersion: notes.version,
		Devices:    notes.devices,
		Solo5:      notes.solo5,
	}
	for k := range loads {
		img.Segments[k] = loads[k].Segment
	}
	return img, nil
}

// CheckHeader validates the ELF header at the start of a file of size bytes,
// of which head holds at least the header, before the rest is read: a file
// that is too large or no guest executable is refused without reading it.
func CheckHeader(head []byte, size uint64) error {
	if size > MaxFileSize {
		return invalid("file is %d bytes, over the %d MiB limit", size, MaxFileSize>>20)
	}
	_, err := parseHeader(head, size)
	return err
}

// parseHeader validates the ELF header at the start of file, a file of size
// bytes, including that the program header table lies inside the file.
func parseHeader(file []byte, size uint64) (*elf.Header64, error) {
	if len(file) < ehdrSize {
		return nil, invalid("file is %d bytes, shorter than the %d-byte ELF header", len(file), ehdrSize)
	}
	var h elf.Header64
	copy(h.Ident[:], file[:elf.EI_NIDENT])
	le := binary.LittleEndian
	h.Type = le.Uint16(file[16:])
	h.Machine = le.Uint16(file[18:])
	h.Version = le.Uint32(file[20:])
	h.Entry = le.Uint64(file[24:])
	h.Phoff = le.Uint64(file[32:])
	h.Shoff = le.Uint64(file[40:])
	h.Flags = le.Uint32(file[48:])
	h.Ehsize = le.Uint16(file[52:])
	h.Phentsize = le.Uint16(file[54:])
	h.Phnum = le.Uint16(file[56:])
	h.Shentsize = le.Uint16(file[58:])
	h.Shnum = le.Uint16(file[60:])
	h.Shstrndx = le.Uint16(file[62:])

	id := &h.Ident
	if string(id[:4]) != elf.ELFMAG {
		return nil, invalid("bad magic %q: not an ELF file", id[:4])
	}
	if c := elf.Class(id[elf.EI_CLASS]); c != elf.ELFCLASS64 {
		return nil, invalid("class %v: only 64-bit (ELFCLASS64) executables are supported", c)
	}
	if d := elf.Data(id[elf.EI_DATA]); d != elf.ELFDATA2LSB {
		return nil, invalid("data encoding %v: only little-endian (ELFDATA2LSB) executables are supported", d)
	}
	if v := id[elf.EI_VERSION]; v != byte(elf.EV_CURRENT) {
		return nil, invalid("identification version %d, want %d", v, elf.EV_CURRENT)
	}
	if o := elf.OSABI(id[elf.EI_OSABI]); o != elf.ELFOSABI_NONE && o != elf.ELFOSABI_LINUX {
		return nil, invalid("OS ABI %v: only System V (0) and GNU/Linux (3) are supported", o)
	}
	if v := h.Version; v != uint32(elf.EV_CURRENT) {
		return nil, invalid("ELF version %d, want %d", v, elf.EV_CURRENT)
	}
	switch t := elf.Type(h.Type); t {
	case elf.ET_EXEC:
	case elf.ET_DYN:
		return nil, invalid("position-independent executable or shared object (ET_DYN): link the guest with -no-pie (-static)")
	default:
		return nil, invalid("file type %v: only executables (ET_EXEC) are supported", t)
	}
	if m := elf.Machine(h.Machine); m != elf.EM_X86_64 {
		return nil, invalid("machine %v: only x86-64 (EM_X86_64) is supported", m)
	}
	if h.Ehsize != ehdrSize {
		return nil, invalid("ELF header size %d, want %d", h.Ehsize, ehdrSize)
	}
	if h.Phentsize != phdrSize {
		return nil, invalid("program header size %d, want %d", h.Phentsize, phdrSize)
	}
	switch n := h.Phnum; {
	case n == 0:
		return nil, invalid("no program headers")
	case n == pnXNum:
		return nil, invalid("extended program header count (PN_XNUM) is not supported")
	case n > MaxProgHeaders:
		return nil, invalid("%d program headers, at most %d are supported", n, MaxProgHeaders)
	}
	tableSize := uint64(h.Phnum) * phdrSize // at most 64*56: no overflow
	if end, ok := add(h.Phoff, tableSize); !ok || end > size {
		return nil, invalid("program header table [%#x, +%#x) is outside the %#x-byte file", h.Phoff, tableSize, size)
	}
	return &h, nil
}

// decodeProg decodes the program header at the start of b, which holds at
// least phdrSize bytes.
func decodeProg(b []byte) elf.Prog64 {
	le := binary.LittleEndian
	return elf.Prog64{
		Type:   le.Uint32(b[0:]),
		Flags:  le.Uint32(b[4:]),
		Off:    le.Uint64(b[8:]),
		Vaddr:  le.Uint64(b[16:]),
		Paddr:  le.Uint64(b[24:]),
		Filesz: le.Uint64(b[32:]),
		Memsz:  le.Uint64(b[40:]),
		Align:  le.Uint64(b[48:]),
	}
}

// checkLoad validates PT_LOAD program header i on its own; how it relates to
// the other segments is checked by Parse.
func checkLoad(file []byte, i int, ph *elf.Prog64, memSize uint64) (loadSeg, error) {
	flags := elf.ProgFlag(ph.Flags)
	rng := fmt.Sprintf("[%#x, +%#x)", ph.Vaddr, ph.Memsz)
	if ph.Memsz == 0 {
		return loadSeg{}, invalid("segment %d at %#x is empty (p_memsz 0)", i, ph.Vaddr)
	}
	if ph.Filesz > ph.Memsz {
		return loadSeg{}, invalid("segment %d %s has p_filesz %#x larger than p_memsz %#x", i, rng, ph.Filesz, ph.Memsz)
	}
	data, err := fileRange(file, i, ph.Off, ph.Filesz)
	if err != nil {
		return loadSeg{}, err
	}
	if ph.Paddr != ph.Vaddr {
		return loadSeg{}, invalid("segment %d has p_paddr %#x different from p_vaddr %#x: guest memory is identity-mapped", i, ph.Paddr, ph.Vaddr)
	}
	if a := ph.Align; a > 1 && a&(a-1) != 0 {
		return loadSeg{}, invalid("segment %d has alignment %#x, which is not a power of two", i, a)
	}
	// The ELF rule (p_vaddr ≡ p_offset mod p_align) only matters to loaders
	// that map the file; we copy, but a mismatch still means a broken link.
	if ph.Align >= pageSize && ph.Vaddr%pageSize != ph.Off%pageSize {
		return loadSeg{}, invalid("segment %d has p_vaddr %#x and p_offset %#x not congruent modulo the page size %#x", i, ph.Vaddr, ph.Off, pageSize)
	}
	if ph.Vaddr < hypercall.ImageBase {
		return loadSeg{}, invalid("segment %d %s starts below the image base %#x: link the guest at %#x or above", i, rng, hypercall.ImageBase, hypercall.ImageBase)
	}
	end, ok := add(ph.Vaddr, ph.Memsz)
	if !ok {
		return loadSeg{}, invalid("segment %d %s: address plus size overflows", i, rng)
	}
	if end > memSize {
		return loadSeg{}, invalid("segment %d %s ends at %#x, beyond the %s of guest memory", i, rng, end, sizeString(memSize))
	}
	if flags&^(elf.PF_R|elf.PF_W|elf.PF_X) != 0 {
		return loadSeg{}, invalid("segment %d %s has unknown flag bits %#x", i, rng, uint32(flags&^(elf.PF_R|elf.PF_W|elf.PF_X)))
	}
	if flags&(elf.PF_R|elf.PF_W|elf.PF_X) == 0 {
		return loadSeg{}, invalid("segment %d %s has no permissions (none of PF_R, PF_W, PF_X)", i, rng)
	}
	if flags&elf.PF_W != 0 && flags&elf.PF_X != 0 {
		return loadSeg{}, invalid("segment %d %s is both writable and executable", i, rng)
	}
	perm := vcpu.Read
	if flags&elf.PF_W != 0 {
		perm |= vcpu.Write
	}
	if flags&elf.PF_X != 0 {
		perm |= vcpu.Exec
	}
	return loadSeg{
		Segment: Segment{Addr: ph.Vaddr, MemSize: ph.Memsz, Data: data, Perm: perm},
		index:   i,
	}, nil
}

// checkEntry requires the entry point to lie inside an executable segment.
func checkEntry(entry uint64, loads []loadSeg) error {
	for k := range loads {
		s := &loads[k]
		if entry < s.Addr || entry >= s.End() {
			continue
		}
		if s.Perm&vcpu.Exec == 0 {
			return invalid("entry point %#x is not inside an executable segment: it lies in segment %d [%#x, +%#x), which is %v",
				entry, s.index, s.Addr, s.MemSize, s.Perm)
		}
		return nil
	}
	return invalid("entry point %#x is not inside an executable segment (it is outside every segment)", entry)
}

// fileRange returns file[off:off+size] for program header i, with its capacity
// clipped, or an error if the range is not inside the file. An empty range
// refers to no bytes, so its offset is not checked: linkers give segments
// without file contents (such as .bss) offsets that may lie past the end.
func fileRange(file []byte, i int, off, size uint64) ([]byte, error) {
	if size == 0 {
		return nil, nil
	}
	end, ok := add(off, size)
	if !ok || end > uint64(len(file)) {
		return nil, invalid("segment %d file range [%#x, +%#x) is outside the %#x-byte file", i, off, size, len(file))
	}
	return file[off:end:end], nil
}

// noteAlign returns the note alignment implied by a PT_NOTE's p_align: 8 for
// the 8-byte notes (such as GNU properties), 4 for the classic ones.
func noteAlign(i int, a uint64) (uint64, error) {
	switch a {
	case 0, 1, 2, 4:
		return 4, nil
	case 8:
		return 8, nil
	}
	return 0, invalid("segment %d (PT_NOTE) has alignment %#x, want 4 or 8", i, a)
}

// note is one ELF note as found by walkNotes. name and desc alias the file.
type note struct {
	name []byte // namesz bytes, including the terminating NUL if any
	typ  uint32
	desc []byte
}

// walkNotes calls visit for each note in data, the contents of a PT_NOTE
// segment whose notes are aligned to align (4 or 8) bytes, and stops at the
// first error. The descriptor and the next note start at offsets rounded up
// to align; every note, padding included, must lie inside data. The returned
// errors are plain reasons, for the caller to wrap with the segment.
func walkNotes(data []byte, align uint64, visit func(note) error) error {
	size := uint64(len(data))
	for off := uint64(0); off < size; {
		if size-off < 12 {
			return fmt.Errorf("truncated note header at offset %#x (%d bytes left, need 12)", off, size-off)
		}
		h := data[off:]
		namesz := uint64(binary.LittleEndian.Uint32(h[0:]))
		descsz := uint64(binary.LittleEndian.Uint32(h[4:]))
		typ := binary.LittleEndian.Uint32(h[8:])
		// off < size <= MaxInt and the sizes are below 2^32, so these sums
		// cannot overflow; they are checked anyway to keep the rule simple.
		nameOff := off + 12
		nameEnd, ok1 := add(nameOff, namesz)
		// Solo5's notes are laid out as 4-byte notes even in a segment
		// aligned to 8 (its manifest carries its own padding).
		descAlign := align
		if nameEnd <= size && string(data[nameOff:nameEnd]) == solo5Name {
			descAlign = 4
		}
		descOff, ok2 := alignUp(nameEnd, descAlign)
		descEnd, ok3 := add(descOff, descsz)
		next, ok4 := alignUp(descEnd, align)
		if !(ok1 && ok2 && ok3 && ok4) || next > size {
			return fmt.Errorf("note at offset %#x (namesz %#x, descsz %#x) crosses the segment end %#x", off, namesz, descsz, size)
		}
		n := note{
			name: data[nameOff:nameEnd:nameEnd],
			typ:  typ,
			desc: data[descOff:descEnd:descEnd],
		}
		if err := visit(n); err != nil {
			return err
		}
		off = next
	}
	return nil
}

// tenderName is the owner name of tender's notes as stored, with its NUL.
const tenderName = hypercall.NoteName + "\x00"

// abiNotes collects the Tender notes found in all PT_NOTE segments. New note
// types get a case in visit and, if needed, a check in check.
type abiNotes struct {
	found    bool // an ABI note was seen
	version  uint32
	reserved uint32
	unknown  uint32 // the first unknown Tender note type, if hasUnk
	hasUnk   bool
	devices  []Device // the validated manifest, set by check
	// devNotes are the descriptors of the device notes in file order,
	// validated by checkDevices. Collecting stops past DevicesMax notes,
	// which is already an error.
	devNotes [][]byte
	s5       solo5Notes     // Solo5's notes
	solo5    *Solo5Manifest // set by check for a Solo5 executable
}

// visit records one note; foreign notes (GNU, Go, OpenBSD...) are ignored.
func (a *abiNotes) visit(n note) error {
	if string(n.name) == solo5Name {
		return a.s5.visit(n)
	}
	if string(n.name) != tenderName {
		return nil
	}
	switch n.typ {
	case hypercall.NoteTypeABI:
		if a.found {
			return errors.New("duplicate Tender ABI note")
		}
		a.found = true
		if len(n.desc) != 8 {
			return fmt.Errorf("the Tender ABI note has a %d-byte descriptor, want 8", len(n.desc))
		}
		a.version = binary.LittleEndian.Uint32(n.desc[0:])
		a.reserved = binary.LittleEndian.Uint32(n.desc[4:])
	case hypercall.NoteTypeDevices:
		if len(a.devNotes) <= hypercall.DevicesMax {
			a.devNotes = append(a.devNotes, n.desc)
		}
	default:
		if !a.hasUnk {
			a.unknown, a.hasUnk = n.typ, true
		}
	}
	return nil
}

// deviceEntrySize is sizeof(struct tender_device_entry).
const deviceEntrySize = 8 + hypercall.DeviceNameMax + 1

// checkDevices validates the device notes once the ABI version is known to be
// ours (so a guest for another ABI is told about the version, not about a
// note format that may have changed). Each note normally holds one entry
// (the guest runtime emits one note per device); a descriptor of several
// whole entries is accepted too, since the manifest is the concatenation of
// the entries in file order.
func (a *abiNotes) checkDevices() ([]Device, error) {
	var devs []Device
	for _, desc := range a.devNotes {
		if len(desc) == 0 || len(desc)%deviceEntrySize != 0 {
			return nil, invalid("a Tender device note has a %d-byte descriptor, want %d bytes per device", len(desc), deviceEntrySize)
		}
		for ; len(desc) > 0; desc = desc[deviceEntrySize:] {
			idx := len(devs)
			if idx == hypercall.DevicesMax {
				return nil, invalid("more than %d devices declared", hypercall.DevicesMax)
			}
			typ := binary.LittleEndian.Uint32(desc[0:])
			reserved := binary.LittleEndian.Uint32(desc[4:])
			name, err := deviceName(desc[8:deviceEntrySize])
			if err != nil {
				return nil, invalid("device %d: %v", idx, err)
			}
			if typ != hypercall.DeviceNet && typ != hypercall.DeviceBlock {
				return nil, invalid("device %d (%q): unknown device type %d", idx, name, typ)
			}
			if reserved != 0 {
				return nil, invalid("device %d (%q): reserved field %#x, want 0", idx, name, reserved)
			}
			for k, d := range devs {
				if d.Name == name {
					return nil, invalid("device %d: name %q already used by device %d", idx, name, k)
				}
			}
			devs = append(devs, Device{Type: typ, Name: name})
		}
	}
	return devs, nil
}

// deviceName validates a NUL-padded name field: 1 to DeviceNameMax
// printable ASCII characters other than space and '=' (it appears in
// `-net NAME=...` and `-block NAME=...`), then NULs only.
func deviceName(field []byte) (string, error) {
	n := bytes.IndexByte(field, 0)
	switch {
	case n < 0:
		return "", fmt.Errorf("name %q is not NUL-terminated: longer than %d characters", field, hypercall.DeviceNameMax)
	case n == 0:
		return "", errors.New("empty name")
	}
	name := field[:n]
	for i, c := range name {
		if c <= ' ' || c > '~' || c == '=' {
			return "", fmt.Errorf("name %q has character %q at offset %d: want printable ASCII without space or '='", name, c, i)
		}
	}
	for _, c := range field[n:] {
		if c != 0 {
			return "", fmt.Errorf("name %q is followed by non-zero padding", name)
		}
	}
	return string(name), nil
}

// check reports a missing or unsupported ABI note after all notes are seen.
// The version is checked before anything else in the note, so a guest for
// another ABI gets the message that tells its builder what to fix.
func (a *abiNotes) check() error {
	if a.s5.found || a.s5.mft != nil {
		if a.found || len(a.devNotes) > 0 || a.hasUnk {
			return invalid("both Tender and Solo5 ABI notes: a guest is built for one ABI")
		}
		m, err := a.s5.check()
		a.solo5 = m
		return err
	}
	if !a.found {
		return invalid("no Tender ABI note: build the guest with the tender runtime")
	}
	if a.version != hypercall.ABIVersion {
		return invalid("guest built for ABI version %d; this monitor supports %d", a.version, hypercall.ABIVersion)
	}
	if a.reserved != 0 {
		return invalid("Tender ABI note has reserved field %#x, want 0", a.reserved)
	}
	if a.hasUnk {
		return invalid("unknown Tender note type %d (this monitor supports ABI version %d)", a.unknown, hypercall.ABIVersion)
	}
	devs, err := a.checkDevices()
	a.devices = devs
	return err
}

// add returns a+b and whether it did not overflow.
func add(a, b uint64) (uint64, bool) {
	s, carry := bits.Add64(a, b, 0)
	return s, carry == 0
}

// alignUp rounds x up to a multiple of a (a power of two), reporting overflow.
func alignUp(x, a uint64) (uint64, bool) {
	s, ok := add(x, a-1)
	return s &^ (a - 1), ok
}

func pageDown(x uint64) uint64 { return x &^ (pageSize - 1) }

func pageUp(x uint64) (uint64, bool) { return alignUp(x, pageSize) }

// sizeString formats a guest memory size for messages.
func sizeString(n uint64) string {
	if n != 0 && n%(1<<20) == 0 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%#x bytes", n)
}

// HasABINote reports whether file is an ELF executable whose PT_NOTE segments
// hold a Tender ABI note or a Solo5 ABI1 note (a Solo5 hvt executable, which
// tender runs too), whatever its version and whether or not the rest of it
// would load: it tells a guest of tender's (which Parse then validates, with
// its reasons) from any other program, such as one a container runtime
// should hand to another runtime. It never panics.
func HasABINote(file []byte) bool {
	hdr, err := parseHeader(file, uint64(len(file)))
	if err != nil {
		return false
	}
	var notes abiNotes
	for i := 0; i < int(hdr.Phnum); i++ {
		ph := decodeProg(file[int(hdr.Phoff)+i*phdrSize:])
		if elf.ProgType(ph.Type) != elf.PT_NOTE {
			continue
		}
		data, err := fileRange(file, i, ph.Off, ph.Filesz)
		if err != nil {
			continue
		}
		align, err := noteAlign(i, ph.Align)
		if err != nil {
			continue
		}
		// A malformed note ends the walk of its segment only; the notes
		// before it count.
		_ = walkNotes(data, align, notes.visit)
		if notes.found || notes.s5.found {
			return true
		}
	}
	return false
}
