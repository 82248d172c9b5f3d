package bench

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestRetryEmptyReply: a container runtime's run that exits 0 without
// output is made once more with new arguments and counted for the row's
// notes; a second empty run, or a runner that does not retry, is an error.
func TestRetryEmptyReply(t *testing.T) {
	ctx := context.Background()
	var seq atomic.Int64
	// The first run (argument 1) writes nothing; later ones echo.
	r := &procRunner{path: "/bin/sh", payload: []byte("hello"), retryEmpty: true,
		argsFor: func() []string {
			return []string{"-c", `[ "$0" = 1 ] || exec cat`, strconv.FormatInt(seq.Add(1), 10)}
		}}
	require.NoError(t, r.once(ctx))
	require.NoError(t, r.once(ctx))
	assert.Equal(t, int64(3), seq.Load(), "one run made again")
	assert.Equal(t, "runs that exited 0 without output, made again: 1", r.anomalies())
	assert.Equal(t, int64(1), r.retried(), "for latency, which times another request")

	silent := []string{"-c", "true"}
	once := &procRunner{path: "/bin/sh", payload: []byte("hello"), args: silent}
	assert.ErrorIs(t, once.once(ctx), errEmptyReply)
	assert.Empty(t, once.anomalies())
	twice := &procRunner{path: "/bin/sh", payload: []byte("hello"), args: silent, retryEmpty: true}
	assert.ErrorIs(t, twice.once(ctx), errEmptyReply)
	assert.Equal(t, "runs that exited 0 without output, made again: 1", twice.anomalies())
}

// TestMemoryRetryEmptyReply: a memory run that exits 0 without output is
// made again with new arguments, as a request is, rather than failing the
// memory column.
func TestMemoryRetryEmptyReply(t *testing.T) {
	// A stand-in for bin/bench/maxrss: runs the command, reports 100 KiB on
	// descriptor 3.
	launcher := filepath.Join(t.TempDir(), "maxrss")
	require.NoError(t, os.WriteFile(launcher, []byte("#!/bin/sh\nshift\n\"$@\" || exit\necho 100 >&3\n"), 0o755))
	var seq atomic.Int64
	r := &procRunner{path: "/bin/sh", payload: []byte("hello"), retryEmpty: true, maxrss: launcher,
		argsFor: func() []string {
			return []string{"-c", `[ "$0" = 2 ] || exec cat`, strconv.FormatInt(seq.Add(1), 10)}
		}}
	kib, method, err := r.memory(context.Background())
	require.NoError(t, err)
	assert.Equal(t, 100.0, kib)
	assert.Contains(t, method, "median of 5 requests")
	assert.Equal(t, int64(memoryRuns+1), seq.Load(), "the second run made again")
	assert.Equal(t, "runs that exited 0 without output, made again: 1", r.anomalies())
}
