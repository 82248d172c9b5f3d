package loader

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tendervm/tender/hypercall"
	"github.com/tendervm/tender/monitor/vcpu"
)

func TestParseValid(t *testing.T) {
	im := validImage()
	file := im.build()
	img, err := Parse(file, testMem)
	require.NoError(t, err)
	checkImage(t, img, file, testMem)

	assert.Equal(t, uint64(entryAddr), img.Entry)
	assert.Equal(t, uint32(hypercall.ABIVersion), img.ABIVersion)
	assert.Equal(t, uint64(0x106000), img.End, "page-rounded end of data+bss")
	require.Len(t, img.Segments, 3)
	want := []struct {
		addr, mem uint64
		data      []byte
		perm      vcpu.Perm
	}{
		{textAddr, 0x40, im.segs[phText].data, vcpu.Read | vcpu.Exec},
		{rodataAddr, 0x10, im.segs[phRodata].data, vcpu.Read},
		{dataAddr, dataMem, im.segs[phData].data, vcpu.Read | vcpu.Write},
	}
	for k, w := range want {
		s := img.Segments[k]
		assert.Equal(t, w.addr, s.Addr, "segment %d", k)
		assert.Equal(t, w.mem, s.MemSize, "segment %d", k)
		assert.Equal(t, w.data, s.Data, "segment %d", k)
		assert.Equal(t, w.perm, s.Perm, "segment %d: %v", k, s.Perm)
		assert.Equal(t, len(s.Data), cap(s.Data), "segment %d: Data capacity is clipped", k)
	}
	// Data aliases the file rather than copying it.
	assert.Same(t, &file[0x400], &img.Segments[0].Data[0])
}

// TestParseAccepts covers inputs that look unusual but are allowed.
func TestParseAccepts(t *testing.T) {
	tests := []struct {
		name  string
		file  []byte
		mem   uint64
		check func(t *testing.T, img *Image)
	}{
		{name: "GNU/Linux OS ABI", file: withHeaders(func(h *elf.Header64, ph []elf.Prog64) {
			h.Ident[elf.EI_OSABI] = byte(elf.ELFOSABI_LINUX)
		})},
		{name: "segments out of order are sorted", file: with(func(im *image) {
			s := im.segs
			s[phText], s[phData] = s[phData], s[phText]
		}), check: func(t *testing.T, img *Image) {
			assert.Equal(t, uint64(textAddr), img.Segments[0].Addr)
			assert.Equal(t, uint64(dataAddr), img.Segments[2].Addr)
		}},
		{name: "ignored header types", file: with(func(im *image) {
			im.segs = append(im.segs,
				seg{typ: elf.PT_NULL},
				seg{typ: elf.PT_GNU_EH_FRAME, flags: elf.PF_R, vaddr: rodataAddr},
				seg{typ: elf.PT_GNU_PROPERTY, flags: elf.PF_R, align: 8,
					data: noteBytes("GNU", 5, make([]byte, 16), 8)},
				seg{typ: elf.ProgType(0x6fffffff), flags: elf.PF_X | elf.PF_W},
				seg{typ: elf.PT_GNU_STACK, flags: elf.PF_R | elf.PF_W | 0x10000000},
			)
		})},
		{name: "write-only and execute-only flags are readable", file: with(func(im *image) {
			im.segs[phText].flags = elf.PF_X
			im.segs[phData].flags = elf.PF_W
		}), check: func(t *testing.T, img *Image) {
			assert.Equal(t, vcpu.Read|vcpu.Exec, img.Segments[0].Perm)
			assert.Equal(t, vcpu.Read|vcpu.Write, img.Segments[2].Perm)
		}},
		{name: "bss-only segment with its offset past the end", file: with(func(im *image) {
			im.segs = append(im.segs, seg{typ: elf.PT_LOAD, flags: elf.PF_R | elf.PF_W, vaddr: 0x200000, memsz: 0x1000, align: pageSize})
			im.edit = func(h *elf.Header64, ph []elf.Prog64) { ph[len(ph)-1].Off = 0x100000 }
		}), check: func(t *testing.T, img *Image) {
			assert.Empty(t, img.Segments[3].Data)
			assert.Equal(t, uint64(0x201000), img.End)
		}},
		{name: "segments on adjacent pages", file: with(func(im *image) {
			im.segs[phText].memsz = 0x1000 - 0x400 // ends exactly at 0x101000
		})},
		{name: "8-byte aligned note segment", file: with(func(im *image) {
			var d [8]byte
			d[0] = hypercall.ABIVersion
			im.segs[phNote] = seg{typ: elf.PT_NOTE, align: 8, data: append(
				noteBytes("GNU", 5, make([]byte, 16), 8),
				noteBytes(hypercall.NoteName, hypercall.NoteTypeABI, d[:], 8)...)}
		})},
		{name: "ABI note in its own PT_NOTE", file: with(func(im *image) {
			im.segs[phNote].data = gnuBuildID
			im.segs = append(im.segs, seg{typ: elf.PT_NOTE, align: 4, data: abiNote(hypercall.ABIVersion, 0)})
		})},
		{name: "a note owned by Tender-like names is foreign", file: with(func(im *image) {
			im.segs[phNote].data = append(noteBytes("Tenderfoot", 9, nil, 4), im.segs[phNote].data...)
		})},
		{name: "empty PT_NOTE", file: with(func(im *image) {
			im.segs = append(im.segs, seg{typ: elf.PT_NOTE, align: 4})
		})},
		{name: "no devices", file: validImage().build(), check: func(t *testing.T, img *Image) {
			assert.Empty(t, img.Devices)
		}},
		{name: "one network device", file: with(func(im *image) {
			im.segs[phNote].data = append(im.segs[phNote].data, devNote("net0")...)
		}), check: func(t *testing.T, img *Image) {
			assert.Equal(t, []Device{{Type: hypercall.DeviceNet, Name: "net0"}}, img.Devices)
		}},
		{name: "devices in file order across notes and segments", file: with(func(im *image) {
			im.segs[phNote].data = append(append(devNote("b"), im.segs[phNote].data...), devNote("a")...)
			im.segs = append(im.segs, seg{typ: elf.PT_NOTE, align: 8, data: noteBytes(hypercall.NoteName, hypercall.NoteTypeDevices,
				deviceEntry(hypercall.DeviceNet, 0, "c"), 8)})
		}), check: func(t *testing.T, img *Image) {
			require.Len(t, img.Devices, 3)
			assert.Equal(t, "b", img.Devices[0].Name)
			assert.Equal(t, "a", img.Devices[1].Name)
			assert.Equal(t, "c", img.Devices[2].Name)
		}},
		{name: "block and network devices share the handle space", file: with(func(im *image) {
			im.segs[phNote].data = append(append(im.segs[phNote].data, blockNote("disk")...), devNote("net0")...)
		}), check: func(t *testing.T, img *Image) {
			assert.Equal(t, []Device{{hypercall.DeviceBlock, "disk"}, {hypercall.DeviceNet, "net0"}}, img.Devices)
		}},
		{name: "several entries in one device note", file: with(func(im *image) {
			im.segs[phNote].data = append(im.segs[phNote].data, devNote("net0", "net1")...)
		}), check: func(t *testing.T, img *Image) {
			assert.Equal(t, []Device{{hypercall.DeviceNet, "net0"}, {hypercall.DeviceNet, "net1"}}, img.Devices)
		}},
		{name: "the most devices and the longest name", file: with(func(im *image) {
			for k := range hypercall.DevicesMax {
				im.segs[phNote].data = append(im.segs[phNote].data, devNote(fmt.Sprintf("%023d", k))...)
			}
		}), check: func(t *testing.T, img *Image) {
			require.Len(t, img.Devices, hypercall.DevicesMax)
			assert.Equal(t, "00000000000000000000007", img.Devices[7].Name)
		}},
		{name: "punctuation in a device name", file: with(func(im *image) {
			im.segs[phNote].data = append(im.segs[phNote].data, devNote("eth-0.lan_1:x/y~")...)
		})},
		{name: "exactly 64 KiB left for the stack", file: validImage().build(), mem: 0x106000 + MinStack},
		{name: "alignment below a page is not checked against offsets", file: withHeaders(func(h *elf.Header64, ph []elf.Prog64) {
			ph[phText].Align = 16
			ph[phText].Vaddr += 0x10
			ph[phText].Paddr += 0x10
			h.Entry += 0x10
		})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mem := tt.mem
			if mem == 0 {
				mem = testMem
			}
			img, err := Parse(tt.file, mem)
			require.NoError(t, err)
			checkImage(t, img, tt.file, mem)
			if tt.check != nil {
				tt.check(t, img)
			}
		})
	}
}

// malformed is one rejected input and the reason Parse must give.
type malformed struct {
	name string
	file []byte
	mem  uint64 // 0 means testMem
	want string
}

func malformedCases() []malformed {
	const max = math.MaxUint64
	hdr := func(f func(h *elf.Header64)) []byte {
		return withHeaders(func(h *elf.Header64, _ []elf.Prog64) { f(h) })
	}
	ph := func(i int, f func(p *elf.Prog64)) []byte {
		return withHeaders(func(_ *elf.Header64, p []elf.Prog64) { f(&p[i]) })
	}
	notes := func(data ...[]byte) []byte {
		return with(func(im *image) { im.segs[phNote].data = bytes.Join(data, nil) })
	}
	ident := func(i int, v byte) []byte {
		return hdr(func(h *elf.Header64) { h.Ident[i] = v })
	}
	valid := validImage().build()
	abi := abiNote(hypercall.ABIVersion, 0)

	return []malformed{
		// ELF header.
		{name: "empty file", file: nil, want: "file is 0 bytes, shorter than the 64-byte ELF header"},
		{name: "truncated header", file: valid[:63], want: "file is 63 bytes"},
		{name: "bad magic", file: ident(1, 'X'), want: `bad magic "\x7fXLF"`},
		{name: "32-bit class", file: ident(elf.EI_CLASS, byte(elf.ELFCLASS32)), want: "class ELFCLASS32: only 64-bit"},
		{name: "big endian", file: ident(elf.EI_DATA, byte(elf.ELFDATA2MSB)), want: "data encoding 2: only little-endian"},
		{name: "identification version", file: ident(elf.EI_VERSION, 0), want: "identification version 0, want 1"},
		{name: "OS ABI FreeBSD", file: ident(elf.EI_OSABI, byte(elf.ELFOSABI_FREEBSD)), want: "OS ABI 9: only System V"},
		{name: "ELF version", file: hdr(func(h *elf.Header64) { h.Version = 2 }), want: "ELF version 2, want 1"},
		{name: "ET_DYN", file: hdr(func(h *elf.Header64) { h.Type = uint16(elf.ET_DYN) }), want: "position-independent executable or shared object (ET_DYN): link the guest with -no-pie"},
		{name: "ET_REL", file: hdr(func(h *elf.Header64) { h.Type = uint16(elf.ET_REL) }), want: "file type ET_REL: only executables"},
		{name: "wrong machine", file: hdr(func(h *elf.Header64) { h.Machine = uint16(elf.EM_AARCH64) }), want: "machine EM_AARCH64: only x86-64"},
		{name: "ehsize", file: hdr(func(h *elf.Header64) { h.Ehsize = 52 }), want: "ELF header size 52, want 64"},
		{name: "phentsize", file: hdr(func(h *elf.Header64) { h.Phentsize = 32 }), want: "program header size 32, want 56"},
		{name: "no program headers", file: hdr(func(h *elf.Header64) { h.Phnum = 0 }), want: "no program headers"},
		{name: "PN_XNUM", file: hdr(func(h *elf.Header64) { h.Phnum = 0xffff }), want: "extended program header count (PN_XNUM)"},
		{name: "too many program headers", file: hdr(func(h *elf.Header64) { h.Phnum = 65 }), want: "65 program headers, at most 64"},
		{name: "truncated program headers", file: valid[:ehdrSize+3*phdrSize+10], want: "program header table [0x40, +0x188) is outside the 0xf2-byte file"},
		{name: "phoff overflow", file: hdr(func(h *elf.Header64) { h.Phoff = max - 8 }), want: "program header table [0xfffffffffffffff7, +0x188) is outside"},
		{name: "phoff past the end", file: hdr(func(h *elf.Header64) { h.Phoff = 0x500 }), want: "program header table [0x500, +0x188) is outside the 0x520-byte file"},

		// Program header types.
		{name: "PT_INTERP", file: ph(0, func(p *elf.Prog64) { p.Type = uint32(elf.PT_INTERP) }), want: "dynamically linked (PT_INTERP): only static executables are supported"},
		{name: "PT_DYNAMIC", file: ph(0, func(p *elf.Prog64) { p.Type = uint32(elf.PT_DYNAMIC) }), want: "dynamic section (PT_DYNAMIC)"},
		{name: "PT_TLS", file: ph(0, func(p *elf.Prog64) { p.Type = uint32(elf.PT_TLS) }), want: "thread-local storage (PT_TLS) is not supported"},
		{name: "PT_SHLIB", file: ph(0, func(p *elf.Prog64) { p.Type = uint32(elf.PT_SHLIB) }), want: "segment 0 has the reserved type PT_SHLIB"},
		{name: "executable stack", file: ph(phStack, func(p *elf.Prog64) { p.Flags |= uint32(elf.PF_X) }), want: "executable stack requested (PT_GNU_STACK with PF_X)"},

		// PT_LOAD on its own.
		{name: "empty segment", file: ph(phRodata, func(p *elf.Prog64) { p.Filesz, p.Memsz = 0, 0 }), want: "segment 3 at 0x101480 is empty (p_memsz 0)"},
		{name: "filesz > memsz", file: ph(phRodata, func(p *elf.Prog64) { p.Memsz = p.Filesz - 1 }), want: "segment 3 [0x101480, +0xf) has p_filesz 0x10 larger than p_memsz 0xf"},
		{name: "offset+filesz overflow", file: ph(phRodata, func(p *elf.Prog64) { p.Off = max - 7 }), want: "segment 3 file range [0xfffffffffffffff8, +0x10) is outside the 0x520-byte file"},
		{name: "segment data past the end", file: ph(phData, func(p *elf.Prog64) { p.Filesz = 0x21 }), want: "segment 4 file range [0x500, +0x21) is outside the 0x520-byte file"},
		{name: "paddr differs", file: ph(phText, func(p *elf.Prog64) { p.Paddr = 0x400000 }), want: "segment 2 has p_paddr 0x400000 different from p_vaddr 0x100400"},
		{name: "alignment not a power of two", file: ph(phText, func(p *elf.Prog64) { p.Align = 0x3000 }), want: "segment 2 has alignment 0x3000, which is not a power of two"},
		{name: "misaligned offset vs vaddr", file: ph(phText, func(p *elf.Prog64) { p.Off += 8 }), want: "segment 2 has p_vaddr 0x100400 and p_offset 0x408 not congruent modulo the page size 0x1000"},
		{name: "vaddr below 1 MiB", file: withHeaders(func(h *elf.Header64, p []elf.Prog64) {
			p[phText].Vaddr, p[phText].Paddr, h.Entry = 0xff400, 0xff400, 0xff400
		}), want: "segment 2 [0xff400, +0x40) starts below the image base 0x100000"},
		{name: "segment beyond memSize", file: valid, mem: 0x105000, want: "segment 4 [0x102500, +0x3000) ends at 0x105500, beyond the 0x105000 bytes of guest memory"},
		{name: "segment beyond memSize in MiB", file: ph(phData, func(p *elf.Prog64) { p.Memsz = testMem }), want: "segment 4 [0x102500, +0x1000000) ends at 0x1102500, beyond the 16 MiB of guest memory"},
		{name: "vaddr+memsz overflow", file: ph(phData, func(p *elf.Prog64) { p.Memsz = max - 0x1000 }), want: "segment 4 [0x102500, +0xffffffffffffefff): address plus size overflows"},
		{name: "no permissions", file: ph(phRodata, func(p *elf.Prog64) { p.Flags = 0 }), want: "segment 3 [0x101480, +0x10) has no permissions"},
		{name: "unknown flags", file: ph(phRodata, func(p *elf.Prog64) { p.Flags |= 0x100000 }), want: "segment 3 [0x101480, +0x10) has unknown flag bits 0x100000"},
		{name: "W+X", file: ph(phText, func(p *elf.Prog64) { p.Flags |= uint32(elf.PF_W) }), want: "segment 2 [0x100400, +0x40) is both writable and executable"},

		// The set of segments.
		{name: "no PT_LOAD", file: with(func(im *image) {
			im.segs = append(im.segs[:phText], im.segs[phStack:]...)
		}), want: "no PT_LOAD segment"},
		{name: "17 PT_LOAD", file: with(func(im *image) {
			im.segs = im.segs[:phText+1]
			for k := 0; len(im.segs) < phText+17; k++ {
				im.segs = append(im.segs, seg{typ: elf.PT_LOAD, flags: elf.PF_R, vaddr: 0x200000 + uint64(k)*pageSize, data: []byte{1}})
			}
		}), want: "more than 16 PT_LOAD segments"},
		{name: "overlapping segments", file: with(func(im *image) { im.segs[phRodata].vaddr = textAddr + 0x20 }),
			want: "segment 3 [0x100420, +0x10) overlaps segment 2 [0x100400, +0x40)"},
		{name: "identical segments", file: with(func(im *image) { im.segs[phRodata] = im.segs[phText] }),
			want: "segment 3 [0x100400, +0x40) overlaps segment 2 [0x100400, +0x40)"},
		{name: "page shared with different perms", file: with(func(im *image) { im.segs[phRodata].vaddr = textAddr + 0x80 }),
			want: "segment 3 [0x100480, +0x10) shares page 0x100000 with segment 2 [0x100400, +0x40): permissions are per page"},
		{name: "page shared with the same perms", file: with(func(im *image) {
			im.segs[phRodata].vaddr = textAddr + 0x80
			im.segs[phRodata].flags = elf.PF_R | elf.PF_X
		}), want: "segment 3 [0x100480, +0x10) shares page 0x100000 with segment 2"},
		{name: "page shared by the bss tail", file: with(func(im *image) {
			im.segs = append(im.segs, seg{typ: elf.PT_LOAD, flags: elf.PF_R, vaddr: dataAddr + dataMem + 0x100, data: []byte{1}})
		}), want: "segment 7 [0x105600, +0x1) shares page 0x105000 with segment 4 [0x102500, +0x3000)"},

		// Entry point.
		{name: "entry outside", file: hdr(func(h *elf.Header64) { h.Entry = 0x300000 }),
			want: "entry point 0x300000 is not inside an executable segment (it is outside every segment)"},
		{name: "entry at the end of text", file: hdr(func(h *elf.Header64) { h.Entry = textAddr + 0x40 }),
			want: "entry point 0x100440 is not inside an executable segment (it is outside every segment)"},
		{name: "entry in a non-exec segment", file: hdr(func(h *elf.Header64) { h.Entry = dataAddr + 0x1000 }),
			want: "entry point 0x103500 is not inside an executable segment: it lies in segment 4 [0x102500, +0x3000), which is rw-"},

		// Memory size.
		{name: "no room for the stack", file: valid, mem: 0x106000 + MinStack - 1,
			want: "image ends at 0x106000, leaving less than 64 KiB for the stack: image too large for 0x115fff bytes of guest memory"},
		{name: "no room for the stack in MiB", file: ph(phData, func(p *elf.Prog64) { p.Memsz = 0x300000 - p.Vaddr - 0x1000 }), mem: 3 << 20,
			want: "image ends at 0x2ff000, leaving less than 64 KiB for the stack: image too large for 3 MiB of guest memory"},

		// Notes.
		{name: "missing note", file: with(func(im *image) { im.segs[phNote].typ = elf.PT_NULL }),
			want: "no Tender ABI note: build the guest with the tender runtime"},
		{name: "only foreign notes", file: notes(gnuBuildID), want: "no Tender ABI note"},
		{name: "wrong note version", file: notes(abiNote(7, 0)), want: "guest built for ABI version 7; this monitor supports 1"},
		{name: "reserved field set", file: notes(abiNote(hypercall.ABIVersion, 2)), want: "Tender ABI note has reserved field 0x2, want 0"},
		{name: "duplicate note", file: notes(abi, gnuBuildID, abi), want: "segment 1 (PT_NOTE): duplicate Tender ABI note"},
		{name: "duplicate note in another segment", file: with(func(im *image) {
			im.segs = append(im.segs, seg{typ: elf.PT_NOTE, align: 4, data: abi})
		}), want: "segment 7 (PT_NOTE): duplicate Tender ABI note"},
		{name: "short ABI descriptor", file: notes(noteBytes(hypercall.NoteName, hypercall.NoteTypeABI, []byte{1, 0, 0, 0}, 4)),
			want: "segment 1 (PT_NOTE): the Tender ABI note has a 4-byte descriptor, want 8"},
		{name: "unknown Tender note", file: notes(abi, noteBytes(hypercall.NoteName, 99, nil, 4)),
			want: "unknown Tender note type 99"},
		{name: "truncated note header", file: notes(abi, []byte{1, 2, 3, 4, 5}),
			want: "segment 1 (PT_NOTE): truncated note header at offset 0x1c (5 bytes left, need 12)"},
		{name: "truncated note", file: notes(gnuBuildID, abi[:len(abi)-4]),
			want: "segment 1 (PT_NOTE): note at offset 0x24 (namesz 0x7, descsz 0x8) crosses the segment end 0x3c"},
		{name: "note with huge namesz", file: notes(func() []byte {
			n := bytes.Clone(abi)
			binary.LittleEndian.PutUint32(n[0:], math.MaxUint32)
			return n
		}()), want: "note at offset 0x0 (namesz 0xffffffff, descsz 0x8) crosses the segment end 0x1c"},
		{name: "note with huge descsz", file: notes(func() []byte {
			n := bytes.Clone(abi)
			binary.LittleEndian.PutUint32(n[4:], math.MaxUint32)
			return n
		}()), want: "note at offset 0x0 (namesz 0x7, descsz 0xffffffff) crosses the segment end 0x1c"},
		{name: "note padding crosses the end", file: with(func(im *image) {
			im.segs[phNote].data = abi
			im.edit = func(_ *elf.Header64, p []elf.Prog64) { p[phNote].Align = 8 }
		}), want: "note at offset 0x0 (namesz 0x7, descsz 0x8) crosses the segment end 0x1c"},
		{name: "note segment outside the file", file: ph(phNote, func(p *elf.Prog64) { p.Off = 0x510 }),
			want: "segment 1 file range [0x510, +0x40) is outside the 0x520-byte file"},
		{name: "note segment alignment", file: ph(phNote, func(p *elf.Prog64) { p.Align = 16 }),
			want: "segment 1 (PT_NOTE) has alignment 0x10, want 4 or 8"},

		// Device manifest.
		{name: "empty device note", file: notes(abi, noteBytes(hypercall.NoteName, hypercall.NoteTypeDevices, nil, 4)),
			want: "a Tender device note has a 0-byte descriptor, want 32 bytes per device"},
		{name: "short device note", file: notes(abi, noteBytes(hypercall.NoteName, hypercall.NoteTypeDevices, deviceEntry(hypercall.DeviceNet, 0, "net0")[:28], 4)),
			want: "a Tender device note has a 28-byte descriptor, want 32 bytes per device"},
		{name: "device note with a partial second entry", file: notes(abi, noteBytes(hypercall.NoteName, hypercall.NoteTypeDevices,
			append(deviceEntry(hypercall.DeviceNet, 0, "net0"), 1, 0, 0, 0), 4)),
			want: "a Tender device note has a 36-byte descriptor"},
		{name: "unknown device type", file: notes(abi, noteBytes(hypercall.NoteName, hypercall.NoteTypeDevices, deviceEntry(7, 0, "blk0"), 4)),
			want: `device 0 ("blk0"): unknown device type 7`},
		{name: "device type zero", file: notes(abi, devNote("net0"), noteBytes(hypercall.NoteName, hypercall.NoteTypeDevices, deviceEntry(0, 0, "x"), 4)),
			want: `device 1 ("x"): unknown device type 0`},
		{name: "device reserved field", file: notes(abi, noteBytes(hypercall.NoteName, hypercall.NoteTypeDevices, deviceEntry(hypercall.DeviceNet, 1, "net0"), 4)),
			want: `device 0 ("net0"): reserved field 0x1, want 0`},
		{name: "empty device name", file: notes(abi, devNote("")), want: "device 0: empty name"},
		{name: "unterminated device name", file: notes(abi, devNote("abcdefghijklmnopqrstuvwx")),
			want: `device 0: name "abcdefghijklmnopqrstuvwx" is not NUL-terminated: longer than 23 characters`},
		{name: "device name with a control character", file: notes(abi, devNote("net\n0")),
			want: `device 0: name "net\n0" has character '\n' at offset 3`},
		{name: "device name with a space", file: notes(abi, devNote("net 0")), want: `has character ' ' at offset 3`},
		{name: "device name with '='", file: notes(abi, devNote("a=b")), want: `has character '=' at offset 1: want printable ASCII without space or '='`},
		{name: "device name with a high byte", file: notes(abi, devNote("n\xe9t")), want: `has character 'é' at offset 1`},
		{name: "device name with garbage after the NUL", file: notes(abi, devNote("net0\x00x")),
			want: `device 0: name "net0" is followed by non-zero padding`},
		{name: "duplicate device names", file: notes(abi, devNote("net0"), gnuBuildID, devNote("net1", "net0")),
			want: `device 2: name "net0" already used by device 0`},
		{name: "too many devices", file: notes(abi, devNote("a", "b", "c", "d", "e", "f", "g", "h"), devNote("i")),
			want: "more than 8 devices declared"},
		{name: "many device notes", file: notes(abi, func() []byte {
			var b []byte
			for k := range 1000 {
				b = append(b, devNote(fmt.Sprint(k))...)
			}
			return b
		}()), want: "more than 8 devices declared"},
		{name: "device note in a guest for another ABI", file: notes(abiNote(2, 0), noteBytes(hypercall.NoteName, hypercall.NoteTypeDevices, []byte{1}, 4)),
			want: "guest built for ABI version 2; this monitor supports 1"},
	}
}

func TestParseMalformed(t *testing.T) {
	cases := malformedCases()
	require.GreaterOrEqual(t, len(cases), 35)
	seen := map[string]bool{}
	for _, tt := range cases {
		require.False(t, seen[tt.name], "duplicate case name %q", tt.name)
		seen[tt.name] = true
		t.Run(tt.name, func(t *testing.T) {
			mem := tt.mem
			if mem == 0 {
				mem = testMem
			}
			img, err := Parse(tt.file, mem)
			require.ErrorIs(t, err, ErrInvalid)
			assert.Nil(t, img)
			var e *Error
			require.True(t, errors.As(err, &e))
			assert.Equal(t, "invalid guest ELF: "+e.Reason, err.Error())
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

func TestErrorIs(t *testing.T) {
	err := error(&Error{Reason: "x"})
	assert.ErrorIs(t, err, ErrInvalid)
	assert.NotErrorIs(t, errors.New("invalid guest ELF: x"), ErrInvalid)
	assert.ErrorIs(t, errors.Join(errors.New("loading"), err), ErrInvalid)
}

// TestWalkNotes checks the walker on its own, since later note types will
// build on it.
func TestWalkNotes(t *testing.T) {
	data := append(noteBytes("GNU", 5, make([]byte, 16), 8), noteBytes("A", 2, []byte{9}, 8)...)
	var got []note
	require.NoError(t, walkNotes(data, 8, func(n note) error { got = append(got, n); return nil }))
	require.Len(t, got, 2)
	assert.Equal(t, "GNU\x00", string(got[0].name))
	assert.Equal(t, uint32(5), got[0].typ)
	assert.Len(t, got[0].desc, 16)
	assert.Equal(t, "A\x00", string(got[1].name))
	assert.Equal(t, []byte{9}, got[1].desc)

	stop := errors.New("stop")
	calls := 0
	err := walkNotes(data, 8, func(note) error { calls++; return stop })
	assert.Equal(t, stop, err)
	assert.Equal(t, 1, calls)

	assert.NoError(t, walkNotes(nil, 4, func(note) error { t.Fatal("no notes expected"); return nil }))
}

// TestGuests loads every guest the build produced (make guests).
func TestGuests(t *testing.T) {
	dir := filepath.Join("..", "..", "bin", "guest")
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("no built guests in %s (run make all first): %v", dir, err)
	}
	paths, err := filepath.Glob(filepath.Join(dir, "*.elf"))
	require.NoError(t, err)
	if len(paths) == 0 {
		t.Fatalf("no *.elf in %s (run make all first)", dir)
	}
	const mem = 64 << 20
	for _, p := range paths {
		t.Run(filepath.Base(p), func(t *testing.T) {
			file, err := os.ReadFile(p)
			require.NoError(t, err)
			img, err := Parse(file, mem)
			require.NoError(t, err)
			checkImage(t, img, file, mem)
			assert.Equal(t, uint32(hypercall.ABIVersion), img.ABIVersion)
		})
	}
}

// checkImage asserts the invariants every image Parse returns must satisfy.
// It reports through t.Errorf so the fuzzer can use it too.
func checkImage(t testing.TB, img *Image, file []byte, memSize uint64) {
	t.Helper()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Errorf(format, args...)
	}
	if img == nil {
		fail("nil image without an error")
		return
	}
	if len(img.Segments) == 0 || len(img.Segments) > MaxLoadSegments {
		fail("%d segments", len(img.Segments))
	}
	if img.ABIVersion != hypercall.ABIVersion && img.Solo5 == nil {
		fail("ABI version %d", img.ABIVersion)
	}
	entryOK := false
	var prevEnd uint64 // page-rounded end of the previous segment
	for k, s := range img.Segments {
		end := s.Addr + s.MemSize
		switch {
		case s.MemSize == 0:
			fail("segment %d is empty", k)
		case end < s.Addr:
			fail("segment %d wraps", k)
		case s.Addr < hypercall.ImageBase || end > memSize:
			fail("segment %d [%#x, %#x) outside [ImageBase, memSize %#x)", k, s.Addr, end, memSize)
		case uint64(len(s.Data)) > s.MemSize:
			fail("segment %d has %d data bytes for %#x of memory", k, len(s.Data), s.MemSize)
		case k > 0 && s.Addr&^(pageSize-1) < prevEnd:
			fail("segment %d at %#x shares a page below %#x with its predecessor", k, s.Addr, prevEnd)
		}
		if s.Perm&vcpu.Read == 0 || s.Perm&^(vcpu.Read|vcpu.Write|vcpu.Exec) != 0 {
			fail("segment %d has perm %v", k, s.Perm)
		}
		if s.Perm&vcpu.Write != 0 && s.Perm&vcpu.Exec != 0 {
			fail("segment %d is W+X", k)
		}
		if len(s.Data) > 0 && !inside(s.Data, file) {
			fail("segment %d data does not alias the file", k)
		}
		if s.Perm&vcpu.Exec != 0 && img.Entry >= s.Addr && img.Entry < end {
			entryOK = true
		}
		prevEnd = (end + pageSize - 1) &^ (pageSize - 1)
	}
	if !entryOK {
		fail("entry %#x not in an executable segment", img.Entry)
	}
	if img.End != prevEnd || img.End%pageSize != 0 {
		fail("End %#x, want %#x", img.End, prevEnd)
	}
	if img.End > memSize || memSize-img.End < MinStack {
		fail("End %#x leaves no stack in %#x", img.End, memSize)
	}
	if len(img.Devices) > hypercall.DevicesMax {
		fail("%d devices", len(img.Devices))
	}
	names := map[string]bool{}
	for k, d := range img.Devices {
		if d.Type != hypercall.DeviceNet && d.Type != hypercall.DeviceBlock {
			fail("device %d has type %d", k, d.Type)
		}
		if d.Name == "" || len(d.Name) > hypercall.DeviceNameMax || strings.ContainsAny(d.Name, " =\x00") || names[d.Name] {
			fail("device %d has name %q", k, d.Name)
		}
		for _, c := range []byte(d.Name) {
			if c < 0x21 || c > 0x7e {
				fail("device %d has name %q", k, d.Name)
			}
		}
		names[d.Name] = true
	}
}

// inside reports whether b is a subslice of file.
func inside(b, file []byte) bool {
	for i := range file {
		if &file[i] == &b[0] {
			return len(file)-i >= len(b)
		}
	}
	return false
}

func TestMessagesNameNoGoSyntax(t *testing.T) {
	// Reasons are for people: they must not leak Go formatting artefacts.
	for _, tt := range malformedCases() {
		mem := tt.mem
		if mem == 0 {
			mem = testMem
		}
		_, err := Parse(tt.file, mem)
		if err == nil {
			continue
		}
		for _, bad := range []string{"%!", "<nil>", "0x-"} {
			assert.False(t, strings.Contains(err.Error(), bad), "%s: %v", tt.name, err)
		}
	}
}
