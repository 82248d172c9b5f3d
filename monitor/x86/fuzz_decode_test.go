package x86

import (
	"bytes"
	"strings"
	"testing"
)

// FuzzDecodePortIO decodes arbitrary guest code, as the KVM exit path and the
// process backend's SIGSEGV handler do: a decoded instruction lies within
// the code and MaxInsnLen and decodes the same from its own bytes, a refusal
// is the zero PortIO, and no decoder looks past MaxInsnLen bytes.
func FuzzDecodePortIO(f *testing.F) {
	for _, s := range []string{
		"\xef", "\x66\xef", "\xee", "\xec", "\xe5\x71", "\x66\xe7\x70",
		"\xf3\x6f", "\xf3\x66\x6d", "\x2e\x48\xef", "\x48\x66\xef", "\x40\x40\xef",
		strings.Repeat("\x40", 14) + "\xef", strings.Repeat("\x40", 15) + "\xef",
		"\xe4", "\x0f\x0b", "\x66\x66\x66",
		strings.Repeat("\x66", 15) + "\xef", strings.Repeat("\x66", 14) + "\xef",
		strings.Repeat("\x66", 13) + "\xe4\x70", strings.Repeat("\x66", 14) + "\xe4\x70",
		"\x0f\x05", "\xcd\x80", "\xde\xf9", "\x9b",
		strings.Repeat("\x66", 14) + "\x0f\x05",
	} {
		f.Add([]byte(s), uint16(0x501))
	}
	f.Fuzz(func(t *testing.T, code []byte, dx uint16) {
		io, ok := DecodePortIO(code, dx)
		if !ok {
			if io != (PortIO{}) {
				t.Fatalf("% x: refused with %+v", code, io)
			}
		} else {
			if io.Len <= 0 || io.Len > min(len(code), MaxInsnLen) {
				t.Fatalf("% x: length %d", code, io.Len)
			}
			if io.Size != 1 && io.Size != 2 && io.Size != 4 {
				t.Fatalf("% x: size %d", code, io.Size)
			}
			again, ok2 := DecodePortIO(code[:io.Len], dx)
			if !ok2 || again != io {
				t.Fatalf("% x: %+v, but its %d bytes decode as %+v, %v", code, io, io.Len, again, ok2)
			}
		}
		// An instruction is at most MaxInsnLen bytes: nothing after them
		// changes a verdict.
		head := code[:min(len(code), MaxInsnLen)]
		cases := [][]byte{head}
		if len(head) == MaxInsnLen {
			cases = append(cases, append(bytes.Clone(head), 0x90))
		}
		for _, c := range cases {
			if io2, ok2 := DecodePortIO(c, dx); ok2 != ok || io2 != io {
				t.Fatalf("% x: %+v, %v, but % x gives %+v, %v", code, io, ok, c, io2, ok2)
			}
			if IsX87(c) != IsX87(code) {
				t.Fatalf("% x: IsX87 depends on bytes past %d", code, MaxInsnLen)
			}
			if IsSyscall(c) != IsSyscall(code) {
				t.Fatalf("% x: IsSyscall depends on bytes past %d", code, MaxInsnLen)
			}
		}
	})
}
