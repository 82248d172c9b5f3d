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
	"cmp"
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
