package monitor

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tendervm/tender/hypercall"
	"github.com/tendervm/tender/monitor/loader"
	"github.com/tendervm/tender/monitor/netdev"
	"github.com/tendervm/tender/monitor/vcpu"
)

// NetStats counts one network device's traffic during a run.
type NetStats struct {
	// Name is the device's name in the guest's manifest.
	Name string
	// FramesOut and BytesOut count the frames the guest sent (net_write
	// with ResultOK), including those dropped by a full host queue.
	FramesOut, BytesOut uint64
	// FramesIn and BytesIn count the frames the guest received.
	FramesIn, BytesIn uint64
	// DroppedOut counts frames the guest sent that a full host queue lost.
	DroppedOut uint64
	// DroppedIn counts frames from the host that the guest never saw:
	// shorter than an Ethernet header, longer than MTU+14, or longer than
	// the guest's buffer (ResultTruncated).
	DroppedIn uint64
}

// netState is the network side of a VM that declares devices. A VM runs
// once, so the per-run state lives here too.
type netState struct {
	devs []netDevice // the network devices, in the manifest's order
	// index maps a handle (a manifest index) to its entry in devs, -1
	// for a device of another kind.
	index []int
	// pfds is the poll set: one entry per device, then the wake-up eventfd.
	pfds []unix.PollFd
	wake *waker
}

type netDevice struct {
	handle int
	name   string
	dev    netdev.Device
	mac    uint64 // the MAC as NetInfo reports it
	mtu    int
	max    int // the longest frame, mtu+HeaderLen
	// dead is set once the device failed for good (its host end closed);
	// it is left out of polls from then on.
	dead bool
}

// netDevices matches the guest's device manifest with the attached network
// devices (matchDevices) and checks their MTUs.
func netDevices(declared []loader.Device, attached map[string]netdev.Device) (*netState, error) {
	m, err := matchDevices(declared, hypercall.DeviceNet, attached, "network", "-net")
	if err != nil || len(m) == 0 {
		return nil, err
	}
	ns := &netState{index: handleIndex(len(declared), m)}
	for _, d := range m {
		mtu := d.dev.MTU()
		if mtu < netdev.MinMTU || mtu > netdev.MaxMTU {
			return nil, fmt.Errorf("monitor: network device %q has MTU %d, want %d to %d", d.name, mtu, netdev.MinMTU, netdev.MaxMTU)
		}
		var mac uint64
		for k, b := range d.dev.MAC() {
			mac |= uint64(b) << (8 * k)
		}
		ns.devs = append(ns.devs, netDevice{handle: d.handle, name: d.name, dev: d.dev, mac: mac, mtu: mtu, max: mtu + netdev.HeaderLen})
	}
	return ns, nil
}

// register adds the network hypercalls to a VM's table.
func (ns *netState) register(t *table) {
	t[hypercall.NrNetInfo] = (*run).netInfo
	t[hypercall.NrNetWrite] = (*run).netWrite
	t[hypercall.NrNetRead] = (*run).netRead
	t[hypercall.NrPoll] = (*run).poll
}

// begin prepares a run: the wake-up eventfd that ends a poll when the run is
// stopped, the poll set and the statistics.
func (ns *netState) begin(r *run) (*waker, error) {
	w, err := newWaker()
	if err != nil {
		return nil, err
	}
	ns.wake = w
	ns.pfds = make([]unix.PollFd, len(ns.devs)+1)
	ns.pfds[len(ns.devs)] = unix.PollFd{Fd: int32(w.fd), Events: unix.POLLIN}
	r.stats.Net = make([]NetStats, len(ns.devs))
	for i, d := range ns.devs {
		r.stats.Net[i].Name = d.name
	}
	return w, nil
}

// device returns the device with handle h, or nil.
func (r *run) device(h uint64) (*netDevice, *NetStats) {
	ns := r.vm.net
	if h >= uint64(len(ns.index)) || ns.index[h] < 0 {
		return nil, nil
	}
	i := ns.index[h]
	return &ns.devs[i], &r.stats.Net[i]
}

func (r *run) netInfo(arg uint64) (outcome, error) {
	var ni hypercall.NetInfo
	a, err := readArgs(r, hypercall.NrNetInfo, arg, &ni)
	if err != nil {
		return 0, err
	}
	defer writeArgs(a, &ni)
	d, _ := r.device(ni.Handle)
	if d == nil {
		ni.Result, ni.MAC, ni.MTU = hypercall.ResultInvalid, 0, 0
		return resume, nil
	}
	ni.Result, ni.MAC, ni.MTU = hypercall.ResultOK, d.mac, uint64(d.mtu)
	return resume, nil
}

func (r *run) netWrite(arg uint64) (outcome, error) {
	var nw hypercall.NetWrite
	a, err := readArgs(r, hypercall.NrNetWrite, arg, &nw)
	if err != nil {
		return 0, err
	}
	d, st := r.device(nw.Handle)
	switch {
	case d == nil, nw.Len < netdev.HeaderLen:
		nw.Result = hypercall.ResultInvalid
	case nw.Len > uint64(d.max):
		nw.Result = hypercall.ResultTooLarge
	default:
		frame, err := r.buffer(hypercall.NrNetWrite, "frame", nw.Data, nw.Len, vcpu.Read)
		if err != nil {
			return 0, err
		}
		nw.Result = d.send(frame, st)
	}
	writeArgs(a, &nw)
	return resume, nil
}

// send writes one frame to the device and returns the guest's result.
func (d *netDevice) send(frame []byte, st *NetStats) uint64 {
	switch err := d.dev.WriteFrame(frame); {
	case err == nil:
	case errors.Is(err, netdev.ErrDropped):
		st.DroppedOut++
	default:
		if errors.Is(err, netdev.ErrClosed) {
			d.dead = true
		}
		return hypercall.ResultIO
	}
	st.FramesOut++
	st.BytesOut += uint64(len(frame))
	return hypercall.ResultOK
}

// maxDrops bounds how many unusable frames one net_read discards before it
// answers ResultAgain, so a flood of runts cannot hold the vCPU.
const maxDrops = 64

func (r *run) netRead(arg uint64) (outcome, error) {
	var nr hypercall.NetRead
	a, err := readArgs(r, hypercall.NrNetRead, arg, &nr)
	if err != nil {
		return 0, err
	}
	d, st := r.device(nr.Handle)
	if d == nil {
		nr.Len, nr.Result = 0, hypercall.ResultInvalid
	} else {
		buf, err := r.buffer(hypercall.NrNetRead, "buffer", nr.Data, nr.Cap, vcpu.Write)
		if err != nil {
			return 0, err
		}
		nr.Len, nr.Result = d.receive(buf, st)
	}
	writeArgs(a, &nr)
	return resume, nil
}

// receive takes the next usable frame into buf and returns its length and
// the guest's result.
func (d *netDevice) receive(buf []byte, st *NetStats) (n, result uint64) {
	if d.dead {
		return 0, hypercall.ResultIO
	}
	for range maxDrops {
		n, err := d.dev.ReadFrame(buf)
		switch {
		case errors.Is(err, netdev.ErrNoFrame):
			return 0, hypercall.ResultAgain
		case err != nil && !errors.Is(err, netdev.ErrTruncated):
			if errors.Is(err, netdev.ErrClosed) {
				d.dead = true
			}
			return 0, hypercall.ResultIO
		case n < netdev.HeaderLen || n > d.max:
			// Runts and giants are dropped as a NIC would: the guest
			// sees only frames of HeaderLen to MTU+HeaderLen bytes.
			st.DroppedIn++
			continue
		case err != nil: // truncated: a valid frame, but the buffer is short
			st.DroppedIn++
			return uint64(n), hypercall.ResultTruncated
		}
		st.FramesIn++
		st.BytesIn += uint64(n)
		return uint64(n), hypercall.ResultOK
	}
	return 0, hypercall.ResultAgain
}

// poll waits until a device has input, the timeout passes (at most
// hypercall.PollMax) or the run is stopped.
func (r *run) poll(arg uint64) (outcome, error) {
	var pa hypercall.Poll
	a, err := readArgs(r, hypercall.NrPoll, arg, &pa)
	if err != nil {
		return 0, err
	}
	ready, err := r.pollWait(pa.Timeout)
	if err != nil {
		return 0, err
	}
	pa.Ready, pa.Result = ready, hypercall.ResultOK
	writeArgs(a, &pa)
	return resume, nil
}

// pollWait waits until a device has input, timeout ns pass (at most
// hypercall.PollMax) or the run is stopped, and returns the ready set: bit i
// for device i.
func (r *run) pollWait(timeout uint64) (uint64, error) {
	ns := r.vm.net
	wait := time.Duration(min(timeout, hypercall.PollMax))
	deadline := time.Now().Add(wait)
	for i := range ns.devs {
		fd := int32(ns.devs[i].dev.FD())
		if ns.devs[i].dead {
			fd = -1 // poll(2) skips negative descriptors
		}
		ns.pfds[i] = unix.PollFd{Fd: fd, Events: unix.POLLIN}
	}
	wake := &ns.pfds[len(ns.devs)]
	wake.Revents = 0
	for {
		ts := unix.NsecToTimespec(int64(wait))
		_, err := unix.Ppoll(ns.pfds, &ts, nil)
		if err == nil {
			break
		}
		if err != unix.EINTR {
			return 0, fmt.Errorf("monitor: poll: %w", err)
		}
		// Interrupted (the Go runtime preempts with signals): wait out
		// the rest.
		wait = max(time.Until(deadline), 0)
	}
	var ready uint64
	for i := range ns.devs {
		// An error or hang-up also counts: the guest's read reports it.
		if ns.pfds[i].Revents&(unix.POLLIN|unix.POLLERR|unix.POLLHUP|unix.POLLNVAL) != 0 {
			ready |= 1 << ns.devs[i].handle
		}
	}
	return ready, nil
}

// waker is an eventfd that a stopped run writes to, waking a poll. Close
// and Wake may race (a context ends as the run returns), so they are
// serialised, and a closed waker is never written to (its number may be
// reused).
type waker struct {
	mu sync.Mutex
	fd int
}

func newWaker() (*waker, error) {
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("monitor: eventfd: %w", err)
	}
	return &waker{fd: fd}, nil
}

// Wake makes the eventfd readable for good.
func (w *waker) Wake() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.fd >= 0 {
		var one = [8]byte{1}
		unix.Write(w.fd, one[:])
	}
}

// Close closes the eventfd.
func (w *waker) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.fd < 0 {
		return nil
	}
	err := unix.Close(w.fd)
	w.fd = -1
	return err
}
