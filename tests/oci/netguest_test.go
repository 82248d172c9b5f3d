package oci_test

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestContainerdNetGuest: a network guest in a pod gets a TAP joined to the
// pod's eth0 by tc mirred redirection and eth0's address on its command
// line, so it answers on the pod's address; once it is deleted neither the
// TAP nor eth0's redirection is left in the pod.
func TestContainerdNetGuest(t *testing.T) {
	c := startContainerd(t)
	p := newPod(t)
	fs := rootfs(t, "net_udpecho")
	id := "udpecho"
	before := p.links(t)
	_, stderr, err := c.ctr(t, "run", "-d", "--runc-binary", tenderOCI, "--runc-root", c.runcRoot,
		"--with-ns", "network:"+p.path, "--rootfs", fs, id, "/net_udpecho.elf")
	require.NoError(t, err, stderr)
	assert.Contains(t, p.links(t), "tt", "the container's TAP in the pod")
	assert.Contains(t, p.qdiscs(t), "qdisc ingress")

	conn, err := net.Dial("udp", p.podIP+":7")
	require.NoError(t, err)
	defer conn.Close()
	var reply string
	require.Eventually(t, func() bool {
		if _, err := conn.Write([]byte("through the pod's eth0")); err != nil {
			return false
		}
		conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		b := make([]byte, 128)
		n, err := conn.Read(b)
		reply = string(b[:max(n, 0)])
		return err == nil
	}, 20*time.Second, 10*time.Millisecond, "no UDP echo from %s:7", p.podIP)
	assert.Equal(t, "through the pod's eth0", reply)

	_, stderr, err = c.ctr(t, "tasks", "kill", "--signal", "SIGKILL", id)
	require.NoError(t, err, stderr)
	require.Eventually(t, func() bool {
		out, _, _ := c.ctr(t, "tasks", "list")
		return !strings.Contains(out, "RUNNING")
	}, 20*time.Second, 20*time.Millisecond)
	_, stderr, err = c.ctr(t, "tasks", "delete", id)
	require.NoError(t, err, stderr)
	_, stderr, err = c.ctr(t, "containers", "delete", id)
	require.NoError(t, err, stderr)
	c.noLeftovers(t)
	assert.Equal(t, before, p.links(t), "the pod's interfaces")
	assert.NotContains(t, p.qdiscs(t), "qdisc ingress", "eth0's redirection")
}

// TestNetGuestNeedsPod: a network guest without a pod namespace to join is
// refused with the reason.
func TestNetGuestNeedsPod(t *testing.T) {
	r := newRuntime(t)
	b := bundle(t, rootfs(t, "net_udpecho"), []string{"/net_udpecho.elf"}, nil)
	_, _, err := r.run(t, nil, "create", "--bundle", b, "n")
	assert.ErrorContains(t, err, "exit status 1")
	assert.Contains(t, r.lastError(t), "is a network guest: it needs the pod's network namespace")
	r.noContainers(t)
}
