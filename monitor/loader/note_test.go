package loader

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/tendervm/tender/hypercall"
)

// TestHasABINote tells tender's guests (its own and Solo5's) from other
// programs: a note of another version or a guest that would not load still
// counts, a file without the note or no ELF at all does not.
func TestHasABINote(t *testing.T) {
	cases := []struct {
		name string
		file []byte
		want bool
	}{
		{"valid", validImage().build(), true},
		{"other version", with(func(im *image) { im.segs[phNote].data = abiNote(hypercall.ABIVersion+1, 0) }), true},
		{"W+X but noted", with(func(im *image) { im.segs[0].flags |= 2 | 1 }), true},
		{"GNU note only", with(func(im *image) { im.segs[phNote].data = noteBytes("GNU", 5, make([]byte, 16), 4) }), false},
		{"empty", nil, false},
		{"script", []byte("#!/bin/sh\necho hi\n"), false},
		{"Solo5 hvt executable", s5Image(s5Manifest("service0"), nil), true},
	}
	for _, c := range cases {
		if got := HasABINote(c.file); got != c.want {
			t.Errorf("%s: HasABINote = %v, want %v", c.name, got, c.want)
		}
	}
	// A real guest, when built.
	if file, err := os.ReadFile(filepath.Join("..", "..", "bin", "guest", "hello.elf")); err == nil && !HasABINote(file) {
		t.Error("hello.elf: HasABINote = false")
	}
}
