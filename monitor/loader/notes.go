package loader

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/tendervm/tender/hypercall"
	"github.com/tendervm/tender/monitor/internal/elf"
)

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
