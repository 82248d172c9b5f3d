package loader

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/tendervm/tender/hypercall/solo5"
	"github.com/tendervm/tender/monitor/internal/elf"
)

// solo5Name is the owner name of Solo5's notes as stored, with its NUL.
const solo5Name = solo5.NoteName + "\x00"

// Solo5Manifest is the validated MFT1 manifest of a Solo5 executable.
type Solo5Manifest struct {
	// Entries are the manifest's entries in order: an entry's handle is its
	// index. Entry 0 is the reserved one (type solo5.TypeReservedFirst, no
	// name).
	Entries []Solo5Entry
}

// Solo5Entry is one manifest entry.
type Solo5Entry struct {
	// Type is solo5.TypeNet, solo5.TypeBlock or, for entry 0 only,
	// solo5.TypeReservedFirst.
	Type uint32
	// Name is the device name, empty for entry 0.
	Name string
}

// Devices returns the entries after the reserved one, with their handles.
func (m *Solo5Manifest) Devices() []Solo5Entry {
	if len(m.Entries) == 0 {
		return nil
	}
	return m.Entries[1:]
}

// solo5Notes collects Solo5's notes.
type solo5Notes struct {
	found            bool // an ABI1 note was seen
	target, version  uint32
	reserved1, resv2 uint32
	mft              []byte // the MFT1 descriptor, if seen
	unknown          uint32 // the first other Solo5 note type, if hasUnk
	hasUnk           bool
}

func (s *solo5Notes) visit(n note) error {
	switch n.typ {
	case solo5.NoteTypeABI:
		if s.found {
			return errors.New("duplicate Solo5 ABI1 note")
		}
		s.found = true
		if len(n.desc) != solo5.ABINoteSize {
			return fmt.Errorf("the Solo5 ABI1 note has a %d-byte descriptor, want %d", len(n.desc), solo5.ABINoteSize)
		}
		le := binary.LittleEndian
		s.target, s.version = le.Uint32(n.desc[0:]), le.Uint32(n.desc[4:])
		s.reserved1, s.resv2 = le.Uint32(n.desc[8:]), le.Uint32(n.desc[12:])
	case solo5.NoteTypeManifest:
		if s.mft != nil {
			return errors.New("duplicate Solo5 MFT1 note")
		}
		s.mft = n.desc
		if s.mft == nil {
			s.mft = []byte{}
		}
	default:
		if !s.hasUnk {
			s.unknown, s.hasUnk = n.typ, true
		}
	}
	return nil
}

// check validates the Solo5 notes once all are seen: target and version
// first, so that a guest for another Solo5 target or version is told so.
func (s *solo5Notes) check() (*Solo5Manifest, error) {
	switch {
	case !s.found:
		return nil, invalid("Solo5 manifest without a Solo5 ABI1 note")
	case s.target != solo5.TargetHVT:
		return nil, invalid("Solo5 executable for target %d; tender runs hvt (%d) executables only", s.target, solo5.TargetHVT)
	case s.version != solo5.ABIVersion:
		return nil, invalid("Solo5 executable for hvt ABI version %d; tender supports %d", s.version, solo5.ABIVersion)
	case s.reserved1 != 0 || s.resv2 != 0:
		return nil, invalid("Solo5 ABI1 note has reserved fields %#x, %#x, want 0", s.reserved1, s.resv2)
	case s.hasUnk:
		return nil, invalid("unknown Solo5 note type %#x", s.unknown)
	case s.mft == nil:
		return nil, invalid("Solo5 executable without an MFT1 manifest note")
	}
	m, err := ParseSolo5Manifest(s.mft)
	if err != nil {
		return nil, err
	}
	return m, nil
}

// ParseSolo5Manifest validates an MFT1 note descriptor as the linker leaves
// it: solo5.ManifestPad bytes of padding, version 1, 1 to solo5.MaxEntries
// entries filling the rest exactly, entry 0 the reserved one, every other a
// block or network device with a unique, NUL-terminated name, every field
// the monitor fills in zero and attached false. Every error is an *Error.
func ParseSolo5Manifest(desc []byte) (*Solo5Manifest, error) {
	le := binary.LittleEndian
	if len(desc) < solo5.ManifestPad+solo5.ManifestHeader {
		return nil, invalid("Solo5 manifest of %d bytes, shorter than its %d-byte header", len(desc), solo5.ManifestPad+solo5.ManifestHeader)
	}
	body := desc[solo5.ManifestPad:]
	if v := le.Uint32(body[0:]); v != solo5.ManifestVersion {
		return nil, invalid("Solo5 manifest version %d, want %d", v, solo5.ManifestVersion)
	}
	n := le.Uint32(body[4:])
	switch {
	case n == 0:
		return nil, invalid("Solo5 manifest without entries (entry 0 is required)")
	case n > solo5.MaxEntries:
		return nil, invalid("Solo5 manifest has %d entries, at most %d are supported", n, solo5.MaxEntries)
	}
	if want := uint64(solo5.ManifestHeader) + uint64(n)*solo5.EntrySize; uint64(len(body)) != want {
		return nil, invalid("Solo5 manifest of %d entries is %d bytes, want %d", n, len(body), want)
	}
	m := &Solo5Manifest{Entries: make([]Solo5Entry, 0, n)}
	for i := range int(n) {
		e := body[solo5.ManifestHeader+i*solo5.EntrySize:][:solo5.EntrySize]
		ent, err := solo5Entry(i, e)
		if err != nil {
			return nil, err
		}
		for k, d := range m.Entries {
			if k > 0 && d.Name == ent.Name {
				return nil, invalid("Solo5 manifest entry %d: name %q already used by entry %d", i, ent.Name, k)
			}
		}
		m.Entries = append(m.Entries, ent)
	}
	return m, nil
}

// solo5Entry validates manifest entry i.
func solo5Entry(i int, e []byte) (Solo5Entry, error) {
	typ := binary.LittleEndian.Uint32(e[solo5.EntryType:])
	field := e[solo5.EntryName:solo5.NameSize]
	var name string
	if i == 0 {
		if typ != solo5.TypeReservedFirst {
			return Solo5Entry{}, invalid("Solo5 manifest entry 0 has type %#x, want the reserved type %#x", typ, solo5.TypeReservedFirst)
		}
		if !allZero(field) {
			return Solo5Entry{}, invalid("Solo5 manifest entry 0 has a name: it must be empty")
		}
	} else {
		var err error
		if name, err = solo5DeviceName(field); err != nil {
			return Solo5Entry{}, invalid("Solo5 manifest entry %d: %v", i, err)
		}
		if typ != solo5.TypeNet && typ != solo5.TypeBlock {
			return Solo5Entry{}, invalid("Solo5 manifest entry %d (%q): unknown type %#x", i, name, typ)
		}
	}
	if e[solo5.EntryAttached] != 0 {
		return Solo5Entry{}, invalid("Solo5 manifest entry %d (%q) is marked attached in the file", i, name)
	}
	if !allZero(e[solo5.EntryCapacity:solo5.EntryAttached]) || !allZero(e[solo5.EntryAttached+1:]) {
		return Solo5Entry{}, invalid("Solo5 manifest entry %d (%q) has non-zero fields the monitor fills in", i, name)
	}
	return Solo5Entry{Type: typ, Name: name}, nil
}

// solo5DeviceName validates a NUL-padded name field: 1 to NameSize-1
// printable ASCII characters other than space, '=' and ':' (it appears in
// `--net:NAME=IFACE`), then NULs only.
func solo5DeviceName(field []byte) (string, error) {
	n := bytes.IndexByte(field, 0)
	switch {
	case n < 0:
		return "", fmt.Errorf("name is not NUL-terminated within %d bytes", len(field))
	case n == 0:
		return "", errors.New("empty name")
	}
	name := field[:n]
	for k, c := range name {
		if c <= ' ' || c > '~' || c == '=' || c == ':' {
			return "", fmt.Errorf("name %q has character %q at offset %d: want printable ASCII without space, '=' or ':'", name, c, k)
		}
	}
	if !allZero(field[n:]) {
		return "", fmt.Errorf("name %q is followed by non-zero padding", name)
	}
	return string(name), nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// checkSolo5Segments validates the PT_INTERP (program header interp, or -1)
// and PT_TLS (tls, or -1) of a Solo5 executable: the interpreter is the
// fixed Solo5 path (NUL-terminated, NUL-padded), and the TLS template lies
// inside a loaded segment.
func checkSolo5Segments(interp int, interpData []byte, tls int, ph *elf.Prog64, loads []loadSeg) error {
	// The linker pads the path with NULs.
	if path, pad, _ := bytes.Cut(interpData, []byte{0}); interp >= 0 && (string(path) != solo5.Interp || len(interpData) == len(path) || !allZero(pad)) {
		return invalid("segment %d (PT_INTERP) names %q, want %q", interp, interpData, solo5.Interp)
	}
	if tls < 0 {
		return nil
	}
	// Before the empty case below, which would otherwise let a template
	// through that claims file bytes but no memory.
	if ph.Filesz > ph.Memsz {
		return invalid("segment %d (PT_TLS) [%#x, +%#x) has p_filesz %#x larger than p_memsz %#x", tls, ph.Vaddr, ph.Memsz, ph.Filesz, ph.Memsz)
	}
	if ph.Memsz == 0 {
		return nil
	}
	if _, ok := add(ph.Vaddr, ph.Memsz); !ok {
		return invalid("segment %d (PT_TLS) [%#x, +%#x): address plus size overflows", tls, ph.Vaddr, ph.Memsz)
	}
	// Only the template (p_filesz) must be loaded; .tbss is never read
	// from the image.
	tend := ph.Vaddr + ph.Filesz
	for k := range loads {
		s := &loads[k]
		if ph.Vaddr >= s.Addr && tend <= s.End() {
			return nil
		}
	}
	if ph.Filesz == 0 {
		return nil
	}
	return invalid("segment %d (PT_TLS) template [%#x, +%#x) is not inside a loaded segment", tls, ph.Vaddr, ph.Filesz)
}
