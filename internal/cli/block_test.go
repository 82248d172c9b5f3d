package cli

import (
	"bytes"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tendervm/tender/monitor"
)

func TestBlockFlags(t *testing.T) {
	var g GuestFlags
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	g.Register(fs)
	require.NoError(t, fs.Parse([]string{"-block", "disk=/tmp/a.img", "--block", "log=/tmp/x,y.img,bs=4096,ro", "x.elf"}))
	assert.Equal(t, BlockFlags{{Name: "disk", Path: "/tmp/a.img"}, {Name: "log", Path: "/tmp/x,y.img", BlockSize: 4096, ReadOnly: true}}, g.Block)
	assert.Equal(t, "disk=/tmp/a.img log=/tmp/x,y.img,bs=4096,ro", g.Block.String())

	const want = "want NAME=PATH[,bs=N][,ro]"
	for bad, reason := range map[string]string{
		"disk": want, "=a.img": want, "disk=": want, "disk=,ro": want,
		"disk=a.img,bs=1000":               "bs=1000: want a power of two from 512 to 65536",
		"disk=a.img,bs=256":                "bs=256",
		"disk=a.img,bs=131072":             "bs=131072",
		"disk=a.img,bs=x":                  "bs=x",
		strings.Repeat("b", 68) + "=a.img": "device name longer than 67 characters",
	} {
		var b BlockFlags
		assert.ErrorContains(t, b.Set(bad), reason, bad)
	}
	b := BlockFlags{}
	require.NoError(t, b.Set("disk=a.img"))
	assert.ErrorContains(t, b.Set("disk=b.img"), `device "disk" given twice`)
}

// TestBlockFlagsSolo5Names: a block device takes any name a Solo5 manifest
// may declare (up to solo5.NameSize-1 characters, as -net does), given as
// -block, --block: or --block-sector-size:.
func TestBlockFlagsSolo5Names(t *testing.T) {
	const name = "persistent_storage_volume_0" // 27 characters
	long := strings.Repeat("b", 67)
	var g GuestFlags
	var out bytes.Buffer
	fs := flag.NewFlagSet("tender run", flag.ContinueOnError)
	fs.SetOutput(&out)
	g.Register(fs)
	_, _, ok := Parse(fs, []string{"--block:" + name + "=d.img", "--block-sector-size:" + name + "=4096", "-block", long + "=l.img,ro", "g.hvt"})
	require.True(t, ok, out.String())
	assert.Equal(t, BlockFlags{{Name: name, Path: "d.img", BlockSize: 4096}, {Name: long, Path: "l.img", ReadOnly: true}}, g.Block)
}

func TestConfigBlockErrors(t *testing.T) {
	dir := t.TempDir()
	elf := filepath.Join(dir, "g.elf")
	require.NoError(t, os.WriteFile(elf, append(elfHeader(), make([]byte, 56)...), 0o644))
	odd := filepath.Join(dir, "odd.img")
	require.NoError(t, os.WriteFile(odd, make([]byte, 1000), 0o644))
	good := filepath.Join(dir, "good.img")
	require.NoError(t, os.WriteFile(good, make([]byte, 4096), 0o644))

	g := GuestFlags{MemMiB: 64, Backend: string(monitor.BackendProcess)}
	require.NoError(t, g.Block.Set("a="+good))
	require.NoError(t, g.Block.Set("b="+odd))
	_, _, err := g.Config([]string{elf}, io.Discard)
	assert.ErrorContains(t, err, "-block b="+odd+`: blockdev: "b": `+odd+" has 1000 bytes, not a multiple of the block size 512")
	assert.Empty(t, g.blocks, "the devices opened before are closed")

	g.Block = nil
	require.NoError(t, g.Block.Set("a="+filepath.Join(dir, "missing.img")))
	_, _, err = g.Config([]string{elf}, io.Discard)
	assert.ErrorContains(t, err, "no such file or directory")
}
