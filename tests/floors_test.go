package tests

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tendervm/tender/bench"
)

// The floors make kvm-report puts beside tender's figures must do the work
// they stand for, or the comparison says nothing.

// TestGoSpawnFloor: gohello with a program runs it as its child, passes its
// output through and exits with its status.
func TestGoSpawnFloor(t *testing.T) {
	gohello := filepath.Join(root, "bin", "bench", "gohello")
	out, err := exec.Command(gohello, filepath.Join(root, "bin", "guest", "host", "hello_host")).Output()
	require.NoError(t, err)
	assert.Equal(t, "hello from tender guest\n", string(out), "the child's output")
	out, err = exec.Command(gohello).Output()
	require.NoError(t, err)
	assert.Equal(t, "hello from a static Go program\n", string(out))

	err = exec.Command(gohello, "/bin/sh", "-c", "exit 7").Run()
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee)
	assert.Equal(t, 7, ee.ExitCode(), "the child's status")
	err = exec.Command(gohello, "/bin/sh", "-c", "kill -TERM $$").Run()
	require.ErrorAs(t, err, &ee)
	assert.Equal(t, 128+int(syscall.SIGTERM), ee.ExitCode(), "a child's signal, as a shell reports it")
	err = exec.Command(gohello, filepath.Join(t.TempDir(), "absent")).Run()
	require.ErrorAs(t, err, &ee)
	assert.Equal(t, 127, ee.ExitCode())
}

// TestHTTPEchoChildFloor: httpecho -child answers every body through one of
// its children (bodies of 0, 64 bytes and 1 MiB come back whole, and many
// clients at once, each with a body of its own, get their own back), and a
// child that dies ends the server with an error instead of hanging or
// answering for it.
func TestHTTPEchoChildFloor(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	ln.Close()
	var stderr lockedBuffer // read while httpecho may write it
	cmd := exec.Command(filepath.Join(root, "bin", "bench", "httpecho"), "-listen", addr,
		"-child", filepath.Join(root, "bin", "bench", "pipe_echo"), "-children", "2")
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())
	var waitErr error
	exited := make(chan struct{})
	go func() {
		waitErr = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	url := "http://" + addr + "/invoke"
	post := func(body []byte) (int, []byte, error) {
		resp, err := http.Post(url, "application/octet-stream", bytes.NewReader(body))
		if err != nil {
			return 0, nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, b, err
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, _, err := post(nil); err == nil {
			break
		}
		require.True(t, time.Now().Before(deadline), "httpecho never answered: %s", stderr.String())
		time.Sleep(20 * time.Millisecond)
	}

	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	for _, body := range [][]byte{{}, bytes.Repeat([]byte("x"), 64), big} {
		code, got, err := post(body)
		require.NoError(t, err)
		assert.Equal(t, http.StatusOK, code)
		assert.True(t, bytes.Equal(body, got), "a %d-byte body came back as %d bytes", len(body), len(got))
	}
	// More clients than children, each body its own and larger than a
	// pipe's atomic write: an answer that went to the wrong request, or was
	// overwritten by the next one through the same child, shows.
	const clients, rounds = 16, 20
	errs := make(chan error, clients)
	for i := range clients {
		go func() {
			for r := range rounds {
				body := bytes.Repeat([]byte{byte('a' + i), byte('A' + r)}, 10000+i)
				code, got, err := post(body)
				if err == nil && (code != http.StatusOK || !bytes.Equal(body, got)) {
					err = &mismatch{code: code, want: body, got: got}
				}
				if err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range clients {
		assert.NoError(t, <-errs)
	}

	// Kill the children: the next request ends the server, which says why.
	pids := bench.ChildPIDs(cmd.Process.Pid)
	require.Len(t, pids, 2, "httpecho's children")
	for _, pid := range pids {
		require.NoError(t, syscall.Kill(pid, syscall.SIGKILL))
	}
	code, _, err := post([]byte("after"))
	assert.True(t, err != nil || code != http.StatusOK, "answered without its child: %d", code)
	select {
	case <-exited:
		var ee *exec.ExitError
		require.ErrorAs(t, waitErr, &ee)
		assert.Equal(t, 1, ee.ExitCode())
		assert.Contains(t, stderr.String(), "the child")
	case <-time.After(10 * time.Second):
		t.Fatal("httpecho still runs without its children")
	}
}

type mismatch struct {
	code      int
	want, got []byte
}

func (m *mismatch) Error() string {
	head := func(b []byte) string { return string(b[:min(len(b), 16)]) }
	return fmt.Sprintf("status %d, sent %d bytes (%q...), got %d (%q...)", m.code, len(m.want), head(m.want), len(m.got), head(m.got))
}
