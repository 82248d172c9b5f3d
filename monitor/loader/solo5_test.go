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
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tendervm/tender/hypercall/solo5"
	"github.com/tendervm/tender/monitor/vcpu"
)

// s5Entry encodes one manifest entry as a linker leaves it.
func s5Entry(typ uint32, name string) []byte {
	e := make([]byte, solo5.EntrySize)
	copy(e, name)
	binary.LittleEndian.PutUint32(e[solo5.EntryType:], typ)
	return e
}

// s5Manifest encodes an MFT1 descriptor (padding, header, entries) with the
// reserved entry first and then one entry per name, of type net unless the
// name starts with "blk".
func s5Manifest(names ...string) []byte {
	d := make([]byte, solo5.ManifestPad)
	d = binary.LittleEndian.AppendUint32(d, solo5.ManifestVersion)
	d = binary.LittleEndian.AppendUint32(d, uint32(len(names)+1))
	d = append(d, s5Entry(solo5.TypeReservedFirst, "")...)
	for _, n := range names {
		typ := uint32(solo5.TypeNet)
		if len(n) >= 3 && n[:3] == "blk" {
			typ = solo5.TypeBlock
		}
		d = append(d, s5Entry(typ, n)...)
	}
	return d
}

// s5ABINote encodes a Solo5 ABI1 note.
func s5ABINote(target, version uint32) []byte {
	var d []byte
	d = binary.LittleEndian.AppendUint32(d, target)
	d = binary.LittleEndian.AppendUint32(d, version)
	d = append(d, make([]byte, 8)...)
	return noteBytes(solo5.NoteName, solo5.NoteTypeABI, d, 4)
}

// s5Image is validImage turned into a Solo5 executable: the ABI1 note, an
// OpenBSD ident note, PT_INTERP, PT_TLS over the data segment and, in a
// segment aligned to 8 as the linker makes it, the manifest.
func s5Image(mft []byte, f func(im *image)) []byte {
	return with(func(im *image) {
		im.segs[phNote].data = append(s5ABINote(solo5.TargetHVT, solo5.ABIVersion), noteBytes("OpenBSD", 1, []byte{0, 0, 0, 0}, 4)...)
		im.segs = append(im.segs,
			seg{typ: elf.PT_NOTE, flags: elf.PF_R, align: 8, data: noteBytes(solo5.NoteName, solo5.NoteTypeManifest, mft, 4)},
			seg{typ: elf.PT_INTERP, flags: elf.PF_R, align: 1, data: []byte(solo5.Interp + "\x00")},
			seg{typ: elf.PT_TLS, flags: elf.PF_R, vaddr: dataAddr, memsz: 0x40, align: 8, data: bytes.Repeat([]byte{0xd0}, 0x10)})
		if f != nil {
			f(im)
		}
	})
}

func TestParseSolo5(t *testing.T) {
	file := s5Image(s5Manifest("service0", "blk0"), nil)
	img, err := Parse(file, testMem)
	require.NoError(t, err)
	checkImage(t, img, file, testMem)
	require.NotNil(t, img.Solo5)
	assert.Equal(t, []Solo5Entry{{Type: solo5.TypeReservedFirst}, {Type: solo5.TypeNet, Name: "service0"}, {Type: solo5.TypeBlock, Name: "blk0"}}, img.Solo5.Entries)
	assert.Empty(t, img.Devices)
	assert.Zero(t, img.ABIVersion)
}

// TestParseSolo5LinkerShapes: what Solo5's own linker scripts produce is
// accepted: a PT_INTERP padded with NULs, an empty PT_LOAD and an empty
// PT_TLS at address 0, execute-only text.
func TestParseSolo5LinkerShapes(t *testing.T) {
	file := s5Image(s5Manifest(), func(im *image) {
		im.segs[len(im.segs)-2].data = []byte(solo5.Interp + "\x00\x00\x00\x00\x00")
		im.segs[len(im.segs)-1] = seg{typ: elf.PT_TLS, align: 8}
		im.segs = append(im.segs, seg{typ: elf.PT_LOAD, flags: elf.PF_R, align: pageSize})
		im.segs[phText].flags = elf.PF_X
	})
	img, err := Parse(file, testMem)
	require.NoError(t, err)
	assert.Len(t, img.Segments, 3)
	assert.Equal(t, vcpu.Read|vcpu.Exec, img.Segments[0].Perm)

	// The empty PT_LOAD stays refused for tender's own guests.
	_, err = Parse(with(func(im *image) {
		im.segs = append(im.segs, seg{typ: elf.PT_LOAD, flags: elf.PF_R, align: pageSize})
	}), testMem)
	assert.ErrorContains(t, err, "segment 7 at 0x0 is empty (p_memsz 0)")
}

func TestParseSolo5Interp(t *testing.T) {
	// PT_INTERP and PT_TLS stay refused for tender's own guests.
	_, err := Parse(with(func(im *image) {
		im.segs = append(im.segs, seg{typ: elf.PT_INTERP, flags: elf.PF_R, align: 1, data: []byte(solo5.Interp + "\x00")})
	}), testMem)
	assert.ErrorContains(t, err, "dynamically linked (PT_INTERP)")
	_, err = Parse(with(func(im *image) {
		im.segs = append(im.segs, seg{typ: elf.PT_TLS, flags: elf.PF_R, vaddr: dataAddr, align: 8, data: []byte{1}})
	}), testMem)
	assert.ErrorContains(t, err, "(PT_TLS) is not supported")
}

// solo5Cases are Solo5 executables Parse must refuse, with a word of the reason.
func solo5Cases() []malformed {
	mft := func(f func(d []byte) []byte) []byte { return s5Image(f(s5Manifest("net0")), nil) }
	entry := func(i int) int { return solo5.ManifestPad + solo5.ManifestHeader + i*solo5.EntrySize }
	many := make([]string, solo5.MaxEntries)
	for i := range many {
		many[i] = fmt.Sprintf("n%d", i)
	}
	return []malformed{
		{name: "solo5 wrong target", file: s5Image(s5Manifest(), func(im *image) {
			im.segs[phNote].data = s5ABINote(2, solo5.ABIVersion)
		}), want: "target 2"},
		{name: "solo5 wrong version", file: s5Image(s5Manifest(), func(im *image) {
			im.segs[phNote].data = s5ABINote(solo5.TargetHVT, 1)
		}), want: "hvt ABI version 1"},
		{name: "solo5 no manifest", file: s5Image(s5Manifest(), func(im *image) { im.segs = im.segs[:len(im.segs)-3] }), want: "without an MFT1"},
		{name: "solo5 manifest without ABI note", file: s5Image(s5Manifest(), func(im *image) {
			im.segs[phNote].data = gnuBuildID
		}), want: "without a Solo5 ABI1 note"},
		{name: "solo5 and tender notes", file: s5Image(s5Manifest(), func(im *image) {
			im.segs[phNote].data = append(im.segs[phNote].data, abiNote(1, 0)...)
		}), want: "both Tender and Solo5"},
		{name: "solo5 bad interp", file: s5Image(s5Manifest(), func(im *image) {
			im.segs[len(im.segs)-2].data = []byte("/lib/ld.so\x00")
		}), want: "(PT_INTERP) names"},
		{name: "solo5 interp without NUL", file: s5Image(s5Manifest(), func(im *image) {
			im.segs[len(im.segs)-2].data = []byte(solo5.Interp)
		}), want: "(PT_INTERP) names"},
		{name: "solo5 interp with garbage", file: s5Image(s5Manifest(), func(im *image) {
			im.segs[len(im.segs)-2].data = []byte(solo5.Interp + "\x00x")
		}), want: "(PT_INTERP) names"},
		{name: "solo5 tls outside", file: s5Image(s5Manifest(), func(im *image) {
			im.segs[len(im.segs)-1].vaddr = 0x800000
		}), want: "not inside a loaded segment"},
		{name: "solo5 tls filesz over an empty memsz", file: s5Image(s5Manifest(), func(im *image) {
			im.edit = func(_ *elf.Header64, ph []elf.Prog64) { ph[len(ph)-1].Memsz = 0 }
		}), want: "(PT_TLS) [0x102500, +0x0) has p_filesz 0x10 larger than p_memsz 0x0"},
		{name: "solo5 tls overflow", file: s5Image(s5Manifest(), func(im *image) {
			im.edit = func(_ *elf.Header64, ph []elf.Prog64) { ph[len(ph)-1].Vaddr = math.MaxUint64 - 0x10 }
		}), want: "(PT_TLS) [0xffffffffffffffef, +0x40): address plus size overflows"},
		{name: "solo5 manifest version", file: mft(func(d []byte) []byte { d[4] = 2; return d }), want: "manifest version 2"},
		{name: "solo5 manifest short", file: mft(func(d []byte) []byte { return d[:len(d)-1] }), want: "want"},
		{name: "solo5 manifest no entries", file: mft(func(d []byte) []byte { d[8] = 0; return d[:12] }), want: "without entries"},
		{name: "solo5 too many entries", file: s5Image(s5Manifest(many...), nil), want: "65 entries"},
		{name: "solo5 entry 0 not reserved", file: mft(func(d []byte) []byte { d[entry(0)+solo5.EntryType+3] = 0; return d }), want: "entry 0 has type"},
		{name: "solo5 entry 0 named", file: mft(func(d []byte) []byte { d[entry(0)] = 'x'; return d }), want: "entry 0 has a name"},
		{name: "solo5 empty name", file: mft(func(d []byte) []byte { d[entry(1)] = 0; return d }), want: "empty name"},
		{name: "solo5 unterminated name", file: mft(func(d []byte) []byte {
			copy(d[entry(1):], bytes.Repeat([]byte{'a'}, solo5.NameSize))
			return d
		}), want: "not NUL-terminated"},
		{name: "solo5 name with colon", file: mft(func(d []byte) []byte { d[entry(1)+1] = ':'; return d }), want: "character ':'"},
		{name: "solo5 unknown type", file: mft(func(d []byte) []byte { d[entry(1)+solo5.EntryType] = 9; return d }), want: "unknown type 0x9"},
		{name: "solo5 attached", file: mft(func(d []byte) []byte { d[entry(1)+solo5.EntryAttached] = 1; return d }), want: "marked attached"},
		{name: "solo5 mac set", file: mft(func(d []byte) []byte { d[entry(1)+solo5.EntryMAC] = 1; return d }), want: "non-zero fields"},
		{name: "solo5 duplicate names", file: s5Image(s5Manifest("a", "a"), nil), want: `name "a" already used by entry 1`},
		{name: "solo5 duplicate ABI note", file: s5Image(s5Manifest(), func(im *image) {
			im.segs[phNote].data = append(im.segs[phNote].data, s5ABINote(1, 2)...)
		}), want: "duplicate Solo5 ABI1"},
		{name: "solo5 W+X", file: s5Image(s5Manifest(), func(im *image) { im.segs[phData].flags |= elf.PF_X }), want: "both writable and executable"},
	}
}

func TestParseSolo5Malformed(t *testing.T) {
	for _, c := range solo5Cases() {
		t.Run(c.name, func(t *testing.T) {
			img, err := Parse(c.file, testMem)
			assert.Nil(t, img)
			require.ErrorIs(t, err, ErrInvalid)
			assert.ErrorContains(t, err, c.want)
		})
	}
}

// FuzzSolo5Manifest feeds the manifest parser arbitrary descriptors: it
// never panics, returns an *Error or a manifest that keeps its rules.
func FuzzSolo5Manifest(f *testing.F) {
	for _, d := range solo5ManifestSeeds() {
		f.Add(d)
	}
	f.Fuzz(func(t *testing.T, desc []byte) {
		m, err := ParseSolo5Manifest(desc)
		if err != nil {
			var e *Error
			if m != nil || !errors.As(err, &e) {
				t.Fatalf("manifest %v with error %v (%T)", m, err, err)
			}
			return
		}
		if len(m.Entries) == 0 || len(m.Entries) > solo5.MaxEntries || m.Entries[0].Type != solo5.TypeReservedFirst || m.Entries[0].Name != "" {
			t.Fatalf("bad manifest %+v", m)
		}
		seen := map[string]bool{}
		for _, e := range m.Devices() {
			if e.Name == "" || len(e.Name) >= solo5.NameSize || seen[e.Name] || e.Type != solo5.TypeNet && e.Type != solo5.TypeBlock {
				t.Fatalf("bad entry %+v", e)
			}
			seen[e.Name] = true
		}
	})
}

func solo5ManifestSeeds() map[string][]byte {
	return map[string][]byte{
		"empty": s5Manifest(),
		"two":   s5Manifest("service0", "blk0"),
		"dup":   s5Manifest("a", "a"),
		"short": s5Manifest("x")[:20],
		"attached": func() []byte {
			d := s5Manifest("x")
			d[solo5.ManifestPad+solo5.ManifestHeader+solo5.EntrySize+solo5.EntryAttached] = 1
			return d
		}(),
	}
}

// TestWriteSolo5Corpus regenerates testdata/fuzz/FuzzSolo5Manifest with
// -write-corpus.
func TestWriteSolo5Corpus(t *testing.T) {
	if !*writeCorpus {
		t.Skip("run with -write-corpus to regenerate the corpus")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzSolo5Manifest")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	for name, d := range solo5ManifestSeeds() {
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", d)
		require.NoError(t, os.WriteFile(filepath.Join(dir, "seed-"+slug(name)), []byte(body), 0o644))
	}
}
