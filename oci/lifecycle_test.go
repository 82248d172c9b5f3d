package oci

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// TestDeleteCreating: delete refuses a container still creating while its
// create is at work (holds the state directory's lock), --force or not,
// since the process create is starting is not recorded yet; once create
// is gone, delete removes what it left.
func TestDeleteCreating(t *testing.T) {
	root := t.TempDir()
	rt := &runtime{root: root, stdout: io.Discard, stderr: io.Discard, log: io.Discard, runc: "/nonexistent/runc"}
	r := &Record{ID: "c"}
	dir := stateDir(root, r.ID)
	require.NoError(t, os.Mkdir(dir, 0o700))
	require.NoError(t, writeRecord(root, r))
	unlock, err := lockState(dir)
	require.NoError(t, err)
	_, err = lockState(dir)
	assert.ErrorIs(t, err, errCreating, "a second lock")
	for _, args := range [][]string{{"c"}, {"--force", "c"}} {
		err := rt.delete(args)
		assert.ErrorContains(t, err, "cannot delete container c that is being created: its create is still at work", args)
		assert.DirExists(t, dir, args)
	}
	unlock()
	require.NoError(t, rt.delete([]string{"c"}))
	assert.NoDirExists(t, dir)
}

// TestAwaitCreate: the monitor process goes on at create's byte and stops
// at EOF without it, create having died.
func TestAwaitCreate(t *testing.T) {
	pr, pw, err := os.Pipe()
	require.NoError(t, err)
	_, err = pw.Write([]byte{0})
	require.NoError(t, err)
	pw.Close()
	assert.NoError(t, awaitCreate(t.Context(), pr))

	pr, pw, err = os.Pipe()
	require.NoError(t, err)
	pw.Close()
	assert.ErrorIs(t, awaitCreate(t.Context(), pr), errCreateDied)
}

// TestStartFIFOGone: a start that finds the FIFO gone, or sees it go while
// it waits (another start's go-ahead was taken and the container's process
// removed it), fails at once saying the container already started, instead
// of waiting out startTimeout for a go-ahead that cannot come.
func TestStartFIFOGone(t *testing.T) {
	root := t.TempDir()
	rt := &runtime{root: root, stdout: io.Discard, stderr: io.Discard, log: io.Discard, runc: "/nonexistent/runc"}
	cmd := exec.Command("sleep", "60")
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	p, err := readProc(cmd.Process.Pid)
	require.NoError(t, err)
	r := &Record{ID: "c", Pid: cmd.Process.Pid, StartTime: p.startTime}
	require.NoError(t, os.Mkdir(stateDir(root, r.ID), 0o700))
	require.NoError(t, writeRecord(root, r))
	fifo := filepath.Join(stateDir(root, r.ID), fifoFile)
	require.NoError(t, unix.Mkfifo(fifo, 0o600))
	done := make(chan error, 1)
	go func() { done <- rt.start([]string{"c"}) }()
	time.Sleep(100 * time.Millisecond)
	require.NoError(t, os.Remove(fifo))
	select {
	case err := <-done:
		assert.ErrorContains(t, err, "start c: already started")
	case <-time.After(10 * time.Second):
		t.Fatal("start waited on after the FIFO was gone")
	}
}
