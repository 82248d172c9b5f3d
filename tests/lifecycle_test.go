package tests

import (
	"context"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tendervm/tender/hypercall"
	"github.com/tendervm/tender/monitor"
	"github.com/tendervm/tender/monitor/loader"
)

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	return len(ents)
}

// settledGoroutines waits briefly for exiting goroutines to finish.
func settledGoroutines(limit int) int {
	n := runtime.NumGoroutine()
	for i := 0; i < 100 && n > limit; i++ {
		time.Sleep(10 * time.Millisecond)
		n = runtime.NumGoroutine()
	}
	return n
}

// TestNoLeaks runs 1,000 guests and checks that file descriptors and
// goroutines return to where they started.
func TestNoLeaks(t *testing.T) {
	n := 1000
	if testing.Short() {
		n = 100
	}
	for _, b := range backends(t) {
		image := readGuest(t, "hello")
		// From before the host to after its Close, which waits for the
		// VMs still being destroyed in the background (at most 8).
		fds, gs := openFDs(t), runtime.NumGoroutine()
		h := newHost(t, b)
		for i := range n {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			res, _, err := runGuest(ctx, t, h, monitor.Config{ELF: image})
			cancel()
			require.NoError(t, err, "%s guest %d", b, i)
			require.Equal(t, 0, res.Status)
		}
		require.NoError(t, h.Close())
		assert.Equal(t, fds, openFDs(t), "%s: open fds after %d guests", b, n)
		assert.LessOrEqual(t, settledGoroutines(gs), gs, "%s: goroutines after %d guests", b, n)
	}
}

// TestRunOnce refuses a second Run of the same VM.
func TestRunOnce(t *testing.T) {
	for _, b := range backends(t) {
		h := newHost(t, b)
		vm, err := h.New(monitor.Config{ELF: readGuest(t, "hello")})
		require.NoError(t, err)
		_, err = vm.Run(context.Background())
		require.NoError(t, err)
		_, err = vm.Run(context.Background())
		assert.ErrorIs(t, err, monitor.ErrAlreadyRun)
		require.NoError(t, vm.Close())
		require.NoError(t, vm.Close(), "Close is idempotent")
	}
}

// TestBadConfig checks that bad input is refused with a clear error before
// anything runs.
func TestBadConfig(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(string(b), func(t *testing.T) { testBadConfig(t, b) })
	}
}

func testBadConfig(t *testing.T, b monitor.Backend) {
	h := newHost(t, b)
	hello := readGuest(t, "hello")
	cases := []struct {
		name string
		cfg  monitor.Config
		want string
	}{
		{"memory too small", monitor.Config{ELF: hello, MemSize: 2 << 20}, "guest memory"},
		{"memory unaligned", monitor.Config{ELF: hello, MemSize: 5 << 20}, "guest memory"},
		{"memory too large", monitor.Config{ELF: hello, MemSize: hypercall.MemMax + hypercall.MemAlign}, "guest memory"},
		{"argument with space", monitor.Config{ELF: hello, Args: []string{"a b"}}, "white space"},
		{"empty argument", monitor.Config{ELF: hello, Args: []string{""}}, "empty"},
		{"command line too long", monitor.Config{ELF: hello, Args: []string{strings.Repeat("x", hypercall.CmdlineMax)}}, "command line"},
		{"not an ELF", monitor.Config{ELF: []byte("#!/bin/sh\necho hi\n")}, "invalid guest ELF"},
		{"empty", monitor.Config{}, "invalid guest ELF"},
	}
	for _, c := range cases {
		_, err := h.New(c.cfg)
		assert.ErrorContains(t, err, c.want, c.name)
	}
	_, err := h.New(monitor.Config{ELF: hello[:len(hello)/2]})
	assert.ErrorIs(t, err, loader.ErrInvalid, "truncated ELF")
}

// TestBackendUnknown names the valid backends.
func TestBackendUnknown(t *testing.T) {
	_, err := monitor.NewHost(monitor.HostConfig{Backend: "xen"})
	assert.ErrorContains(t, err, `unknown backend "xen"`)
}
