package loader

import (
	"bytes"
	"debug/elf"
	"encoding/binary"

	"github.com/tendervm/tender/hypercall"
)

// This file is a small ELF writer for tests: a test describes an executable
// as program headers with payloads, and edits the result where it wants to
// break a rule.

// seg is one program header and its payload.
type seg struct {
	typ   elf.ProgType
	flags elf.ProgFlag
	vaddr uint64 // also p_paddr
	memsz uint64 // 0 means len(data)
	align uint64
	data  []byte
}

// image describes an executable for build.
type image struct {
	typ   elf.Type
	entry uint64
	segs  []seg
	// edit, if set, changes the headers after layout and before they are
	// written.
	edit func(h *elf.Header64, ph []elf.Prog64)
	// raw, if set, changes the finished file.
	raw func([]byte) []byte
}

// build lays the image out: the ELF header, the program header table, then
// each payload at the first offset that suits it (congruent to p_vaddr modulo
// the page size for PT_LOAD, aligned to p_align otherwise).
func (im *image) build() []byte {
	n := len(im.segs)
	typ := im.typ
	if typ == 0 {
		typ = elf.ET_EXEC
	}
	h := elf.Header64{
		Type:      uint16(typ),
		Machine:   uint16(elf.EM_X86_64),
		Version:   uint32(elf.EV_CURRENT),
		Entry:     im.entry,
		Phoff:     ehdrSize,
		Ehsize:    ehdrSize,
		Phentsize: phdrSize,
		Phnum:     uint16(n),
	}
	copy(h.Ident[:], elf.ELFMAG)
	h.Ident[elf.EI_CLASS] = byte(elf.ELFCLASS64)
	h.Ident[elf.EI_DATA] = byte(elf.ELFDATA2LSB)
	h.Ident[elf.EI_VERSION] = byte(elf.EV_CURRENT)
	h.Ident[elf.EI_OSABI] = byte(elf.ELFOSABI_NONE)

	ph := make([]elf.Prog64, n)
	offs := make([]uint64, n) // payload offsets, kept apart from edits
	cursor := uint64(ehdrSize + n*phdrSize)
	for i, s := range im.segs {
		off := uint64(0)
		if len(s.data) > 0 {
			off = cursor
			if s.typ == elf.PT_LOAD {
				for off%pageSize != s.vaddr%pageSize {
					off++
				}
			} else if s.align > 1 {
				off = (off + s.align - 1) &^ (s.align - 1)
			}
			cursor = off + uint64(len(s.data))
		}
		offs[i] = off
		memsz := s.memsz
		if memsz == 0 {
			memsz = uint64(len(s.data))
		}
		ph[i] = elf.Prog64{
			Type:   uint32(s.typ),
			Flags:  uint32(s.flags),
			Off:    off,
			Vaddr:  s.vaddr,
			Paddr:  s.vaddr,
			Filesz: uint64(len(s.data)),
			Memsz:  memsz,
			Align:  s.align,
		}
	}
	if im.edit != nil {
		im.edit(&h, ph)
	}

	var buf bytes.Buffer
	must(binary.Write(&buf, binary.LittleEndian, &h))
	must(binary.Write(&buf, binary.LittleEndian, ph))
	file := make([]byte, cursor)
	copy(file, buf.Bytes())
	for i, s := range im.segs {
		if len(s.data) > 0 {
			copy(file[offs[i]:], s.data)
		}
	}
	if im.raw != nil {
		file = im.raw(file)
	}
	return file
}

func must(err error) {
	if err != nil {
		panic(err)
	}
}

// noteBytes encodes one note with the given name (a NUL is appended),
// type and descriptor, padded to align.
func noteBytes(name string, typ uint32, desc []byte, align int) []byte {
	pad := func(b []byte) []byte {
		for len(b)%align != 0 {
			b = append(b, 0)
		}
		return b
	}
	var b []byte
	b = binary.LittleEndian.AppendUint32(b, uint32(len(name)+1))
	b = binary.LittleEndian.AppendUint32(b, uint32(len(desc)))
	b = binary.LittleEndian.AppendUint32(b, typ)
	b = pad(append(append(b, name...), 0))
	return pad(append(b, desc...))
}

// abiNote encodes a Tender ABI note with 4-byte alignment.
func abiNote(version, reserved uint32) []byte {
	var d []byte
	d = binary.LittleEndian.AppendUint32(d, version)
	d = binary.LittleEndian.AppendUint32(d, reserved)
	return noteBytes(hypercall.NoteName, hypercall.NoteTypeABI, d, 4)
}

// deviceEntry encodes one device manifest entry; name is copied into the
// 24-byte name field as is (so a test can leave it unterminated).
func deviceEntry(typ, reserved uint32, name string) []byte {
	var d [8 + hypercall.DeviceNameMax + 1]byte
	binary.LittleEndian.PutUint32(d[0:], typ)
	binary.LittleEndian.PutUint32(d[4:], reserved)
	copy(d[8:], name)
	return d[:]
}

// devNote encodes a Tender device note with one network device entry per
// name, 4-byte aligned.
func devNote(names ...string) []byte {
	var d []byte
	for _, n := range names {
		d = append(d, deviceEntry(hypercall.DeviceNet, 0, n)...)
	}
	return noteBytes(hypercall.NoteName, hypercall.NoteTypeDevices, d, 4)
}

// blockNote encodes a Tender device note with one block device entry per
// name.
func blockNote(names ...string) []byte {
	var d []byte
	for _, n := range names {
		d = append(d, deviceEntry(hypercall.DeviceBlock, 0, n)...)
	}
	return noteBytes(hypercall.NoteName, hypercall.NoteTypeDevices, d, 4)
}

// gnuBuildID is a foreign note that Parse must skip.
var gnuBuildID = noteBytes("GNU", 3, []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20}, 4)

// Addresses of the valid image. The low 12 bits follow the file layout so the
// file stays under a page.
const (
	textAddr   = 0x100400
	rodataAddr = 0x101480
	dataAddr   = 0x102500
	dataMem    = 0x3000 // .data plus .bss
	entryAddr  = textAddr + 0x10
	testMem    = 16 << 20
)

// validImage returns a fresh description of a well-formed guest, shaped like
// real linker output: text, rodata, data+bss, the notes, a non-executable
// stack marker and a few headers Parse ignores.
func validImage() *image {
	text := bytes.Repeat([]byte{0x90}, 0x40) // nop sled
	rodata := []byte("hello, tender\n\x00\x00")
	data := bytes.Repeat([]byte{0xd0}, 0x20)
	return &image{
		entry: entryAddr,
		segs: []seg{
			{typ: elf.PT_PHDR, flags: elf.PF_R, align: 8},
			{typ: elf.PT_NOTE, flags: elf.PF_R, align: 4, data: append(append([]byte{}, gnuBuildID...), abiNote(hypercall.ABIVersion, 0)...)},
			{typ: elf.PT_LOAD, flags: elf.PF_R | elf.PF_X, vaddr: textAddr, align: pageSize, data: text},
			{typ: elf.PT_LOAD, flags: elf.PF_R, vaddr: rodataAddr, align: pageSize, data: rodata},
			{typ: elf.PT_LOAD, flags: elf.PF_R | elf.PF_W, vaddr: dataAddr, memsz: dataMem, align: pageSize, data: data},
			{typ: elf.PT_GNU_STACK, flags: elf.PF_R | elf.PF_W},
			{typ: elf.PT_GNU_RELRO, flags: elf.PF_R, vaddr: rodataAddr},
		},
	}
}

// with returns validImage changed by f.
func with(f func(im *image)) []byte {
	im := validImage()
	f(im)
	return im.build()
}

// withHeaders returns validImage with its headers changed by f.
func withHeaders(f func(h *elf.Header64, ph []elf.Prog64)) []byte {
	return with(func(im *image) { im.edit = f })
}

// Indexes of validImage's program headers.
const (
	phNote   = 1
	phText   = 2
	phRodata = 3
	phData   = 4
	phStack  = 5
)
