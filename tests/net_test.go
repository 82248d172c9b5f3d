package tests

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/tendervm/tender/monitor"
	"github.com/tendervm/tender/monitor/netdev"
)

// The network tests talk to the example network guests (guest/examples/
// net_*.c) in two ways: through an in-process Pipe, with frames built here
// byte by byte, and through a TAP device inside a network namespace of the
// test's own, with the host's ping and sockets. Every address is from
// TEST-NET-2 (198.51.100.0/24, RFC 5737), and no frame leaves the pipe or the
// namespace.

var (
	hostMAC  = [6]byte{0x02, 0x00, 0x00, 0x00, 0x00, 0x01}
	hostIP   = [4]byte{198, 51, 100, 1}
	guestIP  = [4]byte{198, 51, 100, 2}
	bcastMAC = [6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
)

const guestIPArg = "ip=198.51.100.2/24"

const (
	etherIPv4 = 0x0800
	etherARP  = 0x0806
	protoICMP = 1
	protoUDP  = 17
)

// --- Frames, built and checked by hand. ---

// csum is the Internet checksum (RFC 1071) of the concatenated parts.
func csum(parts ...[]byte) uint16 {
	var sum uint32
	var odd []byte
	for _, p := range parts {
		b := append(odd, p...)
		for ; len(b) >= 2; b = b[2:] {
			sum += uint32(b[0])<<8 | uint32(b[1])
		}
		odd = append([]byte(nil), b...)
	}
	if len(odd) == 1 {
		sum += uint32(odd[0]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

func ethFrame(dst, src [6]byte, etherType uint16, payload []byte) []byte {
	f := make([]byte, 0, 14+len(payload))
	f = append(f, dst[:]...)
	f = append(f, src[:]...)
	f = binary.BigEndian.AppendUint16(f, etherType)
	return append(f, payload...)
}

func arpPacket(op uint16, sha [6]byte, spa [4]byte, tha [6]byte, tpa [4]byte) []byte {
	p := []byte{0, 1, 0x08, 0x00, 6, 4}
	p = binary.BigEndian.AppendUint16(p, op)
	p = append(p, sha[:]...)
	p = append(p, spa[:]...)
	p = append(p, tha[:]...)
	return append(p, tpa[:]...)
}

func ipv4Packet(src, dst [4]byte, proto uint8, id uint16, payload []byte) []byte {
	h := make([]byte, 20)
	h[0] = 0x45
	binary.BigEndian.PutUint16(h[2:], uint16(20+len(payload)))
	binary.BigEndian.PutUint16(h[4:], id)
	h[8] = 64
	h[9] = proto
	copy(h[12:], src[:])
	copy(h[16:], dst[:])
	binary.BigEndian.PutUint16(h[10:], csum(h))
	return append(h, payload...)
}

func icmpEcho(typ uint8, id, seq uint16, data []byte) []byte {
	m := []byte{typ, 0, 0, 0}
	m = binary.BigEndian.AppendUint16(m, id)
	m = binary.BigEndian.AppendUint16(m, seq)
	m = append(m, data...)
	binary.BigEndian.PutUint16(m[2:], csum(m))
	return m
}

func udpPseudo(src, dst [4]byte, n int) []byte {
	p := append(append([]byte{}, src[:]...), dst[:]...)
	p = append(p, 0, protoUDP)
	return binary.BigEndian.AppendUint16(p, uint16(n))
}

func udpDatagram(src, dst [4]byte, sport, dport uint16, data []byte) []byte {
	u := binary.BigEndian.AppendUint16(nil, sport)
	u = binary.BigEndian.AppendUint16(u, dport)
	u = binary.BigEndian.AppendUint16(u, uint16(8+len(data)))
	u = append(u, 0, 0)
	u = append(u, data...)
	c := csum(udpPseudo(src, dst, len(u)), u)
	if c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(u[6:], c)
	return u
}

// pingFrame is an ICMP echo request from the host to the guest.
func pingFrame(guestMAC [6]byte, id, seq uint16, data []byte) []byte {
	return ethFrame(guestMAC, hostMAC, etherIPv4, ipv4Packet(hostIP, guestIP, protoICMP, seq, icmpEcho(8, id, seq, data)))
}

func udpFrame(guestMAC [6]byte, sport, dport uint16, data []byte) []byte {
	return ethFrame(guestMAC, hostMAC, etherIPv4, ipv4Packet(hostIP, guestIP, protoUDP, sport, udpDatagram(hostIP, guestIP, sport, dport, data)))
}

// ipFromGuest checks the Ethernet and IPv4 headers of a frame the guest sent
// to the host and returns the IP payload, or an error saying what is off.
func ipFromGuest(f []byte, guestMAC [6]byte, proto uint8) ([]byte, error) {
	if len(f) < 14+20 || binary.BigEndian.Uint16(f[12:]) != etherIPv4 {
		return nil, errors.New("not IPv4")
	}
	if !bytes.Equal(f[0:6], hostMAC[:]) || !bytes.Equal(f[6:12], guestMAC[:]) {
		return nil, fmt.Errorf("MACs %x -> %x", f[6:12], f[0:6])
	}
	ip := f[14:]
	total := int(binary.BigEndian.Uint16(ip[2:]))
	switch {
	case ip[0] != 0x45:
		return nil, fmt.Errorf("version/IHL %#x", ip[0])
	case total < 20 || total > len(ip):
		return nil, fmt.Errorf("total length %d in %d bytes", total, len(ip))
	case csum(ip[:20]) != 0:
		return nil, errors.New("bad IP header checksum")
	case ip[9] != proto:
		return nil, fmt.Errorf("protocol %d", ip[9])
	case !bytes.Equal(ip[12:16], guestIP[:]) || !bytes.Equal(ip[16:20], hostIP[:]):
		return nil, fmt.Errorf("addresses %v -> %v", ip[12:16], ip[16:20])
	}
	return ip[20:total], nil
}

// --- A guest on a Pipe. ---

type pipeGuest struct {
	*netGuest
	t    *testing.T
	name string
	ep   *netdev.Endpoint
	mac  [6]byte
}

// startPipeGuest boots guest name with a Pipe as its device "net0" and waits
// until it has configured its address.
func startPipeGuest(t *testing.T, b monitor.Backend, name string, args ...string) *pipeGuest {
	t.Helper()
	dev, ep, err := netdev.NewPipe()
	require.NoError(t, err)
	g := &pipeGuest{t: t, name: name, ep: ep, mac: ep.GuestMAC()}
	g.netGuest = runNetGuest(t, b, dev, name, func() {
		dev.Close() // the VM does not own its devices
		ep.Close()
	}, args...)
	return g
}

// netGuest is a guest running in the background with a network device.
type netGuest struct {
	out    *lockedBuffer
	cancel context.CancelFunc
	done   chan struct{}
	res    monitor.Result
	err    error
}

// runNetGuest boots guest name with dev as its device "net0" and runs it in
// the background until the test ends, when it is stopped and closed and
// then after runs. It returns once the guest has configured its address.
func runNetGuest(t testing.TB, b monitor.Backend, dev netdev.Device, name string, after func(), args ...string) *netGuest {
	t.Helper()
	h := newHost(t, b)
	g := &netGuest{out: &lockedBuffer{}, done: make(chan struct{})}
	vm, err := h.New(monitor.Config{
		ELF: readGuest(t, name), Name: name, Args: append([]string{guestIPArg}, args...),
		Console: g.out, Net: map[string]netdev.Device{"net0": dev},
	})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	g.cancel = cancel
	go func() {
		defer close(g.done)
		g.res, g.err = vm.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-g.done
		vm.Close()
		if after != nil {
			after()
		}
		if t.Failed() {
			t.Logf("%s console:\n%s", name, g.out.String())
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(g.out.String(), " ip 198.51.100.2/24") {
		select {
		case <-g.done:
			t.Fatalf("%s ended before configuring: %v\n%s", name, g.err, g.out.String())
		default:
		}
		require.True(t, time.Now().Before(deadline), "%s did not start: %q", name, g.out.String())
		time.Sleep(time.Millisecond)
	}
	return g
}

// send queues a frame for the guest, waiting while its queue is full.
func (g *pipeGuest) send(f []byte) {
	g.t.Helper()
	for range 1000 {
		err := g.ep.WriteFrame(f)
		if !errors.Is(err, netdev.ErrDropped) {
			require.NoError(g.t, err)
			return
		}
		time.Sleep(time.Millisecond)
	}
	g.t.Fatal("the guest does not take frames")
}

// expect reads the guest's frames until match accepts one (returning nil),
// failing after timeout. match returns an error for frames it does not want.
func (g *pipeGuest) expect(what string, match func([]byte) error) []byte {
	g.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var last error
	for {
		f, err := g.ep.ReadFrame(ctx)
		if err != nil {
			g.t.Fatalf("waiting for %s: %v (last frame ignored: %v)", what, err, last)
		}
		if last = match(f); last == nil {
			return f
		}
	}
}

// ping sends an echo request and checks the guest's reply.
func (g *pipeGuest) ping(id, seq uint16, data []byte) {
	g.t.Helper()
	g.send(pingFrame(g.mac, id, seq, data))
	g.expect(fmt.Sprintf("echo reply %d/%d", id, seq), func(f []byte) error {
		icmp, err := ipFromGuest(f, g.mac, protoICMP)
		if err != nil {
			return err
		}
		switch {
		case len(icmp) < 8 || icmp[0] != 0 || icmp[1] != 0:
			return fmt.Errorf("ICMP %x is no echo reply", icmp[:min(len(icmp), 8)])
		case csum(icmp) != 0:
			return errors.New("bad ICMP checksum")
		case binary.BigEndian.Uint16(icmp[4:]) != id || binary.BigEndian.Uint16(icmp[6:]) != seq:
			return fmt.Errorf("echo reply %d/%d", binary.BigEndian.Uint16(icmp[4:]), binary.BigEndian.Uint16(icmp[6:]))
		case !bytes.Equal(icmp[8:], data):
			return errors.New("echo reply with other data")
		}
		return nil
	})
}

// udp sends a datagram from sport to the guest's dport and returns the
// payload of its answer from dport back to sport.
func (g *pipeGuest) udp(sport, dport uint16, data []byte) []byte {
	g.t.Helper()
	g.send(udpFrame(g.mac, sport, dport, data))
	var payload []byte
	g.expect(fmt.Sprintf("UDP %d -> %d", dport, sport), func(f []byte) error {
		u, err := ipFromGuest(f, g.mac, protoUDP)
		if err != nil {
			return err
		}
		switch {
		case len(u) < 8 || int(binary.BigEndian.Uint16(u[4:])) != len(u):
			return fmt.Errorf("UDP length field in %d bytes", len(u))
		case binary.BigEndian.Uint16(u[0:]) != dport || binary.BigEndian.Uint16(u[2:]) != sport:
			return fmt.Errorf("ports %d -> %d", binary.BigEndian.Uint16(u[0:]), binary.BigEndian.Uint16(u[2:]))
		case binary.BigEndian.Uint16(u[6:]) != 0 && csum(udpPseudo(guestIP, hostIP, len(u)), u) != 0:
			return errors.New("bad UDP checksum")
		}
		payload = append([]byte{}, u[8:]...)
		return nil
	})
	return payload
}

// stop cancels the run and returns how long the guest took to stop.
func (g *pipeGuest) stop() time.Duration {
	g.t.Helper()
	start := time.Now()
	g.cancel()
	select {
	case <-g.done:
	case <-time.After(10 * time.Second):
		g.t.Fatal("the guest did not stop")
	}
	return time.Since(start)
}

// --- Pipe tests: no privileges needed. ---

func TestNetPipePing(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(string(b), func(t *testing.T) {
			g := startPipeGuest(t, b, "net_ping")
			assert.Contains(t, g.out.String(), fmt.Sprintf("mac %s", net.HardwareAddr(g.mac[:])))

			// ARP: who has 198.51.100.2?
			g.send(ethFrame(bcastMAC, hostMAC, etherARP, arpPacket(1, hostMAC, hostIP, [6]byte{}, guestIP)))
			g.expect("ARP reply", func(f []byte) error {
				want := ethFrame(hostMAC, g.mac, etherARP, arpPacket(2, g.mac, guestIP, hostMAC, hostIP))
				if len(f) < len(want) || !bytes.Equal(f[:len(want)], want) {
					return fmt.Errorf("frame %x", f)
				}
				return nil
			})

			// Echo requests of several sizes, up to the MTU.
			for seq, n := range []int{0, 56, 1000, 1500 - 28} {
				data := make([]byte, n)
				for i := range data {
					data[i] = byte(i*7 + seq)
				}
				g.ping(0xbeef, uint16(seq+1), data)
			}

			// The guest now waits in poll (for up to a second): a
			// cancellation stops it (that the waker ends the poll early
			// is TestNetPoll's in monitor; a poll that ends by itself
			// within PollMax cannot tell it here).
			time.Sleep(50 * time.Millisecond)
			took := g.stop()
			se, ok := as[*monitor.StoppedError](g.err)
			require.True(t, ok, "want a StoppedError, got %v", g.err)
			assert.ErrorIs(t, se, context.Canceled)
			t.Logf("stopped %v after the cancellation", took)

			require.Len(t, g.res.Stats.Net, 1)
			st := g.res.Stats.Net[0]
			assert.Equal(t, "net0", st.Name)
			assert.Equal(t, uint64(5), st.FramesIn)
			assert.GreaterOrEqual(t, st.FramesOut, uint64(6), "gratuitous ARP, ARP reply, 4 echo replies")
			assert.Positive(t, g.res.Stats.Hypercalls[9], "poll calls")
		})
	}
}

func TestNetPipeUDPEcho(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(string(b), func(t *testing.T) {
			g := startPipeGuest(t, b, "net_udpecho")
			for i, n := range []int{0, 1, 12, 512, 1500 - 28} {
				data := make([]byte, n)
				for k := range data {
					data[k] = byte(k + i)
				}
				assert.Equal(t, data, g.udp(uint16(40000+i), 7, data))
			}
			g.ping(1, 1, []byte("still answers pings"))
		})
	}
}

func TestNetPipeUDPFn(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(string(b), func(t *testing.T) {
			g := startPipeGuest(t, b, "net_udpfn")
			assert.Equal(t, []byte("HELLO, TENDER 123!"), g.udp(50000, 9000, []byte("Hello, tender 123!")))
			long := bytes.Repeat([]byte("abcXYZ09 "), 160)
			assert.Equal(t, bytes.ToUpper(long), g.udp(50001, 9000, long))
			assert.Equal(t, []byte{}, g.udp(50002, 9000, nil))
		})
	}
}

// TestNetManifest: the devices a guest declares and the ones attached must
// match.
func TestNetManifest(t *testing.T) {
	for _, b := range backends(t) {
		h := newHost(t, b)
		dev, ep, err := netdev.NewPipe()
		require.NoError(t, err)
		defer dev.Close()
		defer ep.Close()
		ctx := context.Background()

		_, _, err = runGuest(ctx, t, h, monitor.Config{ELF: readGuest(t, "net_ping"), Args: []string{guestIPArg}})
		assert.EqualError(t, err, `monitor: guest declares network device "net0" but none was attached (-net net0=...)`, b)

		_, _, err = runGuest(ctx, t, h, monitor.Config{ELF: readGuest(t, "hello"), Net: map[string]netdev.Device{"net0": dev}})
		assert.EqualError(t, err, `monitor: network device "net0" was attached but the guest declares no network devices`, b)

		_, _, err = runGuest(ctx, t, h, monitor.Config{ELF: readGuest(t, "net_ping"), Net: map[string]netdev.Device{"eth0": dev}})
		assert.EqualError(t, err, `monitor: network device "eth0" was attached but the guest declares only "net0"`, b)
	}
}

// TestNetPipeFlood floods a guest with 100,000 frames as fast as the host can
// send them: valid pings, ARP, UDP to closed ports and garbage.
func TestNetPipeFlood(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(string(b), func(t *testing.T) { testNetPipeFlood(t, b) })
	}
}

func testNetPipeFlood(t *testing.T, b monitor.Backend) {
	g := startPipeGuest(t, b, "net_ping")

	// Drain the guest's answers meanwhile, as a host would.
	var answered atomic.Int64
	drainCtx, stopDrain := context.WithCancel(context.Background())
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		for {
			if _, err := g.ep.ReadFrame(drainCtx); err != nil {
				return
			}
			answered.Add(1)
		}
	}()

	rng := rand.New(rand.NewPCG(1, 2))
	frames := make([][]byte, 256)
	for i := range frames {
		switch i % 5 {
		case 0: // valid pings
			frames[i] = pingFrame(g.mac, 7, uint16(i), make([]byte, rng.IntN(1400)))
		case 1: // ARP requests, for the guest and for others
			frames[i] = ethFrame(bcastMAC, hostMAC, etherARP, arpPacket(1, hostMAC, hostIP, [6]byte{}, [4]byte{198, 51, 100, byte(rng.IntN(256))}))
		case 2: // UDP to closed ports (the guest answers port unreachable)
			frames[i] = udpFrame(g.mac, 1000, uint16(rng.IntN(65535)+1), make([]byte, rng.IntN(100)))
		default: // garbage of any size
			f := make([]byte, 1+rng.IntN(2000))
			for k := range f {
				f[k] = byte(rng.Uint32())
			}
			if rng.IntN(2) == 0 && len(f) >= 14 {
				copy(f, g.mac[:])
				binary.BigEndian.PutUint16(f[12:], []uint16{etherIPv4, etherARP}[rng.IntN(2)])
			}
			frames[i] = f
		}
	}

	rss0 := rssBytes(t)
	queued, dropped := 0, 0
	start := time.Now()
	for i := range 100_000 {
		switch err := g.ep.WriteFrame(frames[i%len(frames)]); {
		case err == nil:
			queued++
		case errors.Is(err, netdev.ErrDropped):
			dropped++
		default:
			t.Fatalf("frame %d: %v", i, err)
		}
	}
	t.Logf("flood: 100000 frames in %v: %d queued, %d dropped (queue full); %d answers so far", time.Since(start), queued, dropped, answered.Load())
	growth := rssBytes(t) - rss0
	t.Logf("monitor RSS grew by %d KiB", growth>>10)
	assert.Less(t, growth, int64(64<<20), "frames are not buffered in the monitor")
	assert.Positive(t, dropped, "the queue is bounded")

	// Then a sustained stream the guest has to parse all of: each frame
	// is retried until the queue takes it.
	start = time.Now()
	const paced = 20_000
	for i := range paced {
		g.send(frames[(i*7)%len(frames)])
	}
	t.Logf("%d frames delivered in %v", paced, time.Since(start))
	queued += paced
	growth = rssBytes(t) - rss0
	t.Logf("monitor RSS grew by %d KiB", growth>>10)
	assert.Less(t, growth, int64(64<<20))

	time.Sleep(200 * time.Millisecond) // let the guest work through its queue
	stopDrain()
	<-drained
	select {
	case <-g.done:
		t.Fatalf("the guest stopped: %v", g.err)
	default:
	}
	for seq := range uint16(3) {
		g.ping(0x5151, seq, []byte("after the flood"))
	}
	g.stop()
	st := g.res.Stats.Net[0]
	t.Logf("guest device stats: %+v", st)
	assert.LessOrEqual(t, st.FramesIn+st.DroppedIn, uint64(queued+3))
	assert.Positive(t, st.DroppedIn, "runts and giants dropped by the monitor")
}

// TestNetPipeOddFrames hands the guest frames of every awkward size, with
// zeros, random bytes and truncated headers; it must keep answering.
func TestNetPipeOddFrames(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(string(b), func(t *testing.T) {
			g := startPipeGuest(t, b, "net_udpecho")
			mtu := g.ep.MTU()
			assert.ErrorContains(t, g.ep.WriteFrame(nil), "frame of 0 bytes: want 1 to", "an empty frame is refused")
			rng := rand.New(rand.NewPCG(3, 4))
			sizes := []int{1, 2, 6, 12, 13, 14, 15, 20, 27, 33, 34, 41, 42, 43, 59, 60, 61, 64,
				mtu + 13, mtu + 14, mtu + 15, mtu + 16, 2048, 9014, 9015, netdev.MaxPipeFrame}
			sent := 0
			for _, n := range sizes {
				for variant := range 5 {
					f := make([]byte, n)
					switch variant {
					case 1:
						for k := range f {
							f[k] = byte(rng.Uint32())
						}
					case 2, 3, 4: // headers that promise more than the frame holds
						full := []([]byte){
							pingFrame(g.mac, 9, 9, make([]byte, 64)),
							ethFrame(bcastMAC, hostMAC, etherARP, arpPacket(1, hostMAC, hostIP, [6]byte{}, guestIP)),
							udpFrame(g.mac, 1, 7, make([]byte, 300)),
						}[variant-2]
						copy(f, full)
					}
					g.send(f)
					sent++
				}
			}
			// Lies in the headers: lengths beyond the frame, bad
			// checksums, options, fragments, UDP length 0 and huge.
			udp := udpFrame(g.mac, 2, 7, []byte("payload"))
			for _, edit := range []func(f []byte){
				func(f []byte) { binary.BigEndian.PutUint16(f[14+2:], 0xffff) },    // IP total length
				func(f []byte) { binary.BigEndian.PutUint16(f[14+2:], 3) },         // IP total length < header
				func(f []byte) { f[14] = 0x4f },                                    // IHL 15
				func(f []byte) { f[14] = 0x65 },                                    // version 6
				func(f []byte) { f[14+10] ^= 0xff },                                // IP checksum
				func(f []byte) { binary.BigEndian.PutUint16(f[14+6:], 0x2001) },    // fragment
				func(f []byte) { binary.BigEndian.PutUint16(f[14+20+4:], 0xffff) }, // UDP length
				func(f []byte) { binary.BigEndian.PutUint16(f[14+20+4:], 0) },      // UDP length 0
				func(f []byte) { f[14+20+6] ^= 0x55 },                              // UDP checksum
				func(f []byte) { copy(f[14+12:], []byte{255, 255, 255, 255}) },     // broadcast source
				func(f []byte) { copy(f[14+12:], []byte{0, 0, 0, 0}) },             // zero source
				func(f []byte) { copy(f[0:], bcastMAC[:]) },                        // link broadcast
			} {
				f := bytes.Clone(udp)
				edit(f)
				g.send(f)
				sent++
			}
			time.Sleep(100 * time.Millisecond)
			select {
			case <-g.done:
				t.Fatalf("the guest stopped: %v", g.err)
			default:
			}
			g.ping(2, 2, []byte("survived"))
			assert.Equal(t, []byte("echo"), g.udp(3, 7, []byte("echo")))
			g.stop()
			st := g.res.Stats.Net[0]
			t.Logf("%d odd frames sent; device stats %+v", sent, st)
			// Sizes below 14 or above MTU+14 never reach the guest.
			var runtsGiants uint64
			for _, n := range sizes {
				if n < 14 || n > mtu+14 {
					runtsGiants += 5
				}
			}
			assert.Equal(t, runtsGiants, st.DroppedIn)
		})
	}
}

// rssBytes is this process's resident set size.
func rssBytes(t *testing.T) int64 {
	t.Helper()
	f, err := os.Open("/proc/self/status")
	require.NoError(t, err)
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			require.NoError(t, err)
			return kb << 10
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// --- TAP tests: root, in a network namespace of their own. ---

// netns is a network namespace made for one test. Its TAP "tap0" has the
// host side's address 198.51.100.1/24.
type netns struct {
	name string
}

var netnsSeq atomic.Int32

// needNetns skips a test that cannot create namespaces and TAPs, unless
// TENDER_REQUIRE_NET=1; where it could (root, /dev/net/tun), missing tools
// are a failure.
func needNetns(t testing.TB) {
	t.Helper()
	skip := func(format string, args ...any) {
		t.Helper()
		if os.Getenv("TENDER_REQUIRE_NET") == "1" {
			t.Fatalf("TENDER_REQUIRE_NET=1 but "+format, args...)
		}
		t.Skipf(format+" (set TENDER_REQUIRE_NET=1 to make this a failure)", args...)
	}
	if os.Geteuid() != 0 {
		skip("TAP tests need root to create network namespaces and TAP devices")
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		skip("TAP tests need /dev/net/tun: %v", err)
	}
	for _, tool := range []string{"ip", "ping"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("TAP tests need %s (packages iproute2 and iputils-ping): %v", tool, err)
		}
	}
}

// newNetns creates a namespace with its loopback up and a persistent TAP
// "tap0" at 198.51.100.1/24; cleanups remove the TAP and the namespace, after
// whatever the test registers later (LIFO).
func newNetns(t testing.TB) *netns {
	t.Helper()
	needNetns(t)
	ns := &netns{name: fmt.Sprintf("tender-%d-%d", os.Getpid(), netnsSeq.Add(1))}
	run := func(args ...string) error {
		out, err := exec.Command("ip", args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	require.NoError(t, run("netns", "add", ns.name))
	t.Cleanup(func() {
		if err := run("netns", "del", ns.name); err != nil {
			t.Errorf("removing the namespace: %v", err)
		}
	})
	require.NoError(t, run("-n", ns.name, "link", "set", "lo", "up"))
	require.NoError(t, run("-n", ns.name, "tuntap", "add", "dev", "tap0", "mode", "tap"))
	t.Cleanup(func() { _ = run("-n", ns.name, "link", "del", "tap0") })
	require.NoError(t, run("-n", ns.name, "addr", "add", "198.51.100.1/24", "dev", "tap0"))
	require.NoError(t, run("-n", ns.name, "link", "set", "tap0", "up"))
	return ns
}

// do runs f on a thread inside the namespace: sockets and devices it
// creates belong there. The thread is never unlocked, so Go retires it
// afterwards instead of reusing it in the wrong namespace.
func (ns *netns) do(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		fd, err := unix.Open("/run/netns/"+ns.name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- err
			return
		}
		err = unix.Setns(fd, unix.CLONE_NEWNET)
		unix.Close(fd)
		if err != nil {
			errc <- fmt.Errorf("setns %s: %w", ns.name, err)
			return
		}
		errc <- f()
	}()
	return <-errc
}

// command runs argv inside the namespace.
func (ns *netns) command(ctx context.Context, argv ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns.name}, argv...)...)
}

// openTAP opens the namespace's tap0; cleanup closes it (before the TAP and
// the namespace are removed).
func (ns *netns) openTAP(t testing.TB) *netdev.TAP {
	t.Helper()
	var tap *netdev.TAP
	require.NoError(t, ns.do(func() (err error) {
		tap, err = netdev.OpenTAP("tap0")
		return err
	}))
	t.Cleanup(func() { tap.Close() })
	return tap
}

// dialUDP makes a UDP socket inside the namespace, connected to addr.
func (ns *netns) dialUDP(t testing.TB, addr string) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	require.NoError(t, ns.do(func() error {
		ua, err := net.ResolveUDPAddr("udp4", addr)
		if err != nil {
			return err
		}
		c, err = net.DialUDP("udp4", nil, ua)
		return err
	}))
	t.Cleanup(func() { c.Close() })
	return c
}

// tapGuest is a guest running on a namespace's TAP.
type tapGuest struct{ *netGuest }

// startTAPGuest boots guest name on dev as "net0" and waits until it is up.
func startTAPGuest(t testing.TB, b monitor.Backend, dev netdev.Device, name string, args ...string) *tapGuest {
	t.Helper()
	return &tapGuest{runNetGuest(t, b, dev, name, nil, args...)}
}

func (g *tapGuest) stop(t testing.TB) {
	t.Helper()
	g.cancel()
	<-g.done
	_, ok := as[*monitor.StoppedError](g.err)
	assert.True(t, ok, "want a StoppedError, got %v", g.err)
}

var lossRE = regexp.MustCompile(`(\d+) packets transmitted, (\d+) received.*?(\d+(?:\.\d+)?)% packet loss`)

// pingFrom runs the host's ping inside the namespace and checks 0% loss.
// The pings go 50 ms apart (root may ping that often), ample for a guest
// that answers in well under a millisecond; the first waits for ARP, which
// the kernel queues it behind, not drops.
func pingFrom(t *testing.T, ns *netns, count int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := ns.command(ctx, "ping", "-c", strconv.Itoa(count), "-i", "0.05", "-W", "1", "198.51.100.2").CombinedOutput()
	t.Logf("%s", out)
	require.NoError(t, err, "ping failed")
	m := lossRE.FindStringSubmatch(string(out))
	require.NotNil(t, m, "no ping summary")
	assert.Equal(t, strconv.Itoa(count), m[1])
	assert.Equal(t, m[1], m[2])
	assert.Equal(t, "0", m[3], "packet loss")
}

// udpRoundTrip sends data and returns the answer, within a second per try,
// trying three times (the first datagram waits for ARP).
func udpRoundTrip(t *testing.T, c *net.UDPConn, data []byte) []byte {
	t.Helper()
	buf := make([]byte, 2048)
	var err error
	for range 3 {
		require.NoError(t, c.SetDeadline(time.Now().Add(time.Second)))
		if _, err = c.Write(data); err != nil {
			continue
		}
		var n int
		if n, err = c.Read(buf); err == nil {
			return buf[:n]
		}
	}
	t.Fatalf("no UDP answer: %v", err)
	return nil
}

func TestNetTAP(t *testing.T) {
	needNetns(t)
	for _, b := range backends(t) {
		t.Run(string(b), func(t *testing.T) {
			ns := newNetns(t)
			tap := ns.openTAP(t)
			assert.Equal(t, 1500, tap.MTU())

			t.Run("ping", func(t *testing.T) {
				g := startTAPGuest(t, b, tap, "net_ping")
				pingFrom(t, ns, 5)
				g.stop(t)
				st := g.res.Stats.Net[0]
				assert.GreaterOrEqual(t, st.FramesIn, uint64(5))
				assert.GreaterOrEqual(t, st.FramesOut, uint64(5))
			})
			t.Run("udpecho", func(t *testing.T) {
				g := startTAPGuest(t, b, tap, "net_udpecho")
				c := ns.dialUDP(t, "198.51.100.2:7")
				for _, n := range []int{1, 100, 1472} {
					data := bytes.Repeat([]byte{byte(n)}, n)
					assert.Equal(t, data, udpRoundTrip(t, c, data))
				}
				pingFrom(t, ns, 2)
				g.stop(t)
			})
			t.Run("udpfn", func(t *testing.T) {
				g := startTAPGuest(t, b, tap, "net_udpfn")
				c := ns.dialUDP(t, "198.51.100.2:9000")
				assert.Equal(t, []byte("SHOUT, TENDER"), udpRoundTrip(t, c, []byte("shout, tender")))
				g.stop(t)
			})
		})
	}
}

// TestNetTAPCLI runs `tender run` with -net NAME=TAP (inside the namespace)
// and with -net NAME=fd:N (a TAP descriptor opened by the test, as an
// orchestrator would hand it over).
func TestNetTAPCLI(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(string(b), func(t *testing.T) { testNetTAPCLI(t, b) })
	}
}

func testNetTAPCLI(t *testing.T, b monitor.Backend) {
	ns := newNetns(t)
	tender := root + "/bin/tender"
	be := "-backend=" + string(b)
	// pingThrough starts cmd (a tender run of net_ping), waits until the
	// guest is configured, pings it from the namespace, and stops it with
	// SIGINT, which tender reports as interrupted.
	pingThrough := func(t *testing.T, cmd *exec.Cmd) {
		t.Helper()
		var out lockedBuffer
		cmd.Stdout, cmd.Stderr = &out, &out
		require.NoError(t, cmd.Start())
		defer func() {
			if cmd.ProcessState == nil {
				cmd.Process.Kill()
				cmd.Wait()
			}
		}()
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(out.String(), " ip 198.51.100.2/24") {
			require.True(t, time.Now().Before(deadline), "tender did not start: %q", out.String())
			time.Sleep(5 * time.Millisecond)
		}
		pingFrom(t, ns, 3)
		require.NoError(t, cmd.Process.Signal(os.Interrupt))
		err := cmd.Wait()
		var ee *exec.ExitError
		require.True(t, errors.As(err, &ee), "tender: %v\n%s", err, out.String())
		assert.Equal(t, monitor.ExitTimeout, ee.ExitCode(), "%s", out.String())
	}

	t.Run("tap", func(t *testing.T) {
		pingThrough(t, ns.command(context.Background(), tender, "run", be, "-net", "net0=tap0", guestPath("net_ping"), guestIPArg))
	})

	t.Run("fd", func(t *testing.T) {
		var f *os.File
		require.NoError(t, ns.do(func() error {
			fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
			if err != nil {
				return err
			}
			ifr, err := unix.NewIfreq("tap0")
			if err != nil {
				return err
			}
			ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI)
			if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
				unix.Close(fd)
				return err
			}
			f = os.NewFile(uintptr(fd), "tap0")
			return nil
		}))
		defer f.Close()
		// Started outside the namespace: the descriptor carries the TAP.
		cmd := exec.Command(tender, "run", be, "-net", "net0=fd:3", guestPath("net_ping"), guestIPArg)
		cmd.ExtraFiles = []*os.File{f}
		pingThrough(t, cmd)
	})

	t.Run("errors", func(t *testing.T) {
		out, err := exec.Command(tender, "run", be, guestPath("net_ping"), guestIPArg).CombinedOutput()
		assert.Contains(t, string(out), `guest declares network device "net0" but none was attached (-net net0=...)`)
		var ee *exec.ExitError
		require.True(t, errors.As(err, &ee))
		assert.Equal(t, monitor.ExitMonitor, ee.ExitCode())

		out, err = exec.Command(tender, "run", be, "-net", "net0", guestPath("net_ping")).CombinedOutput()
		assert.Contains(t, string(out), "want NAME=TAP")
		require.True(t, errors.As(err, &ee))
		assert.Equal(t, monitor.ExitUsage, ee.ExitCode())

		out, err = exec.Command(tender, "run", be, "-net", "net0=fd:0", guestPath("net_ping")).CombinedOutput()
		assert.Contains(t, string(out), "is not an attached TUN/TAP device")
		require.True(t, errors.As(err, &ee))
		assert.Equal(t, monitor.ExitMonitor, ee.ExitCode())
	})
}

// TestNetGuestNeverPolls floods a guest that never reads its device: the
// host's writes are refused once the bounded queue is full, the monitor's
// memory does not grow with the flood, and the guest still stops on time.
func TestNetGuestNeverPolls(t *testing.T) {
	for _, b := range backends(t) {
		h := newHost(t, b)
		dev, ep, err := netdev.NewPipe()
		require.NoError(t, err)
		defer dev.Close()
		defer ep.Close()
		var out lockedBuffer
		vm, err := h.New(monitor.Config{ELF: readGuest(t, "net_deaf"), Console: &out, Net: map[string]netdev.Device{"net0": dev}})
		require.NoError(t, err)
		defer vm.Close()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			_, err := vm.Run(ctx)
			done <- err
		}()
		require.Eventually(t, func() bool { return strings.Contains(out.String(), "never reads") }, 10*time.Second, time.Millisecond)
		before := rssKiB()
		frame := make([]byte, 1514)
		var sent, dropped int
		for range 100_000 {
			switch err := ep.WriteFrame(frame); {
			case err == nil:
				sent++
			case errors.Is(err, netdev.ErrDropped):
				dropped++
			default:
				t.Fatalf("%s: write: %v", b, err)
			}
		}
		grew := rssKiB() - before
		t.Logf("%s: %d frames queued, %d refused, RSS grew %d KiB", b, sent, dropped, grew)
		assert.Positive(t, dropped, "the queue is bounded")
		assert.Less(t, grew, int64(32<<10), "the flood must not accumulate in the monitor")
		cancel()
		select {
		case err := <-done:
			assert.ErrorIs(t, err, context.Canceled)
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: guest not stopped", b)
		}
	}
}
