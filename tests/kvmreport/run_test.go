package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
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

// TestStartServerInterrupt: an interrupt of the report stops a server it
// started, and no server starts after one.
func TestStartServerInterrupt(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := &runner{ctx: ctx, logs: t.TempDir(), env: os.Environ()}
	s, err := r.startServer("server.log", []string{"sh", "-c", "echo 127.0.0.1:1 >&2; exec sleep 60"},
		func(line string) string { return line })
	require.NoError(t, err)
	defer syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	assert.Equal(t, "127.0.0.1:1", s.addr)
	cancel()
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		t.Fatal("the server still runs 10 s after the interrupt")
	}
	log, err := os.ReadFile(filepath.Join(r.logs, "server.log"))
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1:1\n", string(log))

	_, err = r.startServer("late.log", []string{"sleep", "60"}, nil)
	assert.ErrorIs(t, err, context.Canceled)
}

// TestBenchmarksInterrupt: an interrupt during a benchmark step ends that
// step's command and stops the report there: no further step, no tender
// bench, no server under wrk.
func TestBenchmarksInterrupt(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	for _, st := range benchPlan {
		require.NoError(t, os.MkdirAll(st.pkg, 0o755))
	}
	marker := filepath.Join(dir, "runs")
	// Stands in for every package's test binary: notes the run, then
	// runs until interrupted.
	fake := filepath.Join(dir, "fake.test")
	require.NoError(t, os.WriteFile(fake, []byte("#!/bin/sh\necho run >> \"$MARKER\"\nexec sleep 60\n"), 0o755))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var said []string
	r := &runner{ctx: ctx, logs: t.TempDir(), env: append(os.Environ(), "MARKER="+marker),
		say:      func(format string, args ...any) { said = append(said, fmt.Sprintf(format, args...)) },
		binaries: map[string]string{}}
	for _, st := range benchPlan {
		r.binaries[st.pkg] = fake
	}
	go func() {
		for {
			if _, err := os.Stat(marker); err == nil {
				cancel()
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	start := time.Now()
	r.benchmarks(newFigures(), time.Second, func(string, time.Time) {})
	assert.Less(t, time.Since(start), 10*time.Second, "the step's command was interrupted")
	runs, err := os.ReadFile(marker)
	require.NoError(t, err)
	assert.Equal(t, "run\n", string(runs), "one step ran")
	require.Len(t, r.benchFailures, 1, "the interrupted step only: %q", r.benchFailures)
	assert.Contains(t, r.benchFailures[0], benchPlan[0].pkg)
	for _, s := range said {
		assert.NotContains(t, s, "tender bench")
		assert.NotContains(t, s, "wrk")
	}
}
