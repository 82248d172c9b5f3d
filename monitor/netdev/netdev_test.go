package netdev

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func testFrame(n int, fill byte) []byte {
	b := bytes.Repeat([]byte{fill}, n)
	if n >= HeaderLen {
		copy(b, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 1, 0x88, 0xb5})
	}
	return b
}

func readable(t *testing.T, fd int, timeout time.Duration) bool {
	t.Helper()
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	n, err := unix.Poll(pfd, int(timeout/time.Millisecond))
	require.NoError(t, err)
	return n == 1
}

func TestRandomMAC(t *testing.T) {
	seen := map[[6]byte]bool{}
	for range 100 {
		m := RandomMAC()
		assert.Equal(t, byte(2), m[0]&3, "locally administered unicast: %x", m)
		seen[m] = true
	}
	assert.Greater(t, len(seen), 95)
}

func TestPipe(t *testing.T) {
	g, h, err := NewPipe()
	require.NoError(t, err)
	defer g.Close()
	defer h.Close()
	assert.Equal(t, DefaultMTU, g.MTU())
	assert.Equal(t, g.MAC(), h.GuestMAC())
	assert.Equal(t, g.MTU(), h.MTU())

	buf := make([]byte, 2048)
	_, err = g.ReadFrame(buf)
	assert.ErrorIs(t, err, ErrNoFrame)
	assert.False(t, readable(t, g.FD(), 0))

	// Host to guest, frames keep their boundaries.
	a, b := testFrame(60, 1), testFrame(1514, 2)
	require.NoError(t, h.WriteFrame(a))
	require.NoError(t, h.WriteFrame(b))
	assert.True(t, readable(t, g.FD(), time.Second))
	n, err := g.ReadFrame(buf)
	require.NoError(t, err)
	assert.Equal(t, a, buf[:n])
	n, err = g.ReadFrame(buf)
	require.NoError(t, err)
	assert.Equal(t, b, buf[:n])

	// A frame longer than the buffer: its length, then it is gone.
	require.NoError(t, h.WriteFrame(testFrame(1000, 3)))
	require.NoError(t, h.WriteFrame(testFrame(20, 4)))
	small := make([]byte, 100)
	n, err = g.ReadFrame(small)
	assert.ErrorIs(t, err, ErrTruncated)
	assert.Equal(t, 1000, n)
	n, err = g.ReadFrame(small)
	require.NoError(t, err)
	assert.Equal(t, testFrame(20, 4), small[:n])

	// Guest to host.
	require.NoError(t, g.WriteFrame(a))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got, err := h.ReadFrame(ctx)
	require.NoError(t, err)
	assert.Equal(t, a, got)
	assert.ErrorIs(t, g.WriteFrame(testFrame(13, 0)), ErrTooShort)
	assert.ErrorIs(t, g.WriteFrame(testFrame(1515, 0)), ErrTooLarge)
	require.NoError(t, g.WriteFrame(testFrame(1514, 0)))
	got, err = h.ReadFrame(ctx)
	require.NoError(t, err)
	assert.Len(t, got, 1514)

	// The endpoint sends any non-empty size, for tests of guests.
	assert.ErrorContains(t, h.WriteFrame(nil), "frame of 0 bytes: want 1 to")
	assert.ErrorContains(t, h.WriteFrame(make([]byte, MaxPipeFrame+1)), fmt.Sprintf("frame of %d bytes: want 1 to %d", MaxPipeFrame+1, MaxPipeFrame))
	require.NoError(t, h.WriteFrame(make([]byte, MaxPipeFrame)))
	n, err = g.ReadFrame(buf)
	assert.ErrorIs(t, err, ErrTruncated)
	assert.Equal(t, MaxPipeFrame, n)
}

func TestPipeBounded(t *testing.T) {
	g, h, err := NewPipe()
	require.NoError(t, err)
	defer g.Close()
	defer h.Close()
	// Host to guest: the queue fills, then frames are dropped.
	sent, dropped := 0, 0
	for range 100000 {
		switch err := h.WriteFrame(testFrame(1514, 7)); {
		case err == nil:
			sent++
		case errors.Is(err, ErrDropped):
			dropped++
		default:
			t.Fatal(err)
		}
	}
	t.Logf("host to guest: %d queued, %d dropped", sent, dropped)
	assert.Greater(t, sent, 10)
	assert.Less(t, sent, 1000, "the queue is bounded")
	buf := make([]byte, 2048)
	for k := range sent {
		_, err := g.ReadFrame(buf)
		require.NoError(t, err, "frame %d", k)
	}
	_, err = g.ReadFrame(buf)
	assert.ErrorIs(t, err, ErrNoFrame)

	// Guest to host likewise.
	sent, dropped = 0, 0
	for range 100000 {
		if err := g.WriteFrame(testFrame(60, 7)); err == nil {
			sent++
		} else {
			require.ErrorIs(t, err, ErrDropped)
			dropped++
		}
	}
	t.Logf("guest to host: %d queued, %d dropped", sent, dropped)
	assert.Less(t, sent, 5000)
	assert.Positive(t, dropped)
}

func TestPipeEndpointContext(t *testing.T) {
	g, h, err := NewPipe()
	require.NoError(t, err)
	defer g.Close()
	defer h.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = h.ReadFrame(ctx)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Less(t, time.Since(start), time.Second)

	ctx, cancel = context.WithCancel(context.Background())
	go func() { time.Sleep(20 * time.Millisecond); cancel() }()
	_, err = h.ReadFrame(ctx)
	assert.ErrorIs(t, err, context.Canceled)
	_, err = h.ReadFrame(ctx)
	assert.ErrorIs(t, err, context.Canceled)

	// After a cancelled read the endpoint still works.
	require.NoError(t, g.WriteFrame(testFrame(60, 1)))
	got, err := h.ReadFrame(context.Background())
	require.NoError(t, err)
	assert.Len(t, got, 60)

	// Close wakes a reader.
	done := make(chan error, 1)
	go func() {
		_, err := h.ReadFrame(context.Background())
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	require.NoError(t, h.Close())
	select {
	case err := <-done:
		assert.ErrorIs(t, err, ErrClosed)
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not wake the reader")
	}
	assert.ErrorIs(t, h.WriteFrame(testFrame(60, 1)), ErrClosed)
	assert.ErrorIs(t, h.Close(), ErrClosed)

	// The guest side sees the host end closed.
	buf := make([]byte, 100)
	assert.True(t, readable(t, g.FD(), time.Second), "a hang-up wakes poll")
	_, err = g.ReadFrame(buf)
	assert.ErrorIs(t, err, ErrClosed)
	assert.ErrorIs(t, g.WriteFrame(testFrame(60, 1)), ErrClosed)
	require.NoError(t, g.Close())
	_, err = g.ReadFrame(buf)
	assert.ErrorIs(t, err, ErrClosed)
	assert.ErrorIs(t, g.Close(), ErrClosed)
}

func TestPipeGuestClosed(t *testing.T) {
	g, h, err := NewPipe()
	require.NoError(t, err)
	defer h.Close()
	require.NoError(t, g.Close())
	_, err = h.ReadFrame(context.Background())
	assert.ErrorIs(t, err, ErrClosed)
}

// needTAP skips a test without the rights to create TAP devices, unless
// TENDER_REQUIRE_NET=1 (as CI sets), where a missing capability must fail
// rather than hide as a skip.
func needTAP(t *testing.T) {
	t.Helper()
	skip := func(format string, args ...any) {
		t.Helper()
		if os.Getenv("TENDER_REQUIRE_NET") == "1" {
			t.Fatalf("TENDER_REQUIRE_NET=1 but "+format, args...)
		}
		t.Skipf(format+" (set TENDER_REQUIRE_NET=1 to make this a failure)", args...)
	}
	if os.Geteuid() != 0 {
		skip("TAP tests need root (CAP_NET_ADMIN)")
	}
	if _, err := os.Stat(tunDevice); err != nil {
		skip("TAP tests need %s: %v", tunDevice, err)
	}
}

// inNewNetns moves the test's goroutine, locked to its thread, into a fresh
// network namespace until the test ends: whatever the test creates there
// (TAPs, sockets) is invisible to the host and gone with the namespace.
func inNewNetns(t *testing.T) {
	t.Helper()
	runtime.LockOSThread()
	orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		unix.Close(orig)
		runtime.UnlockOSThread()
		t.Fatalf("unshare(CLONE_NEWNET): %v", err)
	}
	t.Cleanup(func() {
		// If the thread cannot go back it stays locked, and Go retires it
		// when the goroutine ends.
		if unix.Setns(orig, unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		unix.Close(orig)
	})
}

// setUp brings an interface up in the current namespace.
func setUp(t *testing.T, name string) {
	t.Helper()
	s, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	defer unix.Close(s)
	ifr, err := unix.NewIfreq(name)
	require.NoError(t, err)
	require.NoError(t, unix.IoctlIfreq(s, unix.SIOCGIFFLAGS, ifr))
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	require.NoError(t, unix.IoctlIfreq(s, unix.SIOCSIFFLAGS, ifr))
}

// packetSocket returns an AF_PACKET socket bound to the interface: it sees
// the frames the TAP's reader writes, and what it sends reaches the reader.
func packetSocket(t *testing.T, name string) int {
	t.Helper()
	proto := int(htons(unix.ETH_P_ALL))
	s, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
	require.NoError(t, err)
	t.Cleanup(func() { unix.Close(s) })
	ifi, err := interfaceIndex(name)
	require.NoError(t, err)
	require.NoError(t, unix.Bind(s, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi}))
	require.NoError(t, unix.SetsockoptTimeval(s, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 5}))
	return s
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func interfaceIndex(name string) (int, error) {
	r, err := interfaceIoctl(name, unix.SIOCGIFINDEX)
	if err != nil {
		return 0, err
	}
	return int(r.uint16()) | int(r.Data[2])<<16 | int(r.Data[3])<<24, nil
}

func TestTAP(t *testing.T) {
	needTAP(t)
	inNewNetns(t)
	tap, err := OpenTAP("tndtest0")
	require.NoError(t, err)
	defer tap.Close()
	assert.Equal(t, "tndtest0", tap.Name())
	assert.Equal(t, 1500, tap.MTU())
	hw, err := interfaceHWAddr("tndtest0")
	require.NoError(t, err)
	mac := tap.MAC()
	assert.NotEqual(t, hw, mac[:], "the guest's MAC is not the interface's")
	assert.Equal(t, byte(2), mac[0]&3)

	setUp(t, "tndtest0")
	ps := packetSocket(t, "tndtest0")
	buf := make([]byte, 2048)
	// Drain what the kernel sends on a fresh link (IPv6 router
	// solicitations and the like) before checking for silence.
	for {
		if _, err := tap.ReadFrame(buf); errors.Is(err, ErrNoFrame) {
			break
		}
	}

	// Guest to host: the frame appears on the interface.
	out := testFrame(100, 0x42)
	require.NoError(t, tap.WriteFrame(out))
	for {
		n, _, err := unix.Recvfrom(ps, buf, 0)
		require.NoError(t, err, "the frame never appeared on the interface")
		if bytes.Equal(buf[:n], out) {
			break
		}
	}
	assert.ErrorIs(t, tap.WriteFrame(testFrame(1515, 0)), ErrTooLarge)
	assert.ErrorIs(t, tap.WriteFrame(testFrame(10, 0)), ErrTooShort)

	// Host to guest: a frame sent on the interface reaches the reader,
	// whole or, into a short buffer, measured.
	ifi, err := interfaceIndex("tndtest0")
	require.NoError(t, err)
	to := &unix.SockaddrLinklayer{Ifindex: ifi, Halen: 6}
	in := testFrame(300, 0x17)
	// next returns the next frame of 300 bytes (the kernel may send others).
	next := func(p []byte) (int, error) {
		for {
			n, err := tap.ReadFrame(p)
			if errors.Is(err, ErrNoFrame) {
				require.True(t, readable(t, tap.FD(), 5*time.Second), "no frame arrived")
				continue
			}
			if n == 300 {
				return n, err
			}
		}
	}
	require.NoError(t, unix.Sendto(ps, in, 0, to))
	n, err := next(buf)
	require.NoError(t, err)
	assert.Equal(t, in, buf[:n])
	require.NoError(t, unix.Sendto(ps, in, 0, to))
	_, err = next(make([]byte, 50))
	assert.ErrorIs(t, err, ErrTruncated)

	// TAPFromFD adopts a second descriptor of the same TAP... and refuses
	// what is no suitable TAP.
	fd, err := unix.Open(tunDevice, unix.O_RDWR|unix.O_CLOEXEC, 0)
	require.NoError(t, err)
	_, err = TAPFromFD(fd)
	assert.ErrorContains(t, err, "is not an attached TUN/TAP device")
	attach := func(fd int, name string, flags uint16) {
		ifr, err := unix.NewIfreq(name)
		require.NoError(t, err)
		ifr.SetUint16(flags)
		require.NoError(t, unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr))
	}
	attach(fd, "tndtun0", unix.IFF_TUN|unix.IFF_NO_PI)
	_, err = TAPFromFD(fd)
	assert.ErrorContains(t, err, "is a TUN device")
	unix.Close(fd)

	fd, err = unix.Open(tunDevice, unix.O_RDWR|unix.O_CLOEXEC, 0)
	require.NoError(t, err)
	attach(fd, "tndtest1", unix.IFF_TAP)
	_, err = TAPFromFD(fd)
	assert.ErrorContains(t, err, "without IFF_NO_PI")
	unix.Close(fd)

	// TUNGETIFF reports IFF_NOFILTER in IFF_NO_PI's bit: with a socket
	// filter attached by the orchestrator, both answers are still right,
	// and the filter stays.
	acceptAll := []unix.SockFilter{{Code: unix.BPF_RET | unix.BPF_K, K: 0xffffffff}}
	prog := unix.SockFprog{Len: 1, Filter: &acceptAll[0]}
	filtered := func(name string, flags uint16) int {
		fd, err := unix.Open(tunDevice, unix.O_RDWR|unix.O_CLOEXEC, 0)
		require.NoError(t, err)
		attach(fd, name, flags)
		require.NoError(t, ioctlPtr(fd, unix.TUNATTACHFILTER, unsafe.Pointer(&prog)))
		return fd
	}
	fd = filtered("tndtest4", unix.IFF_TAP)
	_, err = TAPFromFD(fd)
	assert.ErrorContains(t, err, "without IFF_NO_PI")
	unix.Close(fd)
	fd = filtered("tndtest5", unix.IFF_TAP|unix.IFF_NO_PI)
	t5, err := TAPFromFD(fd)
	require.NoError(t, err)
	var cur unix.SockFprog
	require.NoError(t, ioctlPtr(fd, unix.TUNGETFILTER, unsafe.Pointer(&cur)))
	assert.Equal(t, uint16(1), cur.Len, "the orchestrator's filter is kept")
	t5.Close()

	fd, err = unix.Open(tunDevice, unix.O_RDWR|unix.O_CLOEXEC, 0)
	require.NoError(t, err)
	attach(fd, "tndtest2", unix.IFF_TAP|unix.IFF_NO_PI|unix.IFF_VNET_HDR)
	_, err = TAPFromFD(fd)
	assert.ErrorContains(t, err, "IFF_VNET_HDR")
	unix.Close(fd)

	fd, err = unix.Open(tunDevice, unix.O_RDWR|unix.O_CLOEXEC, 0) // blocking
	require.NoError(t, err)
	attach(fd, "tndtest3", unix.IFF_TAP|unix.IFF_NO_PI)
	s, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	ifr, _ := unix.NewIfreq("tndtest3")
	ifr.SetUint32(9000)
	require.NoError(t, unix.IoctlIfreq(s, unix.SIOCSIFMTU, ifr))
	unix.Close(s)
	setUp(t, "tndtest3")
	t3, err := TAPFromFD(fd)
	require.NoError(t, err)
	defer t3.Close()
	assert.Equal(t, "tndtest3", t3.Name())
	assert.Equal(t, 9000, t3.MTU(), "the MTU of an interface in our namespace")
	fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	require.NoError(t, err)
	assert.NotZero(t, fl&unix.O_NONBLOCK)
	_, err = t3.ReadFrame(buf)
	assert.ErrorIs(t, err, ErrNoFrame, "non-blocking")
	require.NoError(t, t3.WriteFrame(testFrame(9014, 1)))
	assert.ErrorIs(t, t3.WriteFrame(testFrame(9015, 1)), ErrTooLarge)

	_, err = TAPFromFD(-1)
	assert.ErrorContains(t, err, "TAP fd -1: not a file descriptor")
	require.NoError(t, tap.Close())
	assert.ErrorIs(t, tap.Close(), ErrClosed)
	_, err = tap.ReadFrame(buf)
	assert.ErrorIs(t, err, ErrClosed)
}

func TestOpenTAPErrors(t *testing.T) {
	_, err := OpenTAP("0123456789abcdefg")
	assert.ErrorContains(t, err, `TAP name "0123456789abcdefg"`)
	needTAP(t)
	inNewNetns(t)
	_, err = OpenTAP("lo")
	assert.ErrorContains(t, err, `attach TAP "lo"`)
}

func TestMTUClamp(t *testing.T) {
	assert.Equal(t, MinMTU, clampMTU(0))
	assert.Equal(t, 1500, clampMTU(1500))
	assert.Equal(t, MaxMTU, clampMTU(65521))
}
