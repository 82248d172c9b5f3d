package oci_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestContainerdServe: a function guest annotated dev.tender.mode=warm
// joins the pod's network namespace (linux.namespaces path, `ctr run
// --with-ns`) and is served over HTTP on the pod's address and the port of
// its annotation.
func TestContainerdServe(t *testing.T) {
	c := startContainerd(t)
	p := newPod(t)
	fs := rootfs(t, "fn_echo")
	id := "echo"
	args := []string{"run", "-d", "--runc-binary", tenderOCI, "--runc-root", c.runcRoot,
		"--with-ns", "network:" + p.path,
		"--annotation", "dev.tender.mode=warm", "--annotation", "dev.tender.port=8081",
		"--rootfs", fs, id, "/fn_echo.elf"}
	_, stderr, err := c.ctr(t, args...)
	require.NoError(t, err, stderr)
	url := "http://" + p.podIP + ":8081/invoke"
	client := &http.Client{Timeout: 5 * time.Second}
	var reply string
	require.Eventually(t, func() bool {
		resp, err := client.Post(url, "application/octet-stream", strings.NewReader("ping over the pod address"))
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		reply = string(b)
		return resp.StatusCode == http.StatusOK
	}, 20*time.Second, 50*time.Millisecond, "POST %s", url)
	assert.Equal(t, "ping over the pod address", reply)

	_, stderr, err = c.ctr(t, "tasks", "kill", "--signal", "SIGTERM", id)
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
}
