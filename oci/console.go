package oci

import (
	"fmt"
	"net"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// console is a pseudo-terminal for a container with process.terminal: the
// monitor process gets the slave as its stdio and controlling terminal, the
// master goes to whoever listens on --console-socket (containerd's shim).
type console struct {
	master, slave *os.File
}

func newConsole() (*console, error) {
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("console: %w", err)
	}
	fd := int(m.Fd())
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err == nil {
		err = unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0)
	}
	if err != nil {
		m.Close()
		return nil, fmt.Errorf("console: %w", err)
	}
	name := "/dev/pts/" + strconv.Itoa(n)
	s, err := os.OpenFile(name, os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		m.Close()
		return nil, fmt.Errorf("console: %w", err)
	}
	return &console{master: m, slave: s}, nil
}

// send passes the master descriptor, named by its slave's path as runc
// does, over the Unix socket at path.
func (c *console) send(path string) error {
	conn, err := net.Dial("unix", path)
	if err != nil {
		return fmt.Errorf("console socket: %w", err)
	}
	defer conn.Close()
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		return fmt.Errorf("console socket %s: not a Unix socket", path)
	}
	_, _, err = uc.WriteMsgUnix([]byte(c.slave.Name()), unix.UnixRights(int(c.master.Fd())), nil)
	if err != nil {
		return fmt.Errorf("console socket: %w", err)
	}
	return nil
}

// Close closes this process's ends; the monitor process and the receiver
// hold their own.
func (c *console) Close() error {
	c.slave.Close()
	return c.master.Close()
}
