package netdev

import (
	"bytes"
	"errors"
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TAP is a Linux TAP interface: frames the guest writes enter the host's
// network stack on that interface, and frames the host sends out of it reach
// the guest. The kernel's queue for the interface (its txqueuelen, 1000
// frames by default) bounds what waits for the guest; the kernel drops
// beyond it.
type TAP struct {
	fdDevice
	name    string
	scratch []byte
}

// tunDevice is the clone device that creates and attaches TUN/TAP interfaces.
const tunDevice = "/dev/net/tun"

// OpenTAP attaches to the TAP interface name, creating it if it does not
// exist (a created interface disappears again when it is closed), in the
// network namespace of the calling thread. It needs CAP_NET_ADMIN, or a
// persistent TAP whose owner is the caller. The device is used without
// packet information headers (IFF_NO_PI) and in non-blocking mode. Its MTU
// is the interface's, clamped to [MinMTU, MaxMTU]; the guest gets a random
// locally administered MAC address of its own (not the interface's).
func OpenTAP(name string) (*TAP, error) {
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return nil, fmt.Errorf("netdev: TAP name %q: %w", name, err)
	}
	fd, err := unix.Open(tunDevice, unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("netdev: open %s: %w", tunDevice, err)
	}
	ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		if errors.Is(err, unix.EPERM) {
			return nil, fmt.Errorf("netdev: attach TAP %q: %w (needs CAP_NET_ADMIN, or a persistent TAP owned by this user)", name, err)
		}
		return nil, fmt.Errorf("netdev: attach TAP %q: %w (is %q a TAP interface?)", name, err, name)
	}
	t := newTAP(fd, ifr.Name())
	if mtu, err := interfaceMTU(t.name); err == nil {
		t.mtu = clampMTU(mtu)
	}
	return t, nil
}

// TAPFromFD adopts fd, an open TAP file descriptor handed over by an
// orchestrator (inherited, or received over a Unix socket), and takes
// ownership of it: Close closes it. The descriptor must be attached to a TAP
// interface (TUNSETIFF with IFF_TAP) without packet information or virtio
// headers (IFF_NO_PI set, IFF_VNET_HDR clear). It is switched to
// non-blocking mode, which also affects other holders of the same open file.
// The MTU is the interface's when it is visible from the caller's network
// namespace, else DefaultMTU.
func TAPFromFD(fd int) (*TAP, error) {
	if fd < 0 {
		return nil, fmt.Errorf("netdev: TAP fd %d: not a file descriptor", fd)
	}
	var ifr ifreq
	if err := ioctlPtr(fd, unix.TUNGETIFF, unsafe.Pointer(&ifr)); err != nil {
		return nil, fmt.Errorf("netdev: fd %d is not an attached TUN/TAP device (TUNGETIFF: %w)", fd, err)
	}
	name := ifr.name()
	flags := ifr.uint16()
	switch {
	case flags&(unix.IFF_TUN|unix.IFF_TAP) != unix.IFF_TAP:
		return nil, fmt.Errorf("netdev: fd %d (%s) is a TUN device; want a TAP (Ethernet frames)", fd, name)
	case flags&unix.IFF_VNET_HDR != 0:
		return nil, fmt.Errorf("netdev: fd %d (%s) was attached with IFF_VNET_HDR; tender exchanges bare frames", fd, name)
	}
	if noPI, err := hasNoPI(fd, flags); err != nil {
		return nil, fmt.Errorf("netdev: fd %d (%s): %w", fd, name, err)
	} else if !noPI {
		return nil, fmt.Errorf("netdev: fd %d (%s) was attached without IFF_NO_PI; tender exchanges bare frames", fd, name)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		return nil, fmt.Errorf("netdev: fd %d (%s): set non-blocking: %w", fd, name, err)
	}
	t := newTAP(fd, name)
	// The interface name is looked up in the caller's namespace, which need
	// not be the TAP's: trust its MTU only if it is the same interface.
	var own ifreq
	if ioctlPtr(fd, unix.SIOCGIFHWADDR, unsafe.Pointer(&own)) == nil {
		if hw, err := interfaceHWAddr(name); err == nil && bytes.Equal(hw, own.hwaddr()) {
			if mtu, err := interfaceMTU(name); err == nil {
				t.mtu = clampMTU(mtu)
			}
		}
	}
	return t, nil
}

// hasNoPI reports whether the TAP behind fd was attached with IFF_NO_PI.
// TUNGETIFF cannot say it alone: it reports the read-only IFF_NOFILTER (this
// queue has no socket filter) in the same bit. So with that bit set and no
// filter attached, a filter that accepts everything is attached for a moment
// (which changes nothing the TAP delivers) to read the flags without it.
func hasNoPI(fd int, flags uint16) (bool, error) {
	const noPI = unix.IFF_NO_PI // == IFF_NOFILTER
	if flags&noPI == 0 {
		return false, nil // a filter is attached and PI is on
	}
	var cur unix.SockFprog
	if ioctlPtr(fd, unix.TUNGETFILTER, unsafe.Pointer(&cur)) == nil && cur.Len > 0 {
		// The orchestrator attached a filter, so the bit is IFF_NO_PI;
		// do not replace its filter with ours.
		return true, nil
	}
	acceptAll := []unix.SockFilter{{Code: unix.BPF_RET | unix.BPF_K, K: 0xffffffff}}
	prog := unix.SockFprog{Len: 1, Filter: &acceptAll[0]}
	if err := ioctlPtr(fd, unix.TUNATTACHFILTER, unsafe.Pointer(&prog)); err != nil {
		return false, fmt.Errorf("probe IFF_NO_PI (TUNATTACHFILTER): %w", err)
	}
	var ifr ifreq
	err := ioctlPtr(fd, unix.TUNGETIFF, unsafe.Pointer(&ifr))
	derr := ioctlPtr(fd, unix.TUNDETACHFILTER, unsafe.Pointer(&prog))
	runtime.KeepAlive(acceptAll)
	if err != nil {
		return false, fmt.Errorf("TUNGETIFF: %w", err)
	}
	if derr != nil {
		return false, fmt.Errorf("probe IFF_NO_PI (TUNDETACHFILTER): %w", derr)
	}
	return ifr.uint16()&noPI != 0, nil
}

func newTAP(fd int, name string) *TAP {
	return &TAP{fdDevice: fdDevice{fd: fd, mac: RandomMAC(), mtu: DefaultMTU}, name: name, scratch: make([]byte, scratchLen)}
}

// Name is the interface name.
func (t *TAP) Name() string { return t.name }

// ReadFrame implements Device.
func (t *TAP) ReadFrame(p []byte) (int, error) {
	if t.fd < 0 {
		return 0, ErrClosed
	}
	for {
		// The scratch buffer takes the part of a long frame that does not
		// fit, so its full length is known.
		n, err := unix.Readv(t.fd, [][]byte{p, t.scratch})
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return 0, ErrNoFrame
		case err != nil:
			return 0, fmt.Errorf("netdev: %s: read: %w", t.name, err)
		case n > len(p):
			return n, ErrTruncated
		}
		return n, nil
	}
}

// WriteFrame implements Device.
func (t *TAP) WriteFrame(frame []byte) error {
	if t.fd < 0 {
		return ErrClosed
	}
	if err := checkWrite(frame, t.mtu); err != nil {
		return err
	}
	for {
		_, err := unix.Write(t.fd, frame)
		switch err {
		case nil:
			return nil
		case unix.EINTR:
			continue
		case unix.EAGAIN, unix.ENOBUFS:
			return ErrDropped
		}
		return fmt.Errorf("netdev: %s: write: %w", t.name, err)
	}
}

// ifreq is struct ifreq: the interface name, then a 24-byte union.
type ifreq struct {
	Name [unix.IFNAMSIZ]byte
	Data [24]byte
}

func (r *ifreq) name() string {
	if i := bytes.IndexByte(r.Name[:], 0); i >= 0 {
		return string(r.Name[:i])
	}
	return string(r.Name[:])
}

func (r *ifreq) uint16() uint16 { return *(*uint16)(unsafe.Pointer(&r.Data[0])) }

// hwaddr is ifr_hwaddr.sa_data's Ethernet address.
func (r *ifreq) hwaddr() []byte { return r.Data[2:8] }

func ioctlPtr(fd int, req uint, arg unsafe.Pointer) error {
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uintptr(req), uintptr(arg))
	if errno != 0 {
		return errno
	}
	return nil
}

// interfaceIoctl issues an interface ioctl on a throwaway socket in the
// calling thread's network namespace.
func interfaceIoctl(name string, req uint) (*ifreq, error) {
	s, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(s)
	var r ifreq
	copy(r.Name[:unix.IFNAMSIZ-1], name)
	if err := ioctlPtr(s, req, unsafe.Pointer(&r)); err != nil {
		return nil, err
	}
	return &r, nil
}

func interfaceMTU(name string) (int, error) {
	r, err := interfaceIoctl(name, unix.SIOCGIFMTU)
	if err != nil {
		return 0, err
	}
	return int(*(*int32)(unsafe.Pointer(&r.Data[0]))), nil
}

func interfaceHWAddr(name string) ([]byte, error) {
	r, err := interfaceIoctl(name, unix.SIOCGIFHWADDR)
	if err != nil {
		return nil, err
	}
	return r.hwaddr(), nil
}
