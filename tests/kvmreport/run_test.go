package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestCommandContextInterrupt: a cancelled command gets SIGINT, and so do
// the processes it started (the sleep the shell waits for), and has time
// to finish its cleanup, rather than being killed outright.
func TestCommandContextInterrupt(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The child says ready itself, so that it exists when the signal comes.
	cmd := commandContext(ctx, "sh", "-c", `trap 'echo cleaned; exit 0' INT; sh -c 'echo ready; exec sleep 60'`)
	pr, pw, err := os.Pipe()
	require.NoError(t, err)
	defer pr.Close()
	cmd.Stdout = pw
	require.NoError(t, cmd.Start())
	pw.Close()
	defer syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	out := bufio.NewReader(pr)
	line, err := out.ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "ready\n", line, "the trap is set")

	start := time.Now()
	cancel()
	// Wait reports the cancellation even though the command exited 0.
	assert.ErrorIs(t, cmd.Wait(), context.Canceled)
	assert.Equal(t, 0, cmd.ProcessState.ExitCode(), "the trap's exit status")
	rest, err := io.ReadAll(out)
	require.NoError(t, err)
	assert.Equal(t, "cleaned\n", string(rest))
	assert.Less(t, time.Since(start), 10*time.Second, "the sleep was interrupted too")
}

// TestCommandContextWaitDelay: a cancelled command that does not end, or
// leaves a process holding its output, is killed and Wait returns after
// cancelGrace rather than waiting for that process.
func TestCommandContextWaitDelay(t *testing.T) {
	defer func(d time.Duration) { cancelGrace = d }(cancelGrace)
	cancelGrace = 200 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The sleep inherits the ignored SIGINT and holds stdout.
	cmd := commandContext(ctx, "sh", "-c", `trap '' INT; sleep 60 & echo ready; wait`)
	var out syncBuffer
	cmd.Stdout = &out
	require.NoError(t, cmd.Start())
	defer syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	require.Eventually(t, func() bool { return strings.Contains(out.String(), "ready") }, 10*time.Second, 5*time.Millisecond)
	start := time.Now()
	cancel()
	assert.Error(t, cmd.Wait())
	assert.Less(t, time.Since(start), 10*time.Second)
}

// syncBuffer is a bytes.Buffer that exec's copying goroutine can write
// while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
