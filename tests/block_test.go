package tests

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tendervm/tender/monitor"
	"github.com/tendervm/tender/monitor/blockdev"
	"github.com/tendervm/tender/monitor/netdev"
)

// hostData is what the host puts at the start of a disk image; the block
// guest prints the first 16 bytes it reads.
const hostData = "HOST DATA 123456"

// diskImage writes a disk image of n bytes into a fresh directory: hostData,
// then zeros.
func diskImage(t testing.TB, n int) string {
	t.Helper()
	b := make([]byte, n)
	copy(b, hostData)
	p := filepath.Join(t.TempDir(), "disk.img")
	require.NoError(t, os.WriteFile(p, b, 0o600))
	return p
}

func openDisk(t testing.TB, path string, opts blockdev.Options) *blockdev.Device {
	t.Helper()
	d, err := blockdev.Open("disk", path, opts)
	require.NoError(t, err)
	t.Cleanup(func() { d.Close() })
	return d
}

func runBlockGuest(t *testing.T, h *monitor.Host, name string, dev *blockdev.Device, args ...string) (monitor.Result, string, error) {
	t.Helper()
	return runGuest(context.Background(), t, h, monitor.Config{ELF: readGuest(t, name), Args: args,
		Block: map[string]*blockdev.Device{"disk": dev}})
}

// TestBlockRoundTrip: the guest reads the host's data, writes two blocks in
// one call and reads them back, moves 1 MiB each way, and gets the
// documented result for each bad request; the writes are in the file
// afterwards, with 512- and 4096-byte blocks.
func TestBlockRoundTrip(t *testing.T) {
	for _, b := range backends(t) {
		h := newHost(t, b)
		for _, bs := range []int{512, 4096} {
			t.Run(fmt.Sprintf("%s/bs=%d", b, bs), func(t *testing.T) {
				path := diskImage(t, 4<<20)
				dev := openDisk(t, path, blockdev.Options{BlockSize: uint64(bs)})
				res, out, err := runBlockGuest(t, h, "block", dev)
				require.NoError(t, err, out)
				assert.Zero(t, res.Status, out)
				assert.Equal(t, fmt.Sprintf("block: rw: capacity %d, block size %d, flags 0\n", 4<<20, bs)+
					"block: block 0 starts with "+hostData+"\nblock: ok\n", out)

				file, err := os.ReadFile(path)
				require.NoError(t, err)
				require.Len(t, file, 4<<20, "the device never grows its file")
				assert.Equal(t, hostData, string(file[:16]))
				assert.Equal(t, bytes.Repeat([]byte("G"), bs), file[bs:2*bs])
				assert.Equal(t, bytes.Repeat([]byte("H"), bs), file[2*bs:3*bs])
				assert.Zero(t, file[3*bs], "nothing written past the two blocks")
				tail := file[len(file)-1<<20:]
				for _, i := range []int{0, 1, bs, 1<<20 - 1} {
					assert.Equal(t, byte(i*7+i/bs), tail[i], "1 MiB write, byte %d", i)
				}

				require.Len(t, res.Stats.Block, 1)
				st := res.Stats.Block[0]
				assert.Equal(t, monitor.BlockStats{Name: "disk", Reads: 3, BytesRead: uint64(bs + 2*bs + 1<<20),
					Writes: 2, BytesWritten: uint64(2*bs + 1<<20)}, st)
				assert.EqualValues(t, 10, res.Stats.HypercallCounts()["block_read"], "refused requests are hypercalls too")
			})
		}
	}
}

// blockABI is one guest ABI's way to a block device, for the tests both
// ABIs share (the Solo5 side is in solo5_block_test.go).
type blockABI struct {
	dev  string // the device's name in the guest's manifest
	open func(t testing.TB, path string, opts blockdev.Options) *blockdev.Device
	// run runs the ABI's block guest in mode on dev.
	run func(t *testing.T, h *monitor.Host, dev *blockdev.Device, mode string) (monitor.Result, string, error)
	// roOut is the guest's whole output in mode ro; ok ends a passing run.
	roOut, ok string
}

var tenderBlock = blockABI{
	dev:  "disk",
	open: openDisk,
	run: func(t *testing.T, h *monitor.Host, dev *blockdev.Device, mode string) (monitor.Result, string, error) {
		return runBlockGuest(t, h, "block", dev, mode)
	},
	roOut: "block: ro: capacity 65536, block size 512, flags 1\nblock: ok\n",
	ok:    "block: ok\n",
}

// TestBlockReadOnly: a device attached read-only says so; the guest's
// write fails with READ_ONLY and the file is untouched.
func TestBlockReadOnly(t *testing.T) { testBlockReadOnly(t, tenderBlock) }

// testBlockReadOnly: on a device attached read-only the guest's write is
// refused and the file is untouched; its read works.
func testBlockReadOnly(t *testing.T, abi blockABI) {
	for _, b := range backends(t) {
		h := newHost(t, b)
		path := diskImage(t, 64<<10)
		require.NoError(t, os.Chmod(path, 0o400), "a read-only device needs only read access")
		before, err := os.ReadFile(path)
		require.NoError(t, err)
		dev := abi.open(t, path, blockdev.Options{ReadOnly: true})
		res, out, err := abi.run(t, h, dev, "ro")
		require.NoError(t, err, b)
		assert.Zero(t, res.Status, out)
		assert.Equal(t, abi.roOut, out)
		after, err := os.ReadFile(path)
		require.NoError(t, err)
		assert.Equal(t, before, after, b)
		assert.Equal(t, monitor.BlockStats{Name: abi.dev, Reads: 1, BytesRead: 512}, res.Stats.Block[0])
	}
}

// TestBlockHostFailures: a read cut short by a file that shrank under the
// device, and a write to a device whose file is gone, reach the guest as
// IO and are counted; neither is lost or ends the run.
func TestBlockHostFailures(t *testing.T) { testBlockHostFailures(t, tenderBlock) }

// testBlockHostFailures: a read cut short and a failed write reach the
// guest as an error result and are counted.
func testBlockHostFailures(t *testing.T, abi blockABI) {
	for _, b := range backends(t) {
		h := newHost(t, b)
		t.Run(string(b)+"/short read", func(t *testing.T) {
			path := diskImage(t, 64<<10)
			dev := abi.open(t, path, blockdev.Options{})
			require.NoError(t, os.Truncate(path, 64<<10-100))
			res, out, err := abi.run(t, h, dev, "io-read")
			require.NoError(t, err)
			assert.Zero(t, res.Status, out)
			assert.Contains(t, out, abi.ok)
			assert.Equal(t, monitor.BlockStats{Name: abi.dev, Errors: 1}, res.Stats.Block[0])
		})
		t.Run(string(b)+"/failed write", func(t *testing.T) {
			dev := abi.open(t, diskImage(t, 64<<10), blockdev.Options{})
			require.NoError(t, dev.Close())
			res, out, err := abi.run(t, h, dev, "io-write")
			require.NoError(t, err)
			assert.Zero(t, res.Status, out)
			assert.Contains(t, out, abi.ok)
			assert.Equal(t, monitor.BlockStats{Name: abi.dev, Errors: 1}, res.Stats.Block[0])
		})
	}
}

// TestBlockManifest: every block device the guest declares must be
// attached, and only those; a network device does not stand in for one.
func TestBlockManifest(t *testing.T) {
	for _, b := range backends(t) {
		h := newHost(t, b)
		dev := openDisk(t, diskImage(t, 4096), blockdev.Options{})
		ctx := context.Background()

		_, _, err := runGuest(ctx, t, h, monitor.Config{ELF: readGuest(t, "block")})
		assert.EqualError(t, err, `monitor: guest declares block device "disk" but none was attached (-block disk=...)`, b)

		_, _, err = runGuest(ctx, t, h, monitor.Config{ELF: readGuest(t, "hello"), Block: map[string]*blockdev.Device{"disk": dev}})
		assert.EqualError(t, err, `monitor: block device "disk" was attached but the guest declares no block devices`, b)

		_, _, err = runGuest(ctx, t, h, monitor.Config{ELF: readGuest(t, "block"),
			Block: map[string]*blockdev.Device{"disk": dev, "sda": dev}})
		assert.EqualError(t, err, `monitor: block device "sda" was attached but the guest declares only "disk"`, b)

		// A block device attached under a network device's name, and
		// the other way round.
		nd, ep, err := netdev.NewPipe()
		require.NoError(t, err)
		defer nd.Close()
		defer ep.Close()
		_, _, err = runGuest(ctx, t, h, monitor.Config{ELF: readGuest(t, "net_ping"),
			Net: map[string]netdev.Device{"net0": nd}, Block: map[string]*blockdev.Device{"net0": dev}})
		assert.EqualError(t, err, `monitor: block device "net0" was attached but the guest declares no block devices`, b)
		_, _, err = runGuest(ctx, t, h, monitor.Config{ELF: readGuest(t, "block"),
			Block: map[string]*blockdev.Device{"disk": dev}, Net: map[string]netdev.Device{"disk": nd}})
		assert.EqualError(t, err, `monitor: network device "disk" was attached but the guest declares no network devices`, b)
	}
}

// TestBlockBufferPermissions: block hypercalls naming memory the guest may
// not access as asked end the run with a protocol error, and the device is
// not touched.
func TestBlockBufferPermissions(t *testing.T) {
	cases := []struct {
		probe   string
		reasons []string
	}{
		{"read-text", []string{"block_read: buffer", needsW, "is r-x"}},
		{"read-bootinfo", []string{"block_read: buffer", needsW + " 0x10000 is r--"}},
		{"write-idt", []string{"block_write: buffer", notMapped + " 0x2000"}},
		{"read-wild", []string{"block_read: buffer", "[0xffff00000000, +0x200) outside guest memory"}},
		{"read-past-end", []string{"block_read: buffer", "[0x3fffe00, +0x400) outside guest memory"}},
		{"info-rodata", []string{"block_info: argument structure", needsRW, "is r--"}},
	}
	for _, b := range backends(t) {
		h := newHost(t, b)
		for _, c := range cases {
			t.Run(fmt.Sprintf("%s/%s", b, c.probe), func(t *testing.T) {
				path := diskImage(t, 4096)
				dev := openDisk(t, path, blockdev.Options{})
				res, out, err := runBlockGuest(t, h, "permblock", dev, c.probe)
				requireProtocol(t, err, c.reasons...)
				assert.Equal(t, monitor.ExitProtocol, monitor.ExitCode(res.Status, err))
				assert.Equal(t, "permblock: "+c.probe+"\n", out)
				assert.Equal(t, monitor.BlockStats{Name: "disk"}, res.Stats.Block[0], "the device was not used")
				file, err := os.ReadFile(path)
				require.NoError(t, err)
				assert.Equal(t, hostData, string(file[:16]))
				assert.Equal(t, make([]byte, 4096-16), file[16:])
			})
		}
		res, out, err := runBlockGuest(t, h, "permblock", openDisk(t, diskImage(t, 4096), blockdev.Options{}), "read-ok")
		require.NoError(t, err, b)
		assert.Zero(t, res.Status)
		assert.Contains(t, out, "served it")
	}
}

// TestBlockCLI: tender run -block, confined by its seccomp filter, on both
// backends: block sizes, read-only, and files it refuses.
func TestBlockCLI(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(string(b), func(t *testing.T) {
			be := "-backend=" + string(b)
			path := diskImage(t, 64<<10)
			code, out, errOut := tender(t, "run", be, "-stats", "-block", "disk="+path+",bs=4096", guestPath("block"))
			require.Equal(t, 0, code, errOut)
			assert.Contains(t, out, "block: rw: capacity 65536, block size 4096, flags 0\n")
			assert.Contains(t, out, "block: ok\n")
			assert.Contains(t, errOut, `"block":[{"bytes_read":12288,"bytes_written":8192,"errors":0,"name":"disk","reads":2,"writes":1}]`)
			file, err := os.ReadFile(path)
			require.NoError(t, err)
			assert.Equal(t, bytes.Repeat([]byte("G"), 4096), file[4096:8192])

			code, out, errOut = tender(t, "run", be, "-block", "disk="+path+",ro", guestPath("block"), "ro")
			require.Equal(t, 0, code, errOut)
			assert.Contains(t, out, "flags 1\n")

			odd := filepath.Join(t.TempDir(), "odd.img")
			require.NoError(t, os.WriteFile(odd, make([]byte, 1000), 0o600))
			code, _, errOut = tender(t, "run", be, "-block", "disk="+odd, guestPath("block"))
			assert.Equal(t, monitor.ExitMonitor, code)
			assert.Contains(t, errOut, "has 1000 bytes, not a multiple of the block size 512")

			code, _, errOut = tender(t, "run", be, "-block", "disk="+path+",bs=1000", guestPath("block"))
			assert.Equal(t, monitor.ExitUsage, code)
			assert.Contains(t, errOut, "bs=1000: want a power of two from 512 to 65536")

			code, _, errOut = tender(t, "run", be, guestPath("block"))
			assert.Equal(t, monitor.ExitMonitor, code)
			assert.Contains(t, errOut, `guest declares block device "disk" but none was attached`)

			code, _, errOut = tender(t, "run", be, "-block", "disk="+path, guestPath("permblock"), "read-text")
			assert.Equal(t, monitor.ExitProtocol, code)
			assert.Contains(t, errOut, "block_read: buffer")
			assert.NotContains(t, errOut, "seccomp")

			code, _, errOut = tender(t, "invoke", be, "-block", "disk="+path, guestPath("fn_echo"))
			assert.Equal(t, monitor.ExitUsage, code)
			assert.Contains(t, errOut, "-block: the instances of a pool would share the device")
		})
	}
}

// TestBlockFreshRefused: a fresh pool restores guest memory after each
// call, not a device's file, so it refuses a guest with a block device.
func TestBlockFreshRefused(t *testing.T) {
	forFresh(t, func(t *testing.T, h *monitor.Host) {
		dev := openDisk(t, diskImage(t, 4096), blockdev.Options{})
		_, err := h.NewPool(monitor.PoolConfig{Mode: monitor.Fresh, Guest: monitor.Config{ELF: readGuest(t, "block"),
			Block: map[string]*blockdev.Device{"disk": dev}}})
		assert.ErrorIs(t, err, monitor.ErrFreshUnsupported)
		assert.ErrorContains(t, err, "the guest declares 1 devices (network or block)")
	})
}
