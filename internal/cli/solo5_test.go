package cli

import (
	"bytes"
	"flag"
	"io"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tendervm/tender/monitor"
)

// TestSolo5Spellings: a solo5-hvt command line parses as tender's flags, up
// to the guest ELF; the guest's own arguments are left as they are.
func TestSolo5Spellings(t *testing.T) {
	var g GuestFlags
	fs := flag.NewFlagSet("tender run", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	g.Register(fs)
	rest, code, ok := Parse(fs, []string{"--mem=32", "--net:service0=tap0", "--net-mac:service0=02:00:00:00:00:07",
		"-no-seccomp", "-mem", "16", "--", "unikernel.hvt", "--net:x=y", "--solo5:quiet"})
	require.True(t, ok, "code %d", code)
	assert.Equal(t, []string{"unikernel.hvt", "--net:x=y", "--solo5:quiet"}, rest)
	assert.EqualValues(t, 16, g.MemMiB)
	assert.True(t, g.NoSeccomp)
	assert.Equal(t, NetFlags{{Name: "service0", TAP: "tap0", FD: -1}}, g.Net)
	assert.Equal(t, MACFlags{"service0": {2, 0, 0, 0, 0, 7}}, g.NetMAC)

	// Without "--" the guest ELF ends the flags as well.
	rest, _, ok = Parse(fs, []string{"--net:a=tap1", "g.elf", "--net:b=tap2"})
	require.True(t, ok)
	assert.Equal(t, []string{"g.elf", "--net:b=tap2"}, rest)
}

func TestSolo5SpellingErrors(t *testing.T) {
	var g GuestFlags
	var out bytes.Buffer
	fs := flag.NewFlagSet("tender run", flag.ContinueOnError)
	fs.SetOutput(&out)
	g.Register(fs)
	// A spelling whose flag the command lacks (tender invoke has no -block).
	inv := flag.NewFlagSet("tender invoke", flag.ContinueOnError)
	inv.SetOutput(&out)
	_, code, ok := Parse(inv, []string{"--block:storage=disk.img", "g.elf"})
	assert.False(t, ok)
	assert.Equal(t, monitor.ExitUsage, code)
	assert.Contains(t, out.String(), "--block:storage=disk.img: tender invoke has no -block")
	// tender run has it.
	_, _, ok = Parse(fs, []string{"--block:storage=disk.img", "g.elf"})
	require.True(t, ok)
	assert.Equal(t, BlockFlags{{Name: "storage", Path: "disk.img"}}, g.Block)

	for bad, reason := range map[string]string{
		"x":                      "want NAME=MAC",
		"x=zz":                   "is not a MAC-48 address",
		"x=01:00:00:00:00:01":    "is a multicast address",
		"x=02:00:00:00:00:00:01": "is not a MAC-48 address",
		"x=02:00:00:00:00:0g":    "is not a MAC-48 address",
		"x=02:00:00-00:00:01":    "is not a MAC-48 address",
		"x=02.00.00.00.00.01":    "is not a MAC-48 address",
		"x=2:00:00:00:00:01":     "is not a MAC-48 address",
	} {
		var m MACFlags
		assert.ErrorContains(t, m.Set(bad), reason, bad)
	}
	m := MACFlags{}
	require.NoError(t, m.Set("x=02:00:00:00:00:01"))
	require.NoError(t, m.Set("y=0A-bC-00-11-FF-02"))
	assert.Equal(t, [6]byte{0x0a, 0xbc, 0, 0x11, 0xff, 2}, m["y"])
	assert.ErrorContains(t, m.Set("x=02:00:00:00:00:02"), `device "x" given twice`)
	delete(m, "x")
	assert.Equal(t, "y=0a:bc:00:11:ff:02", m.String())

	g = GuestFlags{NetMAC: MACFlags{"lan": {2}}}
	_, err := g.openNet()
	assert.ErrorContains(t, err, `-net-mac lan: no -net device "lan"`)
}

// TestSolo5SectorSize: solo5-hvt's --block-sector-size:NAME=N sets the
// block size of the block device NAME, before or after its --block; it is
// a usage error without that device, beside its own bs=, twice, or out of
// range.
func TestSolo5SectorSize(t *testing.T) {
	parse := func(args ...string) (BlockFlags, string, bool) {
		var g GuestFlags
		var out bytes.Buffer
		fs := flag.NewFlagSet("tender run", flag.ContinueOnError)
		fs.SetOutput(&out)
		g.Register(fs)
		_, code, ok := Parse(fs, append(args, "g.hvt", "--block-sector-size:guest=1"))
		if !ok {
			assert.Equal(t, monitor.ExitUsage, code)
		}
		return g.Block, out.String(), ok
	}
	b, out, ok := parse("--block:storage=disk.img", "--block-sector-size:storage=4096", "--block:log=l.img,ro")
	require.True(t, ok, out)
	assert.Equal(t, BlockFlags{{Name: "storage", Path: "disk.img", BlockSize: 4096}, {Name: "log", Path: "l.img", ReadOnly: true}}, b)
	b, out, ok = parse("--block-sector-size:log=1024", "-block", "log=l.img,ro", "--mem=8")
	require.True(t, ok, out)
	assert.Equal(t, BlockFlags{{Name: "log", Path: "l.img", BlockSize: 1024, ReadOnly: true}}, b)
	b, out, ok = parse("-block=log=l.img", "--block-sector-size:log=512")
	require.True(t, ok, out)
	assert.Equal(t, BlockFlags{{Name: "log", Path: "l.img", BlockSize: 512}}, b)

	for _, c := range []struct {
		args   []string
		reason string
	}{
		{[]string{"--block-sector-size:storage=4096"}, `--block-sector-size:storage=4096: no block device "storage"`},
		// The guest's own arguments are no flags of tender's.
		{[]string{"--block-sector-size:storage=4096", "g.hvt", "-block", "storage=d.img"}, `--block-sector-size:storage=4096: no block device "storage"`},
		{[]string{"--block:storage=d.img,bs=512", "--block-sector-size:storage=4096"}, "--block-sector-size:storage=4096: the block size of \"storage\" is given twice"},
		{[]string{"--block:storage=d.img", "--block-sector-size:storage=4096", "--block-sector-size:storage=4096"}, "--block-sector-size:storage=4096: the block size of \"storage\" is given twice"},
		{[]string{"--block:storage=d.img", "--block-sector-size:storage=1000"}, "bs=1000: want a power of two from 512 to 65536"},
		{[]string{"--block:storage=d.img", "--block-sector-size:storage"}, "--block-sector-size:storage: want --block-sector-size:NAME=N"},
	} {
		_, out, ok := parse(c.args...)
		assert.False(t, ok, "%v", c.args)
		assert.Contains(t, out, c.reason, "%v", c.args)
	}
}
