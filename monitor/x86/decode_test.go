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
