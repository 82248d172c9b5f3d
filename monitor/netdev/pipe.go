package netdev

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// PipeBuffer is the socket buffer size requested for each end of a Pipe;
// the kernel doubles it for its bookkeeping, so each direction queues about
// 256 KiB of frames (some 100 full-size frames, more small ones) before
// further frames are dropped.
const PipeBuffer = 128 << 10

// MaxPipeFrame is the longest frame an Endpoint sends or receives.
const MaxPipeFrame = scratchLen - 1

// NewPipe makes an in-process network link: the guest's device, to be given
// to the monitor, and the host's Endpoint, with which Go code exchanges
// frames with the guest. Each direction is a kernel socket queue (a
// SOCK_SEQPACKET socket pair, one frame per message), so nothing waits in
// the monitor's memory. The guest side has MTU DefaultMTU and a random
// locally administered MAC. Close both when done.
func NewPipe() (Device, *Endpoint, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("netdev: socketpair: %w", err)
	}
	for _, fd := range fds {
		// Best effort: without it the kernel's default buffer applies.
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, PipeBuffer)
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, PipeBuffer)
	}
	g := &pipeDev{fdDevice{fd: fds[0], mac: RandomMAC(), mtu: DefaultMTU}}
	f := os.NewFile(uintptr(fds[1]), "tender-pipe")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		unix.Close(fds[0])
		return nil, nil, fmt.Errorf("netdev: pipe: %w", err)
	}
	e := &Endpoint{f: f, rc: rc, mac: g.mac, mtu: g.mtu, buf: make([]byte, scratchLen)}
	return g, e, nil
}

// pipeDev is the guest's end of a Pipe.
type pipeDev struct{ fdDevice }

func (d *pipeDev) ReadFrame(p []byte) (int, error) {
	if d.fd < 0 {
		return 0, ErrClosed
	}
	for {
		// MSG_TRUNC makes a seqpacket receive return the message's full
		// length even when p is shorter.
		n, _, err := unix.Recvfrom(d.fd, p, unix.MSG_DONTWAIT|unix.MSG_TRUNC)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return 0, ErrNoFrame
		case err != nil:
			return 0, fmt.Errorf("netdev: pipe: read: %w", err)
		case n == 0:
			// Endpoints never send empty frames: the host end is closed.
			return 0, ErrClosed
		case n > len(p):
			return n, ErrTruncated
		}
		return n, nil
	}
}

func (d *pipeDev) WriteFrame(frame []byte) error {
	if d.fd < 0 {
		return ErrClosed
	}
	if err := checkWrite(frame, d.mtu); err != nil {
		return err
	}
	return send(d.fd, frame)
}

// send queues one message without blocking.
func send(fd int, frame []byte) error {
	for {
		err := unix.Sendto(fd, frame, unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL, nil)
		switch err {
		case nil:
			return nil
		case unix.EINTR:
			continue
		case unix.EAGAIN, unix.ENOBUFS:
			return ErrDropped
		case unix.EPIPE, unix.ECONNRESET, unix.ENOTCONN:
			return ErrClosed
		}
		return fmt.Errorf("netdev: pipe: write: %w", err)
	}
}

// Endpoint is the host's end of a Pipe: what it writes the guest reads, and
// the reverse. ReadFrame and WriteFrame may be called from different
// goroutines; ReadFrame from one goroutine at a time.
type Endpoint struct {
	f      *os.File
	rc     syscall.RawConn
	mac    [6]byte
	mtu    int
	closed atomic.Bool

	rmu sync.Mutex // serialises readers, who share buf
	buf []byte
}

// GuestMAC is the guest's MAC address on the link.
func (e *Endpoint) GuestMAC() [6]byte { return e.mac }

// MTU is the guest device's MTU.
func (e *Endpoint) MTU() int { return e.mtu }

// WriteFrame queues frame for the guest without blocking. It returns
// ErrDropped when the guest's queue is full (the frame is lost, as on a busy
// link) and ErrClosed once either end is closed. Any length from 1 to
// MaxPipeFrame is sent as it is, so that tests can hand a guest runts and
// oversized frames; the monitor drops those before the guest sees them.
func (e *Endpoint) WriteFrame(frame []byte) error {
	if e.closed.Load() {
		return ErrClosed
	}
	if len(frame) == 0 || len(frame) > MaxPipeFrame {
		return fmt.Errorf("netdev: pipe: frame of %d bytes: want 1 to %d", len(frame), MaxPipeFrame)
	}
	var werr error
	err := e.rc.Write(func(fd uintptr) bool {
		werr = send(int(fd), frame)
		return true
	})
	if err != nil {
		return ErrClosed
	}
	return werr
}

// ReadFrame waits for the next frame from the guest and returns a copy of
// it. It returns ctx's error when ctx ends first, and ErrClosed when either
// end is closed.
func (e *Endpoint) ReadFrame(ctx context.Context) ([]byte, error) {
	e.rmu.Lock()
	defer e.rmu.Unlock()
	if e.closed.Load() {
		return nil, ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// A context that ends sets a past read deadline, which wakes the read;
	// it is cleared before returning, once the callback is known to be done.
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		e.f.SetReadDeadline(time.Unix(1, 0))
		close(fired)
	})
	defer func() {
		if !stop() {
			<-fired
			e.f.SetReadDeadline(time.Time{})
		}
	}()
	var (
		n    int
		rerr error
	)
	err := e.rc.Read(func(fd uintptr) bool {
		for {
			n, _, rerr = unix.Recvfrom(int(fd), e.buf, unix.MSG_DONTWAIT|unix.MSG_TRUNC)
			if rerr != unix.EINTR {
				return rerr != unix.EAGAIN
			}
		}
	})
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		if cerr := ctx.Err(); cerr != nil {
			return nil, cerr
		}
		return nil, err
	case err != nil || e.closed.Load():
		return nil, ErrClosed
	case rerr != nil:
		return nil, fmt.Errorf("netdev: pipe: read: %w", rerr)
	case n == 0:
		return nil, ErrClosed // the guest's end is closed
	case n > len(e.buf):
		return nil, fmt.Errorf("netdev: pipe: frame of %d bytes over %d", n, len(e.buf))
	}
	return append([]byte(nil), e.buf[:n]...), nil
}

// Close closes the host's end; the guest's device then reports ErrClosed.
// A ReadFrame in progress returns ErrClosed.
func (e *Endpoint) Close() error {
	if e.closed.Swap(true) {
		return ErrClosed
	}
	return e.f.Close()
}
