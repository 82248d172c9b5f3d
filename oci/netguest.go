package oci

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"os"
	"os/exec"
	goruntime "runtime"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// podInterface is the pod's interface a network guest is joined to.
const podInterface = "eth0"

// tapName is container id's TAP device: unique per container, so that no
// container touches another's device, and short enough for IFNAMSIZ.
func tapName(id string) string {
	h := fnv.New32a()
	h.Write([]byte(id))
	return fmt.Sprintf("tt%08x", h.Sum32())
}

// podNet is a network guest's attachment to its pod.
type podNet struct {
	tap *os.File // the TAP, attached; not persistent: it goes with its last descriptor
	// args give the guest eth0's address and the default gateway
	// (ip=A/P gw=G), as its runtime's net_init reads them.
	args []string
}

// inNetns runs f on a thread in the network namespace at path. The thread
// is never unlocked, so Go retires it instead of reusing it elsewhere;
// processes f starts are in the namespace.
func inNetns(path string, f func() error) error {
	done := make(chan error, 1)
	go func() {
		goruntime.LockOSThread()
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			done <- fmt.Errorf("network namespace: %w", &os.PathError{Op: "open", Path: path, Err: err})
			return
		}
		err = unix.Setns(fd, unix.CLONE_NEWNET)
		unix.Close(fd)
		if err != nil {
			done <- fmt.Errorf("join network namespace %s: %w", path, err)
			return
		}
		done <- f()
	}()
	return <-done
}

// attachPod creates the container's TAP in the current thread's network
// namespace and joins it to eth0 in both directions with tc mirred
// redirection: every frame that arrives on eth0 goes to the guest, and
// every frame the guest sends leaves through eth0. The filters are u32
// rules matching everything: the matchall classifier is not built into
// every kernel (this project's CI host lacks it). Call it in the pod's
// namespace (inNetns).
func attachPod(id string) (*podNet, error) {
	eth, err := net.InterfaceByName(podInterface)
	if err != nil {
		return nil, fmt.Errorf("network guest: the pod has no %s: %w", podInterface, err)
	}
	addrs, err := eth.Addrs()
	if err != nil {
		return nil, fmt.Errorf("network guest: %s: %w", podInterface, err)
	}
	var ip string
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil {
			ones, _ := n.Mask.Size()
			ip = n.IP.String() + "/" + strconv.Itoa(ones)
			break
		}
	}
	if ip == "" {
		return nil, fmt.Errorf("network guest: %s has no IPv4 address", podInterface)
	}
	args := []string{"ip=" + ip}
	if gw, err := defaultGateway(); err == nil && gw != "" {
		args = append(args, "gw="+gw)
	}
	name := tapName(id)
	tap, err := openTAP(name)
	if err != nil {
		return nil, err
	}
	steps := [][]string{
		{"ip", "link", "set", "dev", name, "mtu", strconv.Itoa(eth.MTU), "up"},
		{"tc", "qdisc", "add", "dev", podInterface, "ingress"},
		{"tc", "filter", "add", "dev", podInterface, "parent", "ffff:", "protocol", "all", "u32", "match", "u32", "0", "0", "action", "mirred", "egress", "redirect", "dev", name},
		{"tc", "qdisc", "add", "dev", name, "ingress"},
		{"tc", "filter", "add", "dev", name, "parent", "ffff:", "protocol", "all", "u32", "match", "u32", "0", "0", "action", "mirred", "egress", "redirect", "dev", podInterface},
	}
	for i, s := range steps {
		if out, err := exec.Command(s[0], s[1:]...).CombinedOutput(); err != nil {
			if i >= 2 {
				detachPod()
			}
			tap.Close()
			if i == 1 {
				return nil, fmt.Errorf("network guest: %s already has an ingress qdisc (another network guest in this pod?): %s", podInterface, strings.TrimSpace(string(out)))
			}
			return nil, fmt.Errorf("network guest: %s: %v: %s", strings.Join(s, " "), err, strings.TrimSpace(string(out)))
		}
	}
	return &podNet{tap: tap, args: args}, nil
}

// detachPod removes eth0's redirection (its ingress qdisc, which create
// added), if it is still there. The TAP itself vanishes with its last
// descriptor.
func detachPod() error {
	if out, err := exec.Command("tc", "qdisc", "show", "dev", podInterface, "ingress").CombinedOutput(); err != nil || !strings.Contains(string(out), "qdisc ingress") {
		return nil // no eth0 any more, or nothing to remove
	}
	out, err := exec.Command("tc", "qdisc", "del", "dev", podInterface, "ingress").CombinedOutput()
	if err != nil {
		return fmt.Errorf("tc qdisc del dev %s ingress: %v: %s", podInterface, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// openTAP creates and attaches a non-persistent TAP without packet
// information headers, as netdev.TAPFromFD wants it.
func openTAP(name string) (*os.File, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("network guest: /dev/net/tun: %w", err)
	}
	var ifr struct {
		name  [unix.IFNAMSIZ]byte
		flags uint16
		_     [22]byte
	}
	copy(ifr.name[:], name)
	ifr.flags = unix.IFF_TAP | unix.IFF_NO_PI
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.TUNSETIFF, uintptr(unsafe.Pointer(&ifr))); e != 0 {
		unix.Close(fd)
		return nil, fmt.Errorf("network guest: TAP %s: %w", name, e)
	}
	return os.NewFile(uintptr(fd), name), nil
}

// defaultGateway reads the default IPv4 route of the calling thread's
// network namespace.
func defaultGateway() (string, error) {
	f, err := os.Open("/proc/thread-self/net/route")
	if err != nil {
		return "", err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		fl := strings.Fields(s.Text())
		if len(fl) < 3 || fl[1] != "00000000" {
			continue
		}
		v, err := strconv.ParseUint(fl[2], 16, 32)
		if err != nil {
			continue
		}
		var b [4]byte
		binary.LittleEndian.PutUint32(b[:], uint32(v))
		return net.IP(b[:]).String(), nil
	}
	return "", errors.New("no default route")
}
