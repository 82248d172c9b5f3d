package monitor

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tendervm/tender/hypercall"
	"github.com/tendervm/tender/monitor/guestmem"
	"github.com/tendervm/tender/monitor/loader"
	"github.com/tendervm/tender/monitor/netdev"
	"github.com/tendervm/tender/monitor/vcpu"
)

// These tests drive the network handlers directly, with argument structures
// written into guest memory by hand: no guest runs.

const (
	argAddr = 0x200000 // argument structures
	bufAddr = 0x300000 // frame buffers
	netMem  = 4 << 20
)

type netFixture struct {
	t    *testing.T
	r    *run
	mem  *guestmem.Memory
	host []*netdev.Endpoint
}

// newNetFixture attaches one Pipe per name, in manifest order.
func newNetFixture(t *testing.T, names ...string) *netFixture {
	t.Helper()
	mem, err := guestmem.New(netMem)
	require.NoError(t, err)
	t.Cleanup(func() { mem.Close() })
	// The guest may read and write all but its first MiB.
	require.NoError(t, mem.SetLayout([]vcpu.Region{{Addr: 1 << 20, Size: netMem - 1<<20, Perm: vcpu.Read | vcpu.Write}}))
	var declared []loader.Device
	attached := map[string]netdev.Device{}
	f := &netFixture{t: t, mem: mem}
	for _, n := range names {
		g, h, err := netdev.NewPipe()
		require.NoError(t, err)
		t.Cleanup(func() { g.Close(); h.Close() })
		declared = append(declared, loader.Device{Type: hypercall.DeviceNet, Name: n})
		attached[n] = g
		f.host = append(f.host, h)
	}
	ns, err := netDevices(declared, attached)
	require.NoError(t, err)
	vm := &VM{mem: mem, net: ns, table: coreTable()}
	ns.register(&vm.table)
	f.r = &run{vm: vm}
	w, err := ns.begin(f.r)
	require.NoError(t, err)
	t.Cleanup(func() { w.Close() })
	return f
}

// call writes fields at argAddr, runs hypercall nr and returns the fields
// afterwards.
func (f *netFixture) call(nr int, fields ...uint64) ([]uint64, error) {
	for i, v := range fields {
		require.NoError(f.t, f.mem.PutUint64(argAddr+uint64(8*i), v))
	}
	o, err := f.r.vm.table[nr](f.r, argAddr)
	if err != nil {
		return nil, err
	}
	require.Equal(f.t, resume, o)
	out := make([]uint64, len(fields))
	for i := range out {
		out[i], _ = f.mem.Uint64(argAddr + uint64(8*i))
	}
	return out, nil
}

func (f *netFixture) mustCall(nr int, fields ...uint64) []uint64 {
	f.t.Helper()
	out, err := f.call(nr, fields...)
	require.NoError(f.t, err)
	return out
}

func frame(n int, fill byte) []byte {
	b := bytes.Repeat([]byte{fill}, n)
	copy(b, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 1, 0x88, 0xb5})
	return b
}

func readHost(t *testing.T, e *netdev.Endpoint) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	b, err := e.ReadFrame(ctx)
	require.NoError(t, err)
	return b
}

func TestNetDevicesManifest(t *testing.T) {
	g, h, err := netdev.NewPipe()
	require.NoError(t, err)
	defer g.Close()
	defer h.Close()
	net0 := []loader.Device{{Type: hypercall.DeviceNet, Name: "net0"}}

	_, err = netDevices(net0, nil)
	assert.EqualError(t, err, `monitor: guest declares network device "net0" but none was attached (-net net0=...)`)
	_, err = netDevices(nil, map[string]netdev.Device{"net0": g})
	assert.EqualError(t, err, `monitor: network device "net0" was attached but the guest declares no network devices`)
	_, err = netDevices(net0, map[string]netdev.Device{"net0": g, "lan": g})
	assert.EqualError(t, err, `monitor: network device "lan" was attached but the guest declares only "net0"`)
	_, err = netDevices(net0, map[string]netdev.Device{"net0": nil})
	assert.ErrorContains(t, err, `declares network device "net0" but none was attached`)
	ns, err := netDevices(nil, nil)
	assert.NoError(t, err)
	assert.Nil(t, ns)
	ns, err = netDevices(net0, map[string]netdev.Device{"net0": g})
	require.NoError(t, err)
	require.Len(t, ns.devs, 1)
	assert.Equal(t, 1514, ns.devs[0].max)
}

func TestNetInfo(t *testing.T) {
	f := newNetFixture(t, "a", "b")
	mac := f.host[1].GuestMAC()
	out := f.mustCall(hypercall.NrNetInfo, 1, 99, 0, 0)
	assert.Equal(t, uint64(hypercall.ResultOK), out[1])
	var want [8]byte
	copy(want[:], mac[:])
	assert.Equal(t, binary.LittleEndian.Uint64(want[:]), out[2], "MAC, first octet in the low byte")
	assert.Equal(t, uint64(1500), out[3])
	assert.Equal(t, byte(2), mac[0]&3, "locally administered unicast")

	out = f.mustCall(hypercall.NrNetInfo, 2, 99, 7, 7)
	assert.Equal(t, []uint64{2, hypercall.ResultInvalid, 0, 0}, out)
	out = f.mustCall(hypercall.NrNetInfo, 1<<63, 99, 7, 7)
	assert.Equal(t, uint64(hypercall.ResultInvalid), out[1])
}

func TestNetWrite(t *testing.T) {
	f := newNetFixture(t, "net0")
	fr := frame(60, 0xab)
	require.NoError(t, f.mem.Write(bufAddr, fr))
	out := f.mustCall(hypercall.NrNetWrite, 0, bufAddr, 60, 99)
	assert.Equal(t, uint64(hypercall.ResultOK), out[3])
	assert.Equal(t, fr, readHost(t, f.host[0]))

	big := frame(1514, 0xcd)
	require.NoError(t, f.mem.Write(bufAddr, big))
	assert.Equal(t, uint64(hypercall.ResultOK), f.mustCall(hypercall.NrNetWrite, 0, bufAddr, 1514, 99)[3])
	assert.Equal(t, big, readHost(t, f.host[0]))

	for _, c := range []struct {
		name        string
		handle, len uint64
		want        uint64
	}{
		{"bad handle", 1, 60, hypercall.ResultInvalid},
		{"huge handle", ^uint64(0), 60, hypercall.ResultInvalid},
		{"shorter than a header", 0, 13, hypercall.ResultInvalid},
		{"empty", 0, 0, hypercall.ResultInvalid},
		{"over MTU+14", 0, 1515, hypercall.ResultTooLarge},
		{"huge", 0, 1 << 40, hypercall.ResultTooLarge},
	} {
		assert.Equal(t, c.want, f.mustCall(hypercall.NrNetWrite, c.handle, bufAddr, c.len, 99)[3], c.name)
	}
	st := f.r.stats.Net[0]
	assert.Equal(t, NetStats{Name: "net0", FramesOut: 2, BytesOut: 60 + 1514}, st)

	// Buffers and structures outside guest memory end the run.
	_, err := f.call(hypercall.NrNetWrite, 0, netMem-10, 60, 0)
	assertProtocol(t, err, "net_write", "frame: guest range")
	_, err = f.r.netWrite(netMem - 8)
	assertProtocol(t, err, "net_write", "argument structure")

	// A full queue drops frames without failing the guest.
	require.NoError(t, f.mem.Write(bufAddr, fr))
	for range 5000 {
		require.Equal(t, uint64(hypercall.ResultOK), f.mustCall(hypercall.NrNetWrite, 0, bufAddr, 60, 99)[3])
	}
	assert.Positive(t, f.r.stats.Net[0].DroppedOut)
	assert.Less(t, f.r.stats.Net[0].DroppedOut, uint64(5000))

	// Once the host end is closed, writes fail with ResultIO.
	f.host[0].Close()
	assert.Equal(t, uint64(hypercall.ResultIO), f.mustCall(hypercall.NrNetWrite, 0, bufAddr, 60, 99)[3])
}

func assertProtocol(t *testing.T, err error, call, reason string) {
	t.Helper()
	var pe *ProtocolError
	require.True(t, errors.As(err, &pe), "want a ProtocolError, got %v", err)
	assert.Equal(t, call, pe.Hypercall)
	assert.Contains(t, pe.Reason, reason)
}

func TestNetRead(t *testing.T) {
	f := newNetFixture(t, "net0")
	h := f.host[0]
	// Nothing pending.
	out := f.mustCall(hypercall.NrNetRead, 0, bufAddr, 2048, 99, 99)
	assert.Equal(t, []uint64{0, bufAddr, 2048, 0, hypercall.ResultAgain}, out)

	fr := frame(100, 0x5a)
	require.NoError(t, h.WriteFrame(fr))
	out = f.mustCall(hypercall.NrNetRead, 0, bufAddr, 2048, 99, 99)
	assert.Equal(t, uint64(hypercall.ResultOK), out[4])
	require.Equal(t, uint64(100), out[3])
	got, _ := f.mem.Slice(bufAddr, 100)
	assert.Equal(t, fr, got)

	// A frame longer than the buffer is dropped and its length reported.
	require.NoError(t, h.WriteFrame(frame(1514, 1)))
	require.NoError(t, h.WriteFrame(frame(20, 2)))
	out = f.mustCall(hypercall.NrNetRead, 0, bufAddr, 1000, 99, 99)
	assert.Equal(t, []uint64{1514, hypercall.ResultTruncated}, out[3:])
	out = f.mustCall(hypercall.NrNetRead, 0, bufAddr, 1000, 99, 99)
	assert.Equal(t, []uint64{20, hypercall.ResultOK}, out[3:])

	// Runts and giants never reach the guest.
	for _, n := range []int{1, 13, 1515, 9000, netdev.MaxPipeFrame} {
		require.NoError(t, h.WriteFrame(frame(n, 3)), "size %d", n)
	}
	require.NoError(t, h.WriteFrame(frame(14, 4)))
	out = f.mustCall(hypercall.NrNetRead, 0, bufAddr, 64<<10, 99, 99)
	assert.Equal(t, []uint64{14, hypercall.ResultOK}, out[3:])
	assert.Equal(t, NetStats{Name: "net0", FramesIn: 3, BytesIn: 134, DroppedIn: 6}, f.r.stats.Net[0])

	// Zero-capacity buffers are allowed (everything is truncated).
	require.NoError(t, h.WriteFrame(frame(60, 5)))
	out = f.mustCall(hypercall.NrNetRead, 0, netMem, 0, 99, 99)
	assert.Equal(t, []uint64{60, hypercall.ResultTruncated}, out[3:])

	assert.Equal(t, uint64(hypercall.ResultInvalid), f.mustCall(hypercall.NrNetRead, 3, bufAddr, 2048, 99, 99)[4])
	_, err := f.call(hypercall.NrNetRead, 0, netMem-100, 2048, 0, 0)
	assertProtocol(t, err, "net_read", "buffer: guest range")
	_, err = f.call(hypercall.NrNetRead, 0, 1<<63, 1<<63, 0, 0)
	assertProtocol(t, err, "net_read", "buffer")
	_, err = f.r.netRead(netMem - 32)
	assertProtocol(t, err, "net_read", "argument structure")

	// The host end closing is an I/O error, and the device leaves the
	// poll set.
	h.Close()
	assert.Equal(t, uint64(hypercall.ResultIO), f.mustCall(hypercall.NrNetRead, 0, bufAddr, 2048, 99, 99)[4])
	assert.True(t, f.r.vm.net.devs[0].dead)
	start := time.Now()
	out = f.mustCall(hypercall.NrPoll, uint64(50*time.Millisecond), 99, 99)
	assert.Equal(t, []uint64{0, hypercall.ResultOK}, out[1:])
	assert.GreaterOrEqual(t, time.Since(start), 45*time.Millisecond, "a dead device does not make poll spin")
}

func TestNetPoll(t *testing.T) {
	f := newNetFixture(t, "a", "b", "c")
	// Nothing pending, zero timeout: at once.
	out := f.mustCall(hypercall.NrPoll, 0, 99, 99)
	assert.Equal(t, []uint64{0, 0, hypercall.ResultOK}, out)

	start := time.Now()
	out = f.mustCall(hypercall.NrPoll, uint64(30*time.Millisecond), 99, 99)
	el := time.Since(start)
	assert.Equal(t, uint64(0), out[1])
	assert.GreaterOrEqual(t, el, 30*time.Millisecond)
	assert.Less(t, el, 10*time.Second, "hang guard")

	require.NoError(t, f.host[2].WriteFrame(frame(60, 1)))
	require.NoError(t, f.host[0].WriteFrame(frame(60, 1)))
	out = f.mustCall(hypercall.NrPoll, uint64(time.Second), 99, 99)
	assert.Equal(t, uint64(0b101), out[1])

	// A frame arriving while the guest waits wakes it.
	f.mustCall(hypercall.NrNetRead, 0, bufAddr, 2048, 0, 0)
	f.mustCall(hypercall.NrNetRead, 2, bufAddr, 2048, 0, 0)
	go func() {
		time.Sleep(20 * time.Millisecond)
		f.host[1].WriteFrame(frame(60, 1))
	}()
	start = time.Now()
	out = f.mustCall(hypercall.NrPoll, uint64(10*time.Second), 99, 99)
	assert.Equal(t, uint64(0b010), out[1])
	assert.Less(t, time.Since(start), time.Second, "woken by the frame, not the 10 s timeout")

	// A long timeout is capped at PollMax: 30 s uncapped fails the 10 s
	// guard, and the largest one (-1 as a Duration) would not wait at all.
	f.mustCall(hypercall.NrNetRead, 1, bufAddr, 2048, 0, 0)
	for _, timeout := range []uint64{uint64(30 * time.Second), ^uint64(0)} {
		start = time.Now()
		out = f.mustCall(hypercall.NrPoll, timeout, 99, 99)
		el = time.Since(start)
		assert.Equal(t, uint64(0), out[1])
		assert.GreaterOrEqual(t, el, time.Duration(hypercall.PollMax), "timeout %d", timeout)
		assert.Less(t, el, 10*time.Second, "timeout %d: not capped at PollMax", timeout)
	}

	// The waker ends a wait at once.
	go func() {
		time.Sleep(20 * time.Millisecond)
		f.r.vm.net.wake.Wake()
	}()
	start = time.Now()
	f.mustCall(hypercall.NrPoll, uint64(10*time.Second), 99, 99)
	assert.Less(t, time.Since(start), time.Duration(hypercall.PollMax), "woken by the waker, not ended by the PollMax cap")

	_, err := f.r.poll(netMem - 16)
	assertProtocol(t, err, "poll", "argument structure")
}

// TestNetHandlersOnlyWithDevices: a guest without a manifest has no network
// hypercalls at all.
func TestNetHandlersOnlyWithDevices(t *testing.T) {
	tb := coreTable()
	for _, nr := range []int{hypercall.NrNetInfo, hypercall.NrNetWrite, hypercall.NrNetRead, hypercall.NrPoll} {
		assert.Nil(t, tb[nr], hypercall.Names[nr])
	}
}

func TestWakerCloseRace(t *testing.T) {
	for range 100 {
		w, err := newWaker()
		require.NoError(t, err)
		done := make(chan struct{})
		go func() { w.Wake(); close(done) }()
		require.NoError(t, w.Close())
		<-done
		w.Wake() // after Close: a no-op
	}
}

// TestNetReadDropCap: one net_read discards at most 64 unusable frames, then
// answers ResultAgain, so a flood of runts cannot hold the vCPU; the next
// call goes on where it stopped.
func TestNetReadDropCap(t *testing.T) {
	f := newNetFixture(t, "net0")
	h := f.host[0]
	for range maxDrops + 36 {
		require.NoError(t, h.WriteFrame(frame(5, 1)))
	}
	good := frame(60, 2)
	require.NoError(t, h.WriteFrame(good))
	out := f.mustCall(hypercall.NrNetRead, 0, bufAddr, 2048, 99, 99)
	assert.Equal(t, []uint64{0, hypercall.ResultAgain}, out[3:])
	assert.EqualValues(t, 64, f.r.stats.Net[0].DroppedIn, "the cap is 64")
	out = f.mustCall(hypercall.NrNetRead, 0, bufAddr, 2048, 99, 99)
	assert.Equal(t, []uint64{60, hypercall.ResultOK}, out[3:])
	assert.EqualValues(t, 100, f.r.stats.Net[0].DroppedIn)
	got, _ := f.mem.Slice(bufAddr, 60)
	assert.Equal(t, good, got)
}
