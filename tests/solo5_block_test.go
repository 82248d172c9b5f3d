package tests

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tendervm/tender/monitor"
	"github.com/tendervm/tender/monitor/blockdev"
	"github.com/tendervm/tender/monitor/netdev"
)

// s5Pattern is the byte the blk guest writes at offset i of block n.
func s5Pattern(n, i int) byte { return byte(i*7 + n*13 + 1) }

func openStorage(t testing.TB, path string, opts blockdev.Options) *blockdev.Device {
	t.Helper()
	d, err := blockdev.Open("storage", path, opts)
	require.NoError(t, err)
	t.Cleanup(func() { d.Close() })
	return d
}

// runS5Block runs a Solo5 guest with dev as "storage" (and, for blknet, a
// pipe network device as "service0").
func runS5Block(t *testing.T, h *monitor.Host, guest string, dev *blockdev.Device, args ...string) (monitor.Result, string, error) {
	t.Helper()
	cfg := monitor.Config{ELF: solo5Guest(t, guest), Args: args, Block: map[string]*blockdev.Device{"storage": dev}}
	if guest == "blknet" {
		nd, ep, err := netdev.NewPipe()
		require.NoError(t, err)
		t.Cleanup(func() { nd.Close(); ep.Close() })
		cfg.Net = map[string]netdev.Device{"service0": nd}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return runGuest(ctx, t, h, cfg)
}

// TestSolo5BlockRoundTrip: a Solo5 guest finds its block device attached
// in the completed manifest with its capacity and block size, reads the
// host's data, writes its first and last blocks and reads them back, and
// gets "invalid" for each bad request; the writes are in the file. blknet
// declares a network device first, so its block device has handle 2 and
// a block call on handle 1 (the network device) is refused.
func TestSolo5BlockRoundTrip(t *testing.T) {
	for _, b := range backends(t) {
		h := newHost(t, b)
		for _, guest := range []string{"blk", "blknet"} {
			for _, bs := range []int{512, 4096, 32768} {
				t.Run(fmt.Sprintf("%s/%s/bs=%d", b, guest, bs), func(t *testing.T) {
					const size = 1 << 20
					path := diskImage(t, size)
					dev := openStorage(t, path, blockdev.Options{BlockSize: uint64(bs)})
					res, out, err := runS5Block(t, h, guest, dev)
					require.NoError(t, err, out)
					assert.Zero(t, res.Status, out)
					assert.Equal(t, fmt.Sprintf("blk: capacity %d, block size %d\n", size, bs)+
						"blk: block 0 starts with "+hostData+"\nSUCCESS\n", out)

					file, err := os.ReadFile(path)
					require.NoError(t, err)
					require.Len(t, file, size)
					last := size/bs - 1
					for i := range bs {
						require.Equal(t, s5Pattern(0, i), file[i], "block 0, byte %d", i)
						require.Equal(t, s5Pattern(last, i), file[last*bs+i], "last block, byte %d", i)
					}
					assert.Equal(t, make([]byte, size-2*bs), file[bs:last*bs], "nothing written between")

					require.Len(t, res.Stats.Block, 1)
					assert.Equal(t, monitor.BlockStats{Name: "storage", Reads: 3, BytesRead: uint64(3 * bs),
						Writes: 2, BytesWritten: uint64(2 * bs)}, res.Stats.Block[0], "refused requests are not counted")
					hc := res.Stats.HypercallCounts()
					assert.EqualValues(t, 2+4, hc["solo5_block_write"], "%v", hc)
					assert.EqualValues(t, 3+9, hc["solo5_block_read"], "%v", hc)
				})
			}
		}
	}
}

var solo5Block = blockABI{
	dev:  "storage",
	open: openStorage,
	run: func(t *testing.T, h *monitor.Host, dev *blockdev.Device, mode string) (monitor.Result, string, error) {
		return runS5Block(t, h, "blk", dev, mode)
	},
	roOut: "blk: capacity 65536, block size 512\nSUCCESS\n",
	ok:    "SUCCESS\n",
}

// TestSolo5BlockReadOnly: on a read-only device a Solo5 guest's write
// answers invalid and leaves the file alone; reads work.
func TestSolo5BlockReadOnly(t *testing.T) { testBlockReadOnly(t, solo5Block) }

// TestSolo5BlockHostFailures: a read cut short by a file that shrank, and
// a write to a closed file, answer "unspecified" and are counted.
func TestSolo5BlockHostFailures(t *testing.T) { testBlockHostFailures(t, solo5Block) }

// TestSolo5BlockHostile: a block buffer the guest may not access as asked
// ends the run with a protocol error before the device is touched.
func TestSolo5BlockHostile(t *testing.T) {
	cases := []struct {
		probe   string
		reasons []string
	}{
		{"read-text", []string{"solo5_block_read: buffer", needsW, "is r-x"}},
		{"read-bootinfo", []string{"solo5_block_read: buffer", needsW + " 0x10000 is r--"}},
		{"write-wild", []string{"solo5_block_write: buffer", "[0x4001000, +0x200) outside guest memory"}},
		// tender's own block hypercalls are not in a Solo5 guest's table.
		{"tender-nr", []string{"unknown hypercall 11"}},
	}
	for _, b := range backends(t) {
		h := newHost(t, b)
		for _, c := range cases {
			t.Run(string(b)+"/"+c.probe, func(t *testing.T) {
				path := diskImage(t, 4096)
				dev := openStorage(t, path, blockdev.Options{})
				res, out, err := runS5Block(t, h, "blk", dev, c.probe)
				requireProtocol(t, err, c.reasons...)
				assert.Equal(t, monitor.ExitProtocol, monitor.ExitCode(res.Status, err))
				assert.Equal(t, "blk: capacity 4096, block size 512\n", out)
				assert.Equal(t, monitor.BlockStats{Name: "storage"}, res.Stats.Block[0], "the device was not used")
				file, err := os.ReadFile(path)
				require.NoError(t, err)
				assert.Equal(t, hostData, string(file[:16]))
				assert.Equal(t, make([]byte, 4096-16), file[16:])
			})
		}
	}
}

// TestSolo5BlockManifest: every block device a Solo5 manifest declares must
// be attached, none it does not declare, not under a network device's name,
// and with a block size the manifest's 16-bit field holds.
func TestSolo5BlockManifest(t *testing.T) {
	h := newHost(t, monitor.BackendProcess)
	path := diskImage(t, 128<<10)
	dev := openStorage(t, path, blockdev.Options{})

	_, err := h.New(monitor.Config{ELF: solo5Guest(t, "blk")})
	assert.EqualError(t, err, `monitor: guest declares block device "storage" but none was attached (-block storage=...)`)
	_, err = h.New(monitor.Config{ELF: solo5Guest(t, "hello"), Block: map[string]*blockdev.Device{"storage": dev}})
	assert.EqualError(t, err, `monitor: block device "storage" was attached but the guest declares no block devices`)
	_, err = h.New(monitor.Config{ELF: solo5Guest(t, "blk"), Block: map[string]*blockdev.Device{"storage": dev, "sda": dev}})
	assert.EqualError(t, err, `monitor: block device "sda" was attached but the guest declares only "storage"`)

	nd, ep, err := netdev.NewPipe()
	require.NoError(t, err)
	defer nd.Close()
	defer ep.Close()
	_, err = h.New(monitor.Config{ELF: solo5Guest(t, "blknet"), Block: map[string]*blockdev.Device{"storage": dev}})
	assert.EqualError(t, err, `monitor: guest declares network device "service0" but none was attached (-net service0=...)`)
	_, err = h.New(monitor.Config{ELF: solo5Guest(t, "blknet"), Block: map[string]*blockdev.Device{"service0": dev},
		Net: map[string]netdev.Device{"storage": nd}})
	assert.EqualError(t, err, `monitor: network device "storage" was attached but the guest declares only "service0"`)

	big := openStorage(t, path, blockdev.Options{BlockSize: 65536})
	_, err = h.New(monitor.Config{ELF: solo5Guest(t, "blk"), Block: map[string]*blockdev.Device{"storage": big}})
	assert.EqualError(t, err, `monitor: block device "storage" has blocks of 65536 bytes: a Solo5 guest takes at most 32768 (bs=)`)
}

// TestSolo5BlockCLI: tender run with solo5-hvt's --block:NAME=PATH (and
// --block-sector-size:NAME=N), confined by its seccomp filter, on both backends.
func TestSolo5BlockCLI(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(string(b), func(t *testing.T) {
			be := "-backend=" + string(b)
			path := diskImage(t, 64<<10)
			code, out, errOut := tender(t, "run", be, "-stats", "--block:storage="+path, solo5GuestPath("blk"))
			require.Equal(t, 0, code, errOut)
			assert.Equal(t, "blk: capacity 65536, block size 512\nblk: block 0 starts with "+hostData+"\nSUCCESS\n", out)
			assert.Contains(t, errOut, `"block":[{"bytes_read":1536,"bytes_written":1024,"errors":0,"name":"storage","reads":3,"writes":2}]`)
			assert.NotContains(t, errOut, "seccomp")
			file, err := os.ReadFile(path)
			require.NoError(t, err)
			assert.Equal(t, s5Pattern(0, 100), file[100])

			code, out, errOut = tender(t, "run", be, "--block:storage="+path+",ro", solo5GuestPath("blk"), "ro")
			require.Equal(t, 0, code, errOut)
			assert.Contains(t, out, "SUCCESS\n")

			// solo5-hvt's spelling of the block size.
			fresh := diskImage(t, 64<<10)
			code, out, errOut = tender(t, "run", be, "--block-sector-size:storage=4096", "--block:storage="+fresh, solo5GuestPath("blk"))
			require.Equal(t, 0, code, errOut)
			assert.Equal(t, "blk: capacity 65536, block size 4096\nblk: block 0 starts with "+hostData+"\nSUCCESS\n", out)

			code, _, errOut = tender(t, "run", be, "--block:storage="+path, solo5GuestPath("blk"), "write-wild")
			assert.Equal(t, monitor.ExitProtocol, code)
			assert.Contains(t, errOut, "solo5_block_write: buffer")

			code, _, errOut = tender(t, "run", be, "--block:storage="+path+",bs=65536", solo5GuestPath("blk"))
			assert.Equal(t, monitor.ExitMonitor, code)
			assert.Contains(t, errOut, "a Solo5 guest takes at most 32768")

			code, _, errOut = tender(t, "run", be, "--block:disk="+path, solo5GuestPath("blk"))
			assert.Equal(t, monitor.ExitMonitor, code)
			assert.Contains(t, errOut, `block device "disk" was attached but the guest declares only "storage"`)
		})
	}
}

// TestSolo5PoolRefused: a pool of any mode needs a guest that serves
// function calls (fn_next), which a Solo5 guest cannot, with devices or
// without; NewPool says so rather than boot instances that never take one.
func TestSolo5PoolRefused(t *testing.T) {
	for _, b := range backends(t) {
		h := newHost(t, b)
		dev := openStorage(t, diskImage(t, 4096), blockdev.Options{})
		for _, cfg := range []monitor.Config{
			{ELF: solo5Guest(t, "blk"), Block: map[string]*blockdev.Device{"storage": dev}},
			{ELF: solo5Guest(t, "time")},
		} {
			for _, mode := range []monitor.Mode{monitor.Cold, monitor.Warm, monitor.Fresh} {
				p, err := h.NewPool(monitor.PoolConfig{Mode: mode, Guest: cfg})
				if p != nil {
					p.Close()
				}
				assert.ErrorIs(t, err, monitor.ErrSolo5Pool, "%s %s", b, mode)
				assert.ErrorContains(t, err, "a Solo5 guest serves no function calls", "%s %s", b, mode)
			}
		}
	}
}
