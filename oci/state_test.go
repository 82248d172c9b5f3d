package oci

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// TestStatus walks a record through the OCI states with a real process
// standing in for the monitor: creating without a PID, created while the
// FIFO exists, running once start removed it, stopped when the process is
// a zombie, reaped, or its PID names another process.
func TestStatus(t *testing.T) {
	root := t.TempDir()
	r := &Record{ID: "c", Bundle: "/b", Annotations: map[string]string{"k": "v"}}
	require.NoError(t, os.Mkdir(stateDir(root, r.ID), 0o700))
	require.NoError(t, writeRecord(root, r))
	assert.Equal(t, specs.StateCreating, r.Status(root))

	cmd := exec.Command("sleep", "60")
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	p, err := readProc(cmd.Process.Pid)
	require.NoError(t, err)
	r.Pid, r.StartTime = cmd.Process.Pid, p.startTime
	fifo := filepath.Join(stateDir(root, r.ID), fifoFile)
	require.NoError(t, unix.Mkfifo(fifo, 0o600))
	assert.Equal(t, specs.StateCreated, r.Status(root))
	require.NoError(t, os.Remove(fifo))
	assert.Equal(t, specs.StateRunning, r.Status(root))

	s := r.ociState(root)
	assert.Equal(t, r.Pid, s.Pid)
	b, err := json.Marshal(s)
	require.NoError(t, err)
	assert.Contains(t, string(b), `"status":"running"`)
	assert.Contains(t, string(b), `"annotations":{"k":"v"}`)

	other := *r
	other.StartTime++
	assert.Equal(t, specs.StateStopped, other.Status(root), "a recycled PID is not the container's")

	require.NoError(t, cmd.Process.Signal(unix.SIGKILL))
	require.Eventually(t, func() bool { p, err := readProc(r.Pid); return err == nil && p.state == 'Z' }, 5*time.Second, time.Millisecond)
	assert.Equal(t, specs.StateStopped, r.Status(root), "zombie")
	assert.NoError(t, r.killWait(), "killWait of a zombie")
	cmd.Wait()
	assert.Equal(t, specs.StateStopped, r.Status(root), "reaped")
	assert.Zero(t, r.ociState(root).Pid)

	got, err := readRecord(root, "c")
	require.NoError(t, err)
	assert.Equal(t, "/b", got.Bundle)
	_, err = readRecord(root, "nope")
	assert.ErrorIs(t, err, ErrNotExist)
	_, err = readRecord(root, "../c")
	assert.ErrorContains(t, err, "invalid container ID")
}

// TestReadProcCommandName: a command name with spaces and parentheses does
// not shift the fields.
func TestReadProcCommandName(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "a) b (c")
	require.NoError(t, os.Symlink("/bin/sleep", name))
	cmd := exec.Command(name, "60")
	require.NoError(t, cmd.Start())
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	p, err := readProc(cmd.Process.Pid)
	require.NoError(t, err)
	self, err := readProc(os.Getpid())
	require.NoError(t, err)
	assert.GreaterOrEqual(t, p.startTime, self.startTime)
	// A live state: running, sleeping, or in uninterruptible sleep while
	// the kernel pages its program in (seen once in a full run).
	assert.Contains(t, "RSD", string(p.state))
}

// TestWriteAtomicPlantedLink: a symbolic link planted where writeAtomic
// once put its temporary file (PATH.tmp, in a pid file's directory anyone
// may write to) is not followed: the file it names keeps its contents, the
// link is left alone, and no temporary file remains.
func TestWriteAtomicPlantedLink(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(t.TempDir(), "victim")
	require.NoError(t, os.WriteFile(victim, []byte("precious"), 0o644))
	path := filepath.Join(dir, "pid")
	require.NoError(t, os.Symlink(victim, path+".tmp"))
	require.NoError(t, writeAtomic(path, []byte("1234")))
	b, err := os.ReadFile(victim)
	require.NoError(t, err)
	assert.Equal(t, "precious", string(b), "writeAtomic wrote through the planted link")
	b, err = os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, "1234", string(b))
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	assert.ElementsMatch(t, []string{"pid", "pid.tmp"}, names, "temporary files left")
}

// TestWriteAtomicFails: a write that cannot finish (the target is a
// directory) reports the error and leaves no temporary file.
func TestWriteAtomicFails(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "target")
	require.NoError(t, os.Mkdir(path, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(path, "x"), nil, 0o644))
	assert.Error(t, writeAtomic(path, []byte("1")))
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, 1, "temporary files left")
	assert.Equal(t, "target", entries[0].Name())
}
