package loader

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tendervm/tender/hypercall/solo5"
)

// TestParseSolo5Guests parses the clean-room Solo5-ABI guests the build
// links (guest/solo5): real linker output, not the test builder's.
func TestParseSolo5Guests(t *testing.T) {
	paths, err := filepath.Glob(filepath.Join("..", "..", "bin", "guest", "solo5", "*.elf"))
	require.NoError(t, err)
	if len(paths) == 0 {
		t.Fatal("no bin/guest/solo5/*.elf (run make all first)")
	}
	for _, p := range paths {
		file, err := os.ReadFile(p)
		require.NoError(t, err)
		img, err := Parse(file, testMem)
		require.NoError(t, err, p)
		require.NotNil(t, img.Solo5, p)
		want := []Solo5Entry{{Type: solo5.TypeReservedFirst}}
		net := Solo5Entry{Type: solo5.TypeNet, Name: "service0"}
		storage := Solo5Entry{Type: solo5.TypeBlock, Name: "storage"}
		switch filepath.Base(p) {
		case "netecho.elf":
			want = append(want, net)
		case "blk.elf":
			want = append(want, storage)
		case "blknet.elf":
			want = append(want, net, storage)
		}
		assert.Equal(t, want, img.Solo5.Entries, p)
	}
}
