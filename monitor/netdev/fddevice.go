package netdev

import "golang.org/x/sys/unix"

// fdDevice is what the devices backed by one file descriptor share. Close
// releases the descriptor (a non-persistent TAP interface then goes away).
type fdDevice struct {
	fd  int
	mac [6]byte // the guest's address, not the host interface's
	mtu int
}

// FD implements Device.
func (d *fdDevice) FD() int { return d.fd }

// MAC implements Device: the guest's address.
func (d *fdDevice) MAC() [6]byte { return d.mac }

// MTU implements Device.
func (d *fdDevice) MTU() int { return d.mtu }

// Close implements Device.
func (d *fdDevice) Close() error {
	if d.fd < 0 {
		return ErrClosed
	}
	err := unix.Close(d.fd)
	d.fd = -1
	return err
}
