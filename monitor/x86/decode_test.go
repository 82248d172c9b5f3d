package x86

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestDecodeIO(t *testing.T) {
	for _, tc := range []struct {
		code string
		ok   bool
		want PortIO
	}{
		{"\xef", true, PortIO{Port: 0x501, Size: 4, Out: true, Len: 1}},
		{"\x66\xef", true, PortIO{Port: 0x501, Size: 2, Out: true, Len: 2}},
		{"\xee", true, PortIO{Port: 0x501, Size: 1, Out: true, Len: 1}},
		{"\xec", true, PortIO{Port: 0x501, Size: 1, Len: 1}},
		{"\xe5\x71", true, PortIO{Port: 0x71, Size: 4, Len: 2}},
		{"\x66\xe7\x70", true, PortIO{Port: 0x70, Size: 2, Out: true, Len: 3}},
		{"\xf3\x6f", true, PortIO{Port: 0x501, Size: 4, Out: true, Str: true, Len: 2}},
		{"\xf3\x66\x6d", true, PortIO{Port: 0x501, Size: 2, Str: true, Len: 3}},
		{"\x2e\x48\xef", true, PortIO{Port: 0x501, Size: 4, Out: true, Len: 3}},
		{"\x48\x66\xef", true, PortIO{Port: 0x501, Size: 2, Out: true, Len: 3}}, // a REX before a prefix is ignored
		{"\x40\x40\xef", true, PortIO{Port: 0x501, Size: 4, Out: true, Len: 3}}, // so is one before another REX
		{strings.Repeat("\x40", 14) + "\xef", true, PortIO{Port: 0x501, Size: 4, Out: true, Len: 15}},
		{strings.Repeat("\x40", 15) + "\xef", false, PortIO{}},
		{"\xe4", false, PortIO{}},         // truncated immediate
		{"\x0f\x0b", false, PortIO{}},     // ud2
		{"\x66\x66\x66", false, PortIO{}}, // prefixes only
		{strings.Repeat("\x66", 15) + "\xef", false, PortIO{}},
		{strings.Repeat("\x66", 14) + "\xef", true, PortIO{Port: 0x501, Size: 2, Out: true, Len: 15}},
	} {
		io, ok := DecodePortIO([]byte(tc.code), 0x501)
		assert.Equal(t, tc.ok, ok, "% x", tc.code)
		assert.Equal(t, tc.want, io, "% x", tc.code)
	}
	assert.True(t, PortIO{Port: 0x500, Size: 4, Out: true}.Hypercall(0x500, 32))
	assert.False(t, PortIO{Port: 0x4ff, Size: 4, Out: true}.Hypercall(0x500, 32))
	assert.False(t, PortIO{Port: 0x520, Size: 4, Out: true}.Hypercall(0x500, 32))
	assert.False(t, PortIO{Port: 0x500, Size: 4}.Hypercall(0x500, 32))
	assert.True(t, IsX87([]byte{0xde, 0xf9}))  // fdivrp
	assert.True(t, IsX87([]byte{0x9b}))        // fwait
	assert.False(t, IsX87([]byte{0xf2, 0x0f})) // an SSE prefix and escape
}

func TestIsSyscall(t *testing.T) {
	for code, want := range map[string]bool{
		"\x0f\x05":         true, // syscall
		"\x48\x0f\x05":     true, // rex.W syscall
		"\x40\x40\x0f\x05": true, // two REX, the first ignored
		"\x48\x66\x0f\x05": true, // REX, then a legacy prefix
		"\x0f\x34":         true, // sysenter
		"\xcd\x80":         true, // int $0x80
		"\xcd\x81":         false,
		"\x0f\x0b":         false, // ud2
		"\x0f":             false, // truncated
		"":                 false,
		"\xcc":             false,
	} {
		assert.Equal(t, want, IsSyscall([]byte(code)), "% x", code)
	}
}

// TestOutl classifies 4-byte output exits to port 0x502 with RIP on the
// instruction (bare-metal `out`, kvm_pvm's `rep outs`) or after it (kvm_pvm's
// `out` and `outs`, KVM's emulator running `outs` on bare metal).
func TestOutl(t *testing.T) {
	const arg = 0x101000
	base := OutExit{Port: 0x502, Data: arg, RAX: arg, RDX: 0x502}
	with := func(code string, prev int, beside int64) OutExit {
		e := base
		e.Code = []byte(code)
		if prev >= 0 {
			e.Prev, e.HasPrev = byte(prev), true
		}
		if beside >= 0 {
			e.Beside, e.HasBeside = uint32(beside), true
		}
		return e
	}
	for _, c := range []struct {
		name           string
		e              OutExit
		hypercall, str bool
	}{
		{"outl on RIP", with("\xef\x90", 0x05, 0), true, false},
		{"outl before RIP", with("\x90", 0xef, 0), true, false},
		{"outl on RIP, no byte before it", with("\xef", -1, -1), true, false},
		{"outl on RIP after a 6F byte", with("\xef", 0x6f, 0x1234), true, false},
		{"outl before RIP, data not EAX", func() OutExit { e := with("\x90", 0xef, 0); e.Data = 7; return e }(), false, false},
		{"outl on RIP, DX not the port", func() OutExit { e := with("\xef", 0x05, 0); e.RDX = 0x503; return e }(), false, false},
		{"outw on RIP", with("\x66\xef", 0x05, 0), false, false},
		{"neither", with("\x90", 0x90, 0), false, false},
		{"outsl on RIP", with("\x6f", 0x05, 0), false, true},
		{"rep outsl on RIP", with("\xf3\x6f", 0xef, arg), false, true},
		{"rep insl on RIP", with("\xf3\x6d", 0x05, 0), false, true},
		{"outsl before RIP", with("\x90", 0x6f, arg), false, true},
		{"outsl before RIP, then outl on RIP", with("\xef", 0x6f, arg), false, true},
		{"outl before RIP, then outsl on RIP", with("\x6f", 0xef, 0), false, true},
	} {
		hc, str := c.e.Outl()
		assert.Equal(t, c.hypercall, hc, "%s: hypercall", c.name)
		assert.Equal(t, c.str, str, "%s: string", c.name)
	}
}
