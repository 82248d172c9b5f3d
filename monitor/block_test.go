package monitor

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tendervm/tender/hypercall"
	"github.com/tendervm/tender/monitor/blockdev"
	"github.com/tendervm/tender/monitor/guestmem"
	"github.com/tendervm/tender/monitor/loader"
	"github.com/tendervm/tender/monitor/netdev"
	"github.com/tendervm/tender/monitor/vcpu"
)

// newMixedFixture declares block "disk" (handle 0), network "net0"
// (handle 1) and block "log" (handle 2, read-only): the two kinds share
// the handle space.
func newMixedFixture(t *testing.T) *netFixture {
	t.Helper()
	mem, err := guestmem.New(netMem)
	require.NoError(t, err)
	t.Cleanup(func() { mem.Close() })
	require.NoError(t, mem.SetLayout([]vcpu.Region{{Addr: 1 << 20, Size: netMem - 1<<20, Perm: vcpu.Read | vcpu.Write}}))
	g, h, err := netdev.NewPipe()
	require.NoError(t, err)
	t.Cleanup(func() { g.Close(); h.Close() })
	blocks := map[string]*blockdev.Device{}
	for _, name := range []string{"disk", "log"} {
		p := filepath.Join(t.TempDir(), name)
		require.NoError(t, os.WriteFile(p, make([]byte, 8192), 0o600))
		d, err := blockdev.Open(name, p, blockdev.Options{BlockSize: 1024, ReadOnly: name == "log"})
		require.NoError(t, err)
		t.Cleanup(func() { d.Close() })
		blocks[name] = d
	}
	declared := []loader.Device{{Type: hypercall.DeviceBlock, Name: "disk"}, {Type: hypercall.DeviceNet, Name: "net0"},
		{Type: hypercall.DeviceBlock, Name: "log"}}
	ns, err := netDevices(declared, map[string]netdev.Device{"net0": g})
	require.NoError(t, err)
	bs, err := blockDevices(declared, blocks)
	require.NoError(t, err)
	vm := &VM{mem: mem, net: ns, block: bs, table: coreTable()}
	ns.register(&vm.table)
	bs.register(&vm.table)
	f := &netFixture{t: t, mem: mem, r: &run{vm: vm}, host: []*netdev.Endpoint{h}}
	w, err := ns.begin(f.r)
	require.NoError(t, err)
	t.Cleanup(func() { w.Close() })
	bs.begin(f.r)
	return f
}

func TestMixedDeviceHandles(t *testing.T) {
	f := newMixedFixture(t)
	out := f.mustCall(hypercall.NrNetInfo, 1, 99, 99, 99)
	assert.EqualValues(t, hypercall.ResultOK, out[1])
	for _, h := range []uint64{0, 2, 3} {
		out = f.mustCall(hypercall.NrNetInfo, h, 99, 99, 99)
		assert.Equal(t, []uint64{hypercall.ResultInvalid, 0, 0}, out[1:], "net_info of handle %d", h)
	}
	out = f.mustCall(hypercall.NrBlockInfo, 0, 99, 99, 99, 99)
	assert.Equal(t, []uint64{hypercall.ResultOK, 8192, 1024, 0}, out[1:])
	out = f.mustCall(hypercall.NrBlockInfo, 2, 99, 99, 99, 99)
	assert.Equal(t, []uint64{hypercall.ResultOK, 8192, 1024, hypercall.BlockReadOnly}, out[1:])
	out = f.mustCall(hypercall.NrBlockInfo, 1, 99, 99, 99, 99)
	assert.Equal(t, []uint64{hypercall.ResultInvalid, 0, 0, 0}, out[1:], "the network device is no block device")

	// Poll's ready bit is the network device's handle.
	require.NoError(t, f.host[0].WriteFrame(frame(60, 1)))
	out = f.mustCall(hypercall.NrPoll, uint64(time.Second), 99, 99)
	assert.Equal(t, uint64(0b010), out[1])
	require.Len(t, f.r.stats.Net, 1)
	assert.Equal(t, "net0", f.r.stats.Net[0].Name)
	assert.Equal(t, []BlockStats{{Name: "disk"}, {Name: "log"}}, f.r.stats.Block)
}

func TestBlockHandlers(t *testing.T) {
	f := newMixedFixture(t)
	data := make([]byte, 2048)
	for i := range data {
		data[i] = byte(i)
	}
	require.NoError(t, f.mem.Write(bufAddr, data))
	// handle, offset, data, len, result
	out := f.mustCall(hypercall.NrBlockWrite, 0, 1024, bufAddr, 2048, 99)
	assert.EqualValues(t, hypercall.ResultOK, out[4])
	out = f.mustCall(hypercall.NrBlockRead, 0, 1024, bufAddr+4096, 2048, 99)
	assert.EqualValues(t, hypercall.ResultOK, out[4])
	got := make([]byte, 2048)
	require.NoError(t, f.mem.Read(bufAddr+4096, got))
	assert.Equal(t, data, got)

	for _, c := range []struct {
		name            string
		nr              int
		h, off, addr, n uint64
		want            uint64
	}{
		{"unknown handle", hypercall.NrBlockRead, 9, 0, bufAddr, 1024, hypercall.ResultInvalid},
		{"network handle", hypercall.NrBlockWrite, 1, 0, bufAddr, 1024, hypercall.ResultInvalid},
		{"misaligned", hypercall.NrBlockRead, 0, 512, bufAddr, 1024, hypercall.ResultInvalid},
		{"past the end", hypercall.NrBlockRead, 0, 7168, bufAddr, 2048, hypercall.ResultInvalid},
		{"overflow", hypercall.NrBlockRead, 0, ^uint64(1023), bufAddr, 2048, hypercall.ResultInvalid},
		{"too large, wild buffer", hypercall.NrBlockRead, 0, 0, 1 << 62, hypercall.BlockIOMax + 1024, hypercall.ResultTooLarge},
		{"read-only", hypercall.NrBlockWrite, 2, 0, bufAddr, 1024, hypercall.ResultReadOnly},
	} {
		out := f.mustCall(c.nr, c.h, c.off, c.addr, c.n, 99)
		assert.Equal(t, c.want, out[4], c.name)
	}

	// A valid request naming memory the guest may not use ends the run.
	_, err := f.call(hypercall.NrBlockRead, 0, 0, 0x1000, 1024, 99)
	assertProtocol(t, err, "block_read", "buffer")
	_, err = f.call(hypercall.NrBlockWrite, 0, 0, netMem-512, 1024, 99)
	assertProtocol(t, err, "block_write", "buffer")
	_, err = f.r.blockInfo(netMem - 16)
	assertProtocol(t, err, "block_info", "argument structure")

	assert.Equal(t, BlockStats{Name: "disk", Reads: 1, BytesRead: 2048, Writes: 1, BytesWritten: 2048}, f.r.stats.Block[0])
}

// TestBlockHandlersOnlyWithDevices: a guest without block devices has no
// block hypercalls.
func TestBlockHandlersOnlyWithDevices(t *testing.T) {
	tb := coreTable()
	for _, nr := range []int{hypercall.NrBlockInfo, hypercall.NrBlockRead, hypercall.NrBlockWrite} {
		assert.Nil(t, tb[nr], hypercall.Names[nr])
	}
	bs, err := blockDevices([]loader.Device{{Type: hypercall.DeviceNet, Name: "net0"}}, nil)
	assert.NoError(t, err)
	assert.Nil(t, bs)
}
