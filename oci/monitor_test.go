package oci

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// TestAwaitRecordAfterGoAhead: the monitor process reads the record once
// start gives the go-ahead, so what create writes after starting it (the
// PID, a network guest's ip= and gw=) reaches the guest. create's first,
// partial record is on disk while the process waits, as under load.
func TestAwaitRecordAfterGoAhead(t *testing.T) {
	root := t.TempDir()
	r := &Record{ID: "c", Args: []string{"/g"}, NetDevice: "service0"}
	dir := stateDir(root, r.ID)
	require.NoError(t, os.Mkdir(dir, 0o700))
	require.NoError(t, writeRecord(root, r))
	fifo := filepath.Join(dir, fifoFile)
	require.NoError(t, unix.Mkfifo(fifo, 0o600))
	type result struct {
		r   *Record
		err error
	}
	done := make(chan result, 1)
	go func() {
		r, err := awaitRecord(context.Background(), dir)
		done <- result{r, err}
	}()
	// Time to read the record too early, were it read before the go-ahead.
	time.Sleep(50 * time.Millisecond)
	r.Pid, r.NetArgs = 42, []string{"ip=10.0.0.2/24", "gw=10.0.0.1"}
	require.NoError(t, writeRecord(root, r))
	f, err := os.OpenFile(fifo, os.O_RDONLY, 0)
	require.NoError(t, err)
	defer f.Close()
	_, err = f.Read(make([]byte, 1))
	require.NoError(t, err)
	select {
	case res := <-done:
		require.NoError(t, res.err)
		assert.Equal(t, r.NetArgs, res.r.NetArgs)
		assert.Equal(t, 42, res.r.Pid)
	case <-time.After(5 * time.Second):
		t.Fatal("awaitRecord did not return after the go-ahead")
	}
}
