package loader

import (
	"debug/elf"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/tendervm/tender/hypercall"
)

// fuzzSeed is one input of FuzzParse.
type fuzzSeed struct {
	file []byte
	mem  uint64
}

// fuzzSeeds are the builder's inputs the fuzzer starts from, besides the
// checked-in corpus: the valid image (also with extreme memory sizes, to reach
// the overflow checks), variants that exercise the accepting paths, and near
// misses.
func fuzzSeeds() map[string]fuzzSeed {
	valid := validImage().build()
	seeds := map[string]fuzzSeed{
		"valid":         {valid, testMem},
		"valid_min_mem": {valid, hypercall.MemMin},
		"valid_max_mem": {valid, math.MaxUint64},
		"note8": {with(func(im *image) {
			var d [8]byte
			d[0] = hypercall.ABIVersion
			im.segs[phNote] = seg{typ: elf.PT_NOTE, align: 8, data: append(
				noteBytes("GNU", 5, make([]byte, 16), 8),
				noteBytes(hypercall.NoteName, hypercall.NoteTypeABI, d[:], 8)...)}
		}), testMem},
		"devices": {with(func(im *image) {
			im.segs[phNote].data = append(append(im.segs[phNote].data, devNote("net0")...), devNote("net1", "lan")...)
		}), testMem},
		"block_devices": {with(func(im *image) {
			im.segs[phNote].data = append(append(im.segs[phNote].data, blockNote("disk", "log")...), devNote("net0")...)
		}), testMem},
		"block_device_with_reserved_bits": {with(func(im *image) {
			im.segs[phNote].data = append(im.segs[phNote].data, noteBytes(hypercall.NoteName, hypercall.NoteTypeDevices,
				deviceEntry(hypercall.DeviceBlock, 1, "disk"), 4)...)
		}), testMem},
		"solo5": {s5Image(s5Manifest("service0", "blk0"), nil), testMem},
		"bss_only": {with(func(im *image) {
			im.segs = append(im.segs, seg{typ: elf.PT_LOAD, flags: elf.PF_R | elf.PF_W, vaddr: 0x200000, memsz: 0x1000, align: pageSize})
		}), testMem},
	}
	for _, name := range []string{"page shared with different perms", "W+X", "entry in a non-exec segment",
		"wrong note version", "duplicate note", "truncated note", "phoff overflow", "vaddr+memsz overflow",
		"short device note", "unknown device type", "unterminated device name", "device name with a control character",
		"device name with garbage after the NUL", "duplicate device names", "too many devices",
		"solo5 wrong version", "solo5 duplicate names", "solo5 attached", "solo5 bad interp",
		"solo5 tls filesz over an empty memsz"} {
		for _, c := range append(malformedCases(), solo5Cases()...) {
			if c.name == name {
				seeds[name] = fuzzSeed{c.file, testMem}
			}
		}
	}
	return seeds
}

func FuzzParse(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s.file, s.mem)
	}
	// Real linker output reaches shapes the builder does not produce.
	paths, err := filepath.Glob(filepath.Join("..", "..", "bin", "guest", "*.elf"))
	if err != nil || len(paths) == 0 {
		f.Fatalf("no bin/guest/*.elf for the real-guest seeds (run make all first): %v", err)
	}
	for _, p := range paths {
		file, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(file, uint64(testMem))
	}
	f.Fuzz(func(t *testing.T, file []byte, memSize uint64) {
		orig := string(file)
		img, err := Parse(file, memSize)
		has := HasABINote(file)
		if string(file) != orig {
			t.Fatal("Parse modified its input")
		}
		if err != nil {
			if img != nil {
				t.Fatal("image and error both returned")
			}
			var e *Error
			if !errors.As(err, &e) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v (%T) is not an *Error", err, err)
			}
			return
		}
		if !has {
			t.Fatal("Parse accepted a file HasABINote says has no Tender or Solo5 ABI note")
		}
		checkImage(t, img, file, memSize)
	})
}

var writeCorpus = flag.Bool("write-corpus", false, "rewrite testdata/fuzz/FuzzParse from the builder's seeds")

// TestWriteFuzzCorpus regenerates the checked-in fuzz corpus when run with
// -write-corpus, so the seeds stay reproducible from the builder.
func TestWriteFuzzCorpus(t *testing.T) {
	if !*writeCorpus {
		t.Skip("run with -write-corpus to regenerate the corpus")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzParse")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, s := range fuzzSeeds() {
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\nuint64(%d)\n", s.file, s.mem)
		fn := "seed-" + slug(name)
		if err := os.WriteFile(filepath.Join(dir, fn), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// slug turns a case name into a file name.
func slug(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			b[i] = '_'
		}
	}
	return string(b)
}
