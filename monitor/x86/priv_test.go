package x86

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/assert"
)

// prefixed is code after n segment-override prefixes (CS), which change
// none of the privileged instructions but lengthen them.
func prefixed(n int, code ...byte) []byte {
	return append(bytes.Repeat([]byte{0x2e}, n), code...)
}

// privCases are DecodePriv's inputs and what it returns for each.
var privCases = []struct {
	name string
	code []byte
	want Priv
	n    int
}{
	{"lgdt rip-relative", []byte{0x0f, 0x01, 0x15, 1, 2, 3, 4}, PrivLGDT, 7},
	{"lidt rip-relative", []byte{0x0f, 0x01, 0x1d, 1, 2, 3, 4}, PrivLIDT, 7},
	{"lgdt (rax)", []byte{0x0f, 0x01, 0x10}, PrivLGDT, 3},
	{"lidt disp8(rsp) via SIB", []byte{0x0f, 0x01, 0x5c, 0x24, 0x08}, PrivLIDT, 5},
	{"ltr ax", []byte{0x0f, 0x00, 0xd8}, PrivLTR, 3},
	{"mov eax to ds", []byte{0x8e, 0xd8}, PrivMovSS, 2},
	{"mov eax to ss", []byte{0x8e, 0xd0}, PrivMovSS, 2},
	{"mov eax to es", []byte{0x8e, 0xc0}, PrivMovSS, 2},
	{"lretq", []byte{0x48, 0xcb}, PrivLRET, 2},
	{"wrmsr", []byte{0x0f, 0x30}, PrivWRMSR, 2},
	{"cli", []byte{0xfa}, PrivCLI, 1},
	{"sti", []byte{0xfb}, PrivSTI, 1},
	{"hlt", []byte{0xf4}, PrivHLT, 1},
	// Not emulated.
	{"mov to fs", []byte{0x8e, 0xe0}, PrivNone, 0},
	{"lret without REX.W", []byte{0xcb}, PrivNone, 0},
	{"lgdt register form", []byte{0x0f, 0x01, 0xd0}, PrivNone, 0},
	{"sgdt", []byte{0x0f, 0x01, 0x05, 1, 2, 3, 4}, PrivNone, 0},
	{"lldt", []byte{0x0f, 0x00, 0xd0}, PrivNone, 0},
	{"mov to cr3", []byte{0x0f, 0x22, 0xd8}, PrivNone, 0},
	{"rdmsr", []byte{0x0f, 0x32}, PrivNone, 0},
	{"truncated lgdt", []byte{0x0f, 0x01, 0x15, 1, 2}, PrivNone, 0},
	{"lock cli", []byte{0xf0, 0xfa}, PrivNone, 0},
	{"empty", nil, PrivNone, 0},
	// Up to MaxInsnLen bytes with prefixes, and not one more, even where
	// code goes on.
	{"wrmsr of 15 bytes", prefixed(13, 0x0f, 0x30, 0x90), PrivWRMSR, 15},
	{"wrmsr of 16 bytes", prefixed(14, 0x0f, 0x30, 0x90), PrivNone, 0},
	{"hlt of 15 bytes", prefixed(14, 0xf4, 0x90), PrivHLT, 15},
	{"lretq of 15 bytes", prefixed(13, 0x48, 0xcb, 0x90), PrivLRET, 15},
	{"ltr of 16 bytes", prefixed(13, 0x0f, 0x00, 0xd8, 0x90), PrivNone, 0},
	{"mov to ss of 16 bytes", prefixed(14, 0x8e, 0xd0, 0x90), PrivNone, 0},
}

func TestDecodePriv(t *testing.T) {
	for _, c := range privCases {
		p, n, ok := DecodePriv(c.code)
		assert.Equal(t, c.want, p, c.name)
		assert.Equal(t, c.n, n, c.name)
		assert.Equal(t, c.want != PrivNone, ok, c.name)
	}
}

func TestSkipNoEffect(t *testing.T) {
	// mov %eax,%ss; mov %eax,%ds; mov %eax,%es; cli; ltr %ax; then mov
	// $0x10,%eax, which ends the run of them.
	code := []byte{0x8e, 0xd0, 0x8e, 0xd8, 0x8e, 0xc0, 0xfa, 0x0f, 0x00, 0xd8, 0xb8, 0x10, 0, 0, 0}
	const base = 0x1000
	fetch := func(addr uint64) []byte { return code[addr-base:] }
	all := func(addr, n uint64) bool { return true }
	assert.EqualValues(t, base+10, SkipNoEffect(base, fetch, all))
	// Not past code the guest may not execute.
	upTo := func(end uint64) func(addr, n uint64) bool {
		return func(addr, n uint64) bool { return addr+n <= end }
	}
	assert.EqualValues(t, base+4, SkipNoEffect(base, fetch, upTo(base+5)))
	// Nor past hlt, wrmsr or a far return, which have effects.
	hlt := []byte{0x8e, 0xd0, 0xf4}
	assert.EqualValues(t, 2, SkipNoEffect(0, func(a uint64) []byte { return hlt[a:] }, all))
	// At most MaxMerged.
	clis := make([]byte, 2*MaxMerged)
	for i := range clis {
		clis[i] = 0xfa
	}
	assert.EqualValues(t, MaxMerged, SkipNoEffect(0, func(a uint64) []byte { return clis[a:] }, all))
}

// FuzzDecodePriv: whatever code holds, an instruction DecodePriv accepts
// lies within code and MaxInsnLen, and decodes the same from its own bytes
// alone.
func FuzzDecodePriv(f *testing.F) {
	for _, c := range privCases {
		f.Add(c.code)
	}
	f.Fuzz(func(t *testing.T, code []byte) {
		p, n, ok := DecodePriv(code)
		if !ok {
			if p != PrivNone || n != 0 {
				t.Fatalf("% x: not ok but %v, %d", code, p, n)
			}
			return
		}
		if p == PrivNone || n < 1 || n > len(code) || n > MaxInsnLen {
			t.Fatalf("% x: %v of %d bytes", code, p, n)
		}
		if p2, n2, ok2 := DecodePriv(code[:n]); p2 != p || n2 != n || !ok2 {
			t.Fatalf("% x: %v of %d bytes, but %v of %d (ok %v) from its own bytes", code, p, n, p2, n2, ok2)
		}
	})
}

// bootMoveCases are DecodeBootMove's inputs and what it returns for each.
var bootMoveCases = []struct {
	name string
	code []byte
	want BootMove
	ok   bool
}{
	// Solo5's start code: push $0x8; push $0x10018b; lretq.
	{"far jump, imm8 selector", []byte{0x6a, 0x08, 0x68, 0x8b, 0x01, 0x10, 0x00, 0x48, 0xcb, 0x90},
		BootMove{Len: 9, FarJump: true, Sel: 8, Target: 0x10018b}, true},
	{"far jump, imm32 selector", []byte{0x68, 0x08, 0, 0, 0, 0x68, 0x00, 0x10, 0x20, 0x00, 0x48, 0xcb},
		BootMove{Len: 12, FarJump: true, Sel: 8, Target: 0x201000}, true},
	{"far jump, negative words sign-extended", []byte{0x6a, 0xf8, 0x68, 0, 0, 0, 0x80, 0x48, 0xcb},
		BootMove{Len: 9, FarJump: true, Sel: 0xfffffffffffffff8, Target: 0xffffffff80000000}, true},
	{"mov $0x10,%rax", []byte{0x48, 0xc7, 0xc0, 0x10, 0, 0, 0, 0x8e, 0xd0}, BootMove{Len: 7, RAX: 0x10}, true},
	{"mov $-1,%rax sign-extended", []byte{0x48, 0xc7, 0xc0, 0xff, 0xff, 0xff, 0xff}, BootMove{Len: 7, RAX: ^uint64(0)}, true},
	{"mov $-1,%eax zero-extended", []byte{0xb8, 0xff, 0xff, 0xff, 0xff}, BootMove{Len: 5, RAX: 0xffffffff}, true},
	// Not these.
	{"far jump without REX.W", []byte{0x6a, 0x08, 0x68, 0, 0, 0x10, 0, 0xcb}, BootMove{}, false},
	{"far jump through a register", []byte{0x6a, 0x08, 0x50, 0x48, 0xcb}, BootMove{}, false},
	{"far jump, lretq missing", []byte{0x6a, 0x08, 0x68, 0, 0, 0x10, 0, 0x48}, BootMove{}, false},
	{"one push only", []byte{0x6a, 0x08, 0x90}, BootMove{}, false},
	{"truncated target", []byte{0x6a, 0x08, 0x68, 0, 0}, BootMove{}, false},
	{"mov to rcx", []byte{0x48, 0xc7, 0xc1, 0x10, 0, 0, 0}, BootMove{}, false},
	{"mov to ecx", []byte{0xb9, 0x10, 0, 0, 0}, BootMove{}, false},
	{"mov to rax, memory form", []byte{0x48, 0xc7, 0x00, 0x10, 0, 0, 0}, BootMove{}, false},
	{"mov to rsp", []byte{0x48, 0xc7, 0xc4, 0x10, 0, 0, 0}, BootMove{}, false},
	{"mov with a prefix", []byte{0x66, 0xb8, 0x10, 0}, BootMove{}, false},
	{"truncated mov", []byte{0xb8, 0x10, 0}, BootMove{}, false},
	{"empty", nil, BootMove{}, false},
}

func TestDecodeBootMove(t *testing.T) {
	for _, c := range bootMoveCases {
		m, ok := DecodeBootMove(c.code)
		assert.Equal(t, c.ok, ok, c.name)
		assert.Equal(t, c.want, m, c.name)
	}
}

// FuzzDecodeBootMove: a move DecodeBootMove accepts lies within code and
// decodes the same from its own bytes alone; a refused one is the zero
// BootMove.
func FuzzDecodeBootMove(f *testing.F) {
	for _, c := range bootMoveCases {
		f.Add(c.code)
	}
	f.Fuzz(func(t *testing.T, code []byte) {
		m, ok := DecodeBootMove(code)
		if !ok {
			if m != (BootMove{}) {
				t.Fatalf("% x: not ok but %+v", code, m)
			}
			return
		}
		if m.Len < 5 || m.Len > len(code) {
			t.Fatalf("% x: %+v", code, m)
		}
		if m2, ok2 := DecodeBootMove(code[:m.Len]); m2 != m || !ok2 {
			t.Fatalf("% x: %+v, but %+v (ok %v) from its own bytes", code, m, m2, ok2)
		}
	})
}
