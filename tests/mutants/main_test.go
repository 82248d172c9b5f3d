package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMutantsApply keeps mutants.txt in step with the code: each mutant's
// `old` text occurs exactly once in its file, so a move or rename of the
// code a promise lives in fails `make test`, not only `make mutants`.
func TestMutantsApply(t *testing.T) {
	ms, err := parse("mutants.txt")
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) < 20 {
		t.Fatalf("%d mutants parsed, want the whole list", len(ms))
	}
	for _, m := range ms {
		src, err := os.ReadFile(filepath.Join("..", "..", m.file))
		if err != nil {
			t.Errorf("%s: %v", m.name, err)
			continue
		}
		if n := strings.Count(string(src), m.old); n != 1 {
			t.Errorf("%s: `old` occurs %d times in %s, want 1", m.name, n, m.file)
		}
	}
}
