package oci_test

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// TestConsoleSocket: with process.terminal, create sends a pseudo-terminal's
// master over --console-socket, as containerd's shim expects for `ctr run
// -t`, and the guest's console comes out of it.
func TestConsoleSocket(t *testing.T) {
	r := newRuntime(t)
	b := bundle(t, rootfs(t, "hello"), []string{"/hello.elf"}, nil)
	cfg := filepath.Join(b, "config.json")
	raw, err := os.ReadFile(cfg)
	require.NoError(t, err)
	var s specs.Spec
	require.NoError(t, json.Unmarshal(raw, &s))
	s.Process.Terminal = true
	raw, err = json.Marshal(s)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(cfg, raw, 0o644))

	sock := filepath.Join(t.TempDir(), "console.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	require.NoError(t, err)
	defer l.Close()
	master := make(chan *os.File, 1)
	go func() {
		defer close(master)
		c, err := l.AcceptUnix()
		if err != nil {
			return
		}
		defer c.Close()
		buf, oob := make([]byte, 256), make([]byte, unix.CmsgSpace(4))
		_, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
		if err != nil {
			return
		}
		msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil || len(msgs) != 1 {
			return
		}
		fds, err := unix.ParseUnixRights(&msgs[0])
		if err != nil || len(fds) != 1 {
			return
		}
		master <- os.NewFile(uintptr(fds[0]), "master")
	}()
	_, stderr, err := r.run(t, nil, "create", "--bundle", b, "--console-socket", sock, "tty")
	require.NoError(t, err, stderr)
	defer r.run(t, nil, "delete", "--force", "tty")
	m := <-master
	require.NotNil(t, m, "no terminal master received")
	defer m.Close()
	_, stderr, err = r.run(t, nil, "start", "tty")
	require.NoError(t, err, stderr)
	m.SetReadDeadline(time.Now().Add(10 * time.Second))
	var got strings.Builder
	buf := make([]byte, 256)
	// Until the whole line: it may come in more than one read.
	for !strings.Contains(got.String(), "hello from tender guest\r\n") {
		n, err := m.Read(buf)
		got.Write(buf[:n])
		if err != nil {
			break
		}
	}
	assert.Contains(t, got.String(), "hello from tender guest\r\n", "a terminal turns \\n into \\r\\n")
}
