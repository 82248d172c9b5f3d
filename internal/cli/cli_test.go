package cli

import (
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tendervm/tender/monitor"
)

func TestNetFlags(t *testing.T) {
	var g GuestFlags
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	g.Register(fs)
	require.NoError(t, fs.Parse([]string{"-net", "net0=tap0", "--net", "lan=fd:3", "x.elf"}))
	assert.Equal(t, NetFlags{{Name: "net0", TAP: "tap0", FD: -1}, {Name: "lan", FD: 3}}, g.Net)
	assert.Equal(t, "net0=tap0,lan=fd:3", g.Net.String())

	const want = "want NAME=TAP (a TAP interface) or NAME=fd:N"
	for bad, reason := range map[string]string{
		"net0": want, "=tap0": want, "net0=": want,
		"net0=fd:": "is not a file descriptor number", "net0=fd:x": "is not a file descriptor number",
		"net0=fd:-1": "is not a file descriptor number",
		"net0=a/b":   "is not an interface name", "net0=tap 0": "is not an interface name",
		"net0=0123456789abcdef":           "is not an interface name",
		strings.Repeat("n", 68) + "=tap0": "device name longer than 67 characters",
	} {
		var n NetFlags
		assert.ErrorContains(t, n.Set(bad), reason, bad)
	}
	n := NetFlags{}
	require.NoError(t, n.Set("net0=tap0"))
	assert.ErrorContains(t, n.Set("net0=tap1"), `device "net0" given twice`)

	// Two devices cannot own one descriptor: Close would close it twice.
	require.NoError(t, n.Set("a=fd:3"))
	require.NoError(t, n.Set("b=fd:4"))
	assert.ErrorContains(t, n.Set("c=fd:3"), `"c=fd:3": fd 3 is given to device "a" already`)
	assert.Len(t, n, 3)
}

func TestConfigNetErrors(t *testing.T) {
	elf := filepath.Join(t.TempDir(), "g.elf")
	// A valid header: Config checks it but does not parse the rest.
	require.NoError(t, os.WriteFile(elf, append(elfHeader(), make([]byte, 56)...), 0o644))
	g := GuestFlags{MemMiB: 64, Backend: string(monitor.BackendProcess)}
	require.NoError(t, g.Net.Set("net0=fd:999"))
	_, _, err := g.Config([]string{elf}, io.Discard)
	assert.ErrorContains(t, err, "-net net0=fd:999: netdev: fd 999 is not an attached TUN/TAP device")

	// A file that is no TAP.
	f, err := os.Open(elf)
	require.NoError(t, err)
	defer f.Close()
	g.Net = nil
	require.NoError(t, g.Net.Set("net0=fd:"+strconv.Itoa(int(f.Fd()))))
	_, _, err = g.Config([]string{elf}, io.Discard)
	assert.ErrorContains(t, err, "is not an attached TUN/TAP device")

	g.Net = nil
	_, cfg, err := g.Config([]string{elf}, io.Discard)
	require.NoError(t, err)
	assert.Nil(t, cfg.Net)
	assert.NoError(t, g.Close())
}

// elfHeader is a valid guest ELF header whose one program header follows
// it, for files of any size from 120 bytes.
func elfHeader() []byte {
	h := make([]byte, 64)
	copy(h, "\x7fELF\x02\x01\x01")
	le := binary.LittleEndian
	le.PutUint16(h[16:], 2)  // ET_EXEC
	le.PutUint16(h[18:], 62) // EM_X86_64
	le.PutUint32(h[20:], 1)
	le.PutUint64(h[32:], 64) // phoff
	le.PutUint16(h[52:], 64)
	le.PutUint16(h[54:], 56)
	le.PutUint16(h[56:], 1)
	return h
}

// TestReadELF reads files whole, of any size, and refuses what is not a
// regular file, a file over the size limit or one whose header is no guest
// ELF header, before reading the rest.
func TestReadELF(t *testing.T) {
	dir := t.TempDir()
	for _, size := range []int{120, 4095, 4096, 70000} {
		data := make([]byte, size)
		for i := range data {
			data[i] = byte(i * 7)
		}
		copy(data, elfHeader())
		path := filepath.Join(dir, strconv.Itoa(size))
		require.NoError(t, os.WriteFile(path, data, 0o644))
		got, err := ReadELF(path)
		require.NoError(t, err, "size %d", size)
		assert.Equal(t, data, got, "size %d", size)
	}
	_, err := ReadELF(dir)
	assert.ErrorContains(t, err, "not a regular file")
	_, err = ReadELF(filepath.Join(dir, "missing"))
	assert.ErrorIs(t, err, os.ErrNotExist)

	// Sparse files: 3 GiB with a foreign header, 300 MiB with a valid one.
	// Neither is read, so neither costs its size in memory or time.
	sparse := func(name string, size int64, head []byte) string {
		path := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(path, head, 0o644))
		require.NoError(t, os.Truncate(path, size))
		return path
	}
	_, err = ReadELF(sparse("huge-foreign", 3<<30, []byte("#!/bin/sh\n")))
	assert.ErrorContains(t, err, "over the 256 MiB limit")
	_, err = ReadELF(sparse("foreign", 100<<20, []byte("#!/bin/sh\n")))
	assert.ErrorContains(t, err, "bad magic")
	_, err = ReadELF(sparse("huge-elf", 300<<20, elfHeader()))
	assert.ErrorContains(t, err, "over the 256 MiB limit")
	_, err = ReadELF(sparse("short", 10, nil))
	assert.ErrorContains(t, err, "shorter than the 64-byte ELF header")
}

// TestConfigBackend: an unknown -backend is the usage error it is (exit 254),
// found before anything is opened; the known ones pass.
func TestConfigBackend(t *testing.T) {
	elf := filepath.Join(t.TempDir(), "g.elf")
	require.NoError(t, os.WriteFile(elf, append(elfHeader(), make([]byte, 56)...), 0o644))
	for _, b := range []string{"", "foo", "KVM", "kvm "} {
		g := GuestFlags{MemMiB: 64, Backend: b}
		_, _, err := g.Config([]string{elf}, io.Discard)
		var u UsageError
		require.ErrorAs(t, err, &u, "%q", b)
		assert.ErrorContains(t, err, fmt.Sprintf("-backend %q: want kvm, process or auto", b))
	}
	for _, b := range []monitor.Backend{monitor.BackendKVM, monitor.BackendProcess, monitor.BackendAuto} {
		g := GuestFlags{MemMiB: 64, Backend: string(b)}
		hc, _, err := g.Config([]string{elf}, io.Discard)
		require.NoError(t, err, b)
		assert.Equal(t, b, hc.Backend)
		assert.NoError(t, g.Close())
	}
}

// TestRegisterPool: a pool's command takes the device flags only to refuse
// them, each with its own reason, and its help says so.
func TestRegisterPool(t *testing.T) {
	for _, c := range []struct{ args, want string }{
		{"-net n=tap0", "-net: functions take requests through fn_next"},
		{"-net-mac n=02:00:00:00:00:01", "-net-mac: functions have no network devices"},
		{"-block d=/dev/null", "-block: the instances of a pool would share the device"},
		{"--block:d=/dev/null", "-block: the instances of a pool would share the device"},
	} {
		var g GuestFlags
		var help strings.Builder
		fs := NewFlagSet("serve", "", "", &help)
		g.RegisterPool(fs)
		_, _, ok := Parse(fs, append(strings.Fields(c.args), "fn.elf"))
		require.True(t, ok, c.args)
		err := g.RefuseDevices()
		var u UsageError
		require.ErrorAs(t, err, &u, c.args)
		assert.ErrorContains(t, err, c.want)
	}
	var g GuestFlags
	require.NoError(t, g.RefuseDevices())
	var help strings.Builder
	fs := NewFlagSet("serve", "", "", &help)
	g.RegisterPool(fs)
	fs.Usage()
	for _, f := range []string{"-net NAME=TAP", "-block NAME=PATH", "-net-mac NAME=MAC"} {
		assert.Regexp(t, regexp.QuoteMeta(f)+`\n\s+\S+: refused`, help.String())
	}
}

// TestParseFlagAfterGuest: a guest argument named like one of the command's
// flags is passed on, with a note that tender's flags go before the ELF;
// other arguments pass silently.
func TestParseFlagAfterGuest(t *testing.T) {
	for _, c := range []struct {
		args []string
		note bool
	}{
		{[]string{"g.elf", "-timeout", "1s"}, true},
		{[]string{"g.elf", "--mem=8"}, true},
		{[]string{"g.elf", "x", "-stats"}, true},
		{[]string{"g.elf", "-verbose", "1s"}, false},
		{[]string{"g.elf", "-", "--"}, false},
		{[]string{"-timeout", "1s", "g.elf", "timeout"}, false},
	} {
		var out strings.Builder
		fs := NewFlagSet("run", "", "", &out)
		var g GuestFlags
		g.Register(fs)
		fs.Duration("timeout", 0, "")
		fs.Bool("stats", false, "")
		rest, _, ok := Parse(fs, c.args)
		require.True(t, ok, "%v", c.args)
		assert.Equal(t, c.args[len(c.args)-len(rest):], rest, "the guest's arguments are passed on unchanged")
		if c.note {
			assert.Contains(t, out.String(), "follows the guest ELF, so it is the guest's argument", "%v", c.args)
		} else {
			assert.Empty(t, out.String(), "%v", c.args)
		}
	}
}
