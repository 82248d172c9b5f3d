package tests

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tendervm/tender/bench"
	"github.com/tendervm/tender/internal/proctest"
	"github.com/tendervm/tender/monitor"
	"github.com/tendervm/tender/monitor/x86"
)

// TestFreshOutsideMemory: a fresh request that writes a mark outside the
// guest's memory, where the guest process had writable memory of its own
// (the initial stack execve built for the stub, at the address
// /proc/PID/stat calls startstack; the first and last word of every
// writable mapping that is not guest memory), leaves nothing for the next
// request to read. The initial stack is gone, so the write faults (#PF at
// that address), and the next requests are answered by a pristine
// instance. On KVM the same address is outside guest memory and faults
// alike.
func TestFreshOutsideMemory(t *testing.T) {
	forFresh(t, func(t *testing.T, h *monitor.Host) {
		kids := bench.ChildPIDs(os.Getpid())
		p := newPool(t, h, "fn_poke", monitor.PoolConfig{Mode: monitor.Fresh, MaxInstances: 1})
		require.NoError(t, p.Prewarm(context.Background(), 1))

		stack := uint64(0x7ffc00000000) // KVM: no guest memory there
		var targets []uint64
		if h.Backend() == monitor.BackendProcess {
			var pids []int
			for _, pid := range bench.ChildPIDs(os.Getpid()) {
				if !slices.Contains(kids, pid) {
					pids = append(pids, pid)
				}
			}
			require.Len(t, pids, 1, "the pool's guest process")
			stack = startStack(t, pids[0])
			targets = outsideWritable(t, pids[0])
		}
		targets = append([]uint64{stack}, targets...)

		for _, addr := range targets {
			out, err := invoke(t, p, fmt.Sprintf("poke:%x", addr))
			if addr == stack {
				fe, ok := as[*monitor.FaultError](err)
				if assert.True(t, ok, "poke at %#x: %q, %v; want a page fault", addr, out, err) {
					assert.EqualValues(t, x86.VecPF, fe.Vector)
					assert.Equal(t, addr, fe.CR2)
				}
			} else if err != nil {
				_, ok := as[*monitor.FaultError](err)
				assert.True(t, ok, "poke at %#x: %v", addr, err)
			}
			out, err = invoke(t, p, fmt.Sprintf("peek:%x", addr))
			assert.NotEqual(t, "pokemark", out, "the mark at %#x reached the next request", addr)
			if err != nil {
				fe, ok := as[*monitor.FaultError](err)
				if assert.True(t, ok, "peek at %#x: %v", addr, err) {
					assert.EqualValues(t, x86.VecPF, fe.Vector)
				}
			}
			out, err = invoke(t, p, "echo")
			require.NoError(t, err)
			assert.Equal(t, "echo", out)
		}
	})
}

// startStack returns the start_stack field of /proc/PID/stat: where the
// stack pointer was after execve.
func startStack(t *testing.T, pid int) uint64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	require.NoError(t, err)
	// Fields after the command name in parentheses; start_stack is field
	// 28, the 26th after it.
	_, rest, ok := strings.Cut(string(b), ") ")
	require.True(t, ok, "%s", b)
	f := strings.Fields(rest)
	require.Greater(t, len(f), 25, "%s", b)
	v, err := strconv.ParseUint(f[25], 10, 64)
	require.NoError(t, err)
	require.NotZero(t, v, "start_stack of %d", pid)
	return v
}

// outsideWritable returns the first and last word of every writable
// mapping of process pid that is not guest memory.
func outsideWritable(t *testing.T, pid int) []uint64 {
	t.Helper()
	ms, err := proctest.Maps(pid)
	require.NoError(t, err)
	var addrs []uint64
	for _, m := range ms {
		if strings.Contains(m.Perms, "w") && !strings.Contains(m.Name, "/memfd:tender-guest") {
			addrs = append(addrs, m.Start, m.End-8)
		}
	}
	return addrs
}
