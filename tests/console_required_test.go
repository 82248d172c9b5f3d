package tests

import (
	"context"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tendervm/tender/monitor"
)

// failingConsole takes n bytes, then fails every Write with err.
type failingConsole struct {
	n   int
	err error
}

func (c *failingConsole) Write(p []byte) (int, error) {
	if c.n <= 0 {
		return 0, c.err
	}
	k := min(c.n, len(p))
	c.n -= k
	if k < len(p) {
		return k, c.err
	}
	return k, nil
}

// TestConsoleRequired: with Config.ConsoleRequired a console that fails stops
// a guest still writing, and Run says so with a ConsoleError wrapping the
// Write's error, also when the guest had ended by then; without it the
// output is dropped and the guest's own outcome stands (docs/abi.md).
func TestConsoleRequired(t *testing.T) {
	for _, b := range backends(t) {
		h := newHost(t, b)
		run := func(guest string, required bool) (monitor.Result, error) {
			t.Helper()
			vm, err := h.New(monitor.Config{ELF: readGuest(t, guest), ConsoleRequired: required,
				Console: &failingConsole{n: 10, err: syscall.EPIPE}})
			require.NoError(t, err)
			defer vm.Close()
			var res monitor.Result
			within(t, string(b)+" "+guest, func() { res, err = vm.Run(context.Background()) })
			return res, err
		}

		// flood writes for ever: only the console's failure ends it.
		res, err := run("flood", true)
		ce, ok := as[*monitor.ConsoleError](err)
		require.True(t, ok, "%s: want a ConsoleError, got %v", b, err)
		assert.True(t, ce.Stopped, b)
		assert.ErrorIs(t, err, syscall.EPIPE, b)
		assert.Equal(t, monitor.ExitMonitor, monitor.ExitCode(res.Status, err), b)
		assert.Equal(t, "console: broken pipe (guest stopped)", err.Error(), b)
		assert.Positive(t, res.Stats.ConsoleDropped, b)

		// hello ends by itself: its lost line is still the outcome (it
		// may or may not have exited before the Write failed).
		res, err = run("hello", true)
		_, ok = as[*monitor.ConsoleError](err)
		require.True(t, ok, "%s: want a ConsoleError, got %v", b, err)
		assert.Equal(t, monitor.ExitMonitor, monitor.ExitCode(res.Status, err), b)

		res, err = run("hello", false)
		require.NoError(t, err, b)
		assert.Equal(t, 0, res.Status, b)
		assert.Positive(t, res.Stats.ConsoleDropped, b)

		_, err = h.NewPool(monitor.PoolConfig{Guest: monitor.Config{ELF: readGuest(t, "fn_echo"), ConsoleRequired: true}})
		assert.ErrorContains(t, err, "ConsoleRequired is for Run", b)
	}
}
