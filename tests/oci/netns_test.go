package oci_test

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
)

// pod is a network namespace set up as a CNI bridge or ptp plugin leaves a
// pod's: eth0, one end of a veth pair, with the pod's address; the host end
// has the host's address on the same subnet.
type pod struct {
	name, path     string
	hostIP, podIP  string
	hostIf, prefix string
}

var podSeq atomic.Int32

// needNet skips where namespaces and veth pairs cannot be made, unless
// TENDER_REQUIRE_NET=1.
func needNet(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("TENDER_REQUIRE_NET") == "1" {
			t.Fatal("TENDER_REQUIRE_NET=1 but not root")
		}
		t.Skip("network namespaces need root (TENDER_REQUIRE_NET=1 makes this a failure)")
	}
	for _, tool := range []string{"ip", "tc"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed (Debian package iproute2): %v", tool, err)
		}
	}
}

func ipCmd(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

// newPod makes a pod namespace; cleanup removes it (and with it the veth
// pair).
func newPod(t testing.TB) *pod {
	t.Helper()
	needNet(t)
	seq := podSeq.Add(1)
	net := (os.Getpid()*7+int(seq))%250 + 1
	p := &pod{
		name:   fmt.Sprintf("tender-oci-%d-%d", os.Getpid(), seq),
		hostIf: fmt.Sprintf("to%d-%d", os.Getpid()%100000, seq),
		hostIP: fmt.Sprintf("10.213.%d.1", net),
		podIP:  fmt.Sprintf("10.213.%d.2", net),
		prefix: "24",
	}
	p.path = "/run/netns/" + p.name
	require.NoError(t, ipCmd("netns", "add", p.name))
	t.Cleanup(func() {
		if err := ipCmd("netns", "del", p.name); err != nil {
			t.Errorf("removing the pod's namespace: %v", err)
		}
	})
	require.NoError(t, ipCmd("link", "add", p.hostIf, "type", "veth", "peer", "name", "eth0", "netns", p.name))
	t.Cleanup(func() { _ = ipCmd("link", "del", p.hostIf) })
	require.NoError(t, ipCmd("addr", "add", p.hostIP+"/"+p.prefix, "dev", p.hostIf))
	require.NoError(t, ipCmd("link", "set", p.hostIf, "up"))
	require.NoError(t, ipCmd("-n", p.name, "addr", "add", p.podIP+"/"+p.prefix, "dev", "eth0"))
	require.NoError(t, ipCmd("-n", p.name, "link", "set", "eth0", "up"))
	require.NoError(t, ipCmd("-n", p.name, "link", "set", "lo", "up"))
	require.NoError(t, ipCmd("-n", p.name, "route", "add", "default", "via", p.hostIP))
	return p
}

// links lists the pod namespace's interfaces.
func (p *pod) links(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("ip", "-n", p.name, "-o", "link").CombinedOutput()
	require.NoError(t, err, "%s", out)
	return string(out)
}

// qdiscs lists the queueing disciplines of the pod's eth0.
func (p *pod) qdiscs(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", p.name, "tc", "qdisc", "show", "dev", "eth0").CombinedOutput()
	require.NoError(t, err, "%s", out)
	return string(out)
}
