// Package netdev provides the host side of a guest's network devices: the
// Ethernet frame queues the monitor moves frames through when a guest issues
// the net_write and net_read hypercalls.
//
// A Device carries whole Ethernet frames (destination MAC first, no preamble
// and no FCS) between one guest and the host. It never blocks: ReadFrame
// returns ErrNoFrame when nothing is pending, and the monitor waits for input
// with poll(2) on FD. Nothing is buffered in the monitor: the only queues are
// the kernel's (the TAP device's queue, or the socket buffers of a Pipe), so
// a host that floods a guest costs bounded memory and frames beyond the queue
// are dropped, as on a real link.
//
// Backends:
//
//   - OpenTAP creates or attaches to a TAP interface by name (needs
//     CAP_NET_ADMIN, or a persistent TAP owned by the caller).
//   - TAPFromFD adopts an open TAP file descriptor handed over by an
//     orchestrator.
//   - NewPipe connects the guest to Go code in the same process through a
//     socket pair: for library users and tests, no privileges needed.
//
// Devices are used by one goroutine at a time (the VM's vCPU thread while it
// runs). The VM does not own its devices: whoever opened one closes it, after
// the run.
package netdev

import (
	"errors"
	"math/rand/v2"
)

// Frame geometry.
const (
	// HeaderLen is the length of an Ethernet header (two MAC addresses and
	// the EtherType); a frame is never shorter.
	HeaderLen = 14
	// DefaultMTU is the MTU of a Pipe, and of a TAP whose MTU cannot be read.
	DefaultMTU = 1500
	// MinMTU is the smallest MTU a device reports (the IPv4 minimum).
	MinMTU = 68
	// MaxMTU is the largest MTU a device reports: a TAP with a larger MTU is
	// used with this one (jumbo frames of 9000 bytes are the usual ceiling,
	// and a guest sizes its buffers from it).
	MaxMTU = 9000
	// scratchLen is large enough for any frame a TAP or socket can hold, so
	// a frame longer than a reader's buffer is measured, then dropped.
	scratchLen = 64 << 10
)

// Errors of Device methods.
var (
	// ErrNoFrame: ReadFrame found no frame pending.
	ErrNoFrame = errors.New("netdev: no frame pending")
	// ErrTruncated: the pending frame was longer than ReadFrame's buffer;
	// it was dropped, and ReadFrame reported its length.
	ErrTruncated = errors.New("netdev: frame longer than the buffer, dropped")
	// ErrTooLarge: WriteFrame was given a frame longer than MTU+HeaderLen.
	ErrTooLarge = errors.New("netdev: frame longer than the MTU plus the Ethernet header")
	// ErrTooShort: WriteFrame was given a frame shorter than HeaderLen.
	ErrTooShort = errors.New("netdev: frame shorter than an Ethernet header")
	// ErrDropped: the queue towards the other side is full; the frame was
	// dropped (a network may lose frames; the sender's protocols recover).
	ErrDropped = errors.New("netdev: queue full, frame dropped")
	// ErrClosed: the device, or the other end of a Pipe, is closed.
	ErrClosed = errors.New("netdev: device closed")
)

// Device is one network device as the monitor sees it.
type Device interface {
	// ReadFrame copies the next received frame into p without blocking and
	// returns its length. With no frame pending it returns ErrNoFrame. A
	// frame longer than p is dropped: ReadFrame returns its full length and
	// ErrTruncated (p holds its first len(p) bytes).
	ReadFrame(p []byte) (int, error)
	// WriteFrame sends one frame without blocking. Frames shorter than
	// HeaderLen or longer than MTU()+HeaderLen are refused (ErrTooShort,
	// ErrTooLarge); ErrDropped means the frame was lost to a full queue.
	WriteFrame(frame []byte) error
	// FD is a file descriptor that poll(2) reports readable (POLLIN) while
	// a frame is pending.
	FD() int
	// MAC is the guest's MAC address on this device.
	MAC() [6]byte
	// MTU is the largest IP packet; frames are up to MTU()+HeaderLen bytes.
	MTU() int
	// Close releases the device. It must not be called while a VM using it
	// runs.
	Close() error
}

// RandomMAC returns a random locally administered, unicast MAC address.
func RandomMAC() [6]byte {
	// math/rand/v2's generator is seeded per process by the runtime; a MAC
	// needs no more, and crypto/rand would link (and initialise) the whole
	// FIPS module into every tender binary.
	var m [6]byte
	v := rand.Uint64()
	for i := range m {
		m[i] = byte(v >> (8 * i))
	}
	m[0] = m[0]&^1 | 2 // unicast, locally administered
	return m
}

// checkWrite applies the frame size rules of WriteFrame.
func checkWrite(frame []byte, mtu int) error {
	switch {
	case len(frame) < HeaderLen:
		return ErrTooShort
	case len(frame) > mtu+HeaderLen:
		return ErrTooLarge
	}
	return nil
}

// clampMTU keeps an interface MTU within what devices report.
func clampMTU(mtu int) int {
	return min(max(mtu, MinMTU), MaxMTU)
}
