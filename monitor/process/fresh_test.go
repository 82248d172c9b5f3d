package process

import (
	"errors"
	"fmt"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tendervm/tender/monitor/vcpu"
)

// freshCode counts in four places, and reports their sum in EAX through
// hypercall 1 on every round: RBX, the word at dataAddr, the low quadword
// of XMM3 and a word on the signal stack (0x7e0000010800), which a guest
// can write like its own memory. Round k reports 4k.
var freshCode = []byte{
	0x48, 0xff, 0xc3, // inc %rbx
	0x48, 0x8b, 0x04, 0x25, 0x00, 0x10, 0x10, 0x00, // mov 0x101000,%rax
	0x48, 0xff, 0xc0, // inc %rax
	0x48, 0x89, 0x04, 0x25, 0x00, 0x10, 0x10, 0x00, // mov %rax,0x101000
	0x48, 0x01, 0xd8, // add %rbx,%rax
	0x66, 0x0f, 0x76, 0xc0, // pcmpeqd %xmm0,%xmm0
	0x66, 0x0f, 0xfb, 0xd8, // psubq %xmm0,%xmm3
	0x66, 0x48, 0x0f, 0x7e, 0xd9, // movq %xmm3,%rcx
	0x48, 0x01, 0xc8, // add %rcx,%rax
	0x48, 0xbe, 0x00, 0x08, 0x01, 0x00, 0x00, 0x7e, 0x00, 0x00, // movabs $0x7e0000010800,%rsi
	0x48, 0x8b, 0x0e, // mov (%rsi),%rcx
	0x48, 0xff, 0xc1, // inc %rcx
	0x48, 0x89, 0x0e, // mov %rcx,(%rsi)
	0x48, 0x01, 0xc8, // add %rcx,%rax
	0x66, 0xba, 0x01, 0x05, // mov $0x501,%dx
	0xef,       // +0x43 out %eax,(%dx)
	0xeb, 0xba, // jmp 0
}

const freshOut = codeAddr + 0x43

// trackAll makes startFresh protect all of guest memory, as on a host
// with swap (TestFreshTrackAll).
var trackAll bool

func startFresh(t *testing.T, code []byte) *VCPU {
	t.Helper()
	lockThread(t)
	mem := newMem(t)
	require.NoError(t, mem.Write(codeAddr, code))
	v, err := spawner(t).startWith(mem, testBoot(), options{track: true, trackAll: trackAll})
	if errors.Is(err, ErrNoWriteTracking) {
		t.Skip(err)
	}
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, v.Close()) })
	return v
}

// TestFreshReset takes a snapshot at the guest's first hypercall and
// resets the guest to it after each later one: every round after a reset
// reports what the first round after the snapshot did, so registers
// (general and SSE), guest memory and the signal stack all went back.
func TestFreshReset(t *testing.T) {
	v := startFresh(t, freshCode)
	assert.Equal(t, vcpu.Exit{Kind: vcpu.ExitHypercall, Nr: 1, Arg: 4, RIP: freshOut}, run(t, v))
	s, err := v.Snapshot()
	require.NoError(t, err)
	image := make([]byte, 0x1000)
	require.NoError(t, v.mem.Read(dataAddr, image))

	// Without a reset the guest counts on.
	assert.EqualValues(t, 8, run(t, v).Arg)
	assert.EqualValues(t, 12, run(t, v).Arg)

	for range 5 {
		var written [][2]uint64
		require.NoError(t, v.Reset(s, func(addr, n uint64) error {
			written = append(written, [2]uint64{addr, n})
			off, err := v.mem.Slice(addr, n)
			if err != nil {
				return err
			}
			copy(off, image[addr-dataAddr:])
			return nil
		}))
		// Only the data page was written in guest memory.
		assert.Equal(t, [][2]uint64{{dataAddr, 0x1000}}, written)
		assert.Equal(t, vcpu.Exit{Kind: vcpu.ExitHypercall, Nr: 1, Arg: 8, RIP: freshOut}, run(t, v))
	}
}

// TestFreshResetOneScan: a reset finds the written pages and protects them
// again in one PAGEMAP_SCAN call, however many ranges were written (here
// two: the data page and a page of the signal stack), where a call costs
// several µs.
func TestFreshResetOneScan(t *testing.T) {
	if swapOn() {
		t.Skip("with swap on, every tracked range is scanned apart")
	}
	v := startFresh(t, freshCode)
	run(t, v)
	s, err := v.Snapshot()
	require.NoError(t, err)
	run(t, v)
	calls := v.track.calls
	var written [][2]uint64
	require.NoError(t, v.Reset(s, func(addr, n uint64) error {
		written = append(written, [2]uint64{addr, n})
		return nil
	}))
	assert.Equal(t, [][2]uint64{{dataAddr, 0x1000}}, written)
	assert.Equal(t, 1, v.track.calls-calls)
}

// TestFreshStackOnSignalStack: a guest whose stack pointer is on the
// signal stack at a hypercall still has its signal frame at the top of the
// signal stack (SS_AUTODISARM), where the snapshot's is: the snapshot, and
// resets to it, work wherever RSP was at either end. The kernel used to put
// the frame below RSP then, and Reset refused.
func TestFreshStackOnSignalStack(t *testing.T) {
	code := []byte{
		0x66, 0xba, 0x01, 0x05, // +0x00 mov $0x501,%dx
		0xef,                                                       // +0x04 out %eax,(%dx)
		0x48, 0xbc, 0x00, 0x80, 0x01, 0x00, 0x00, 0x7e, 0x00, 0x00, // +0x05 movabs $0x7e0000018000,%rsp
		0x48, 0xff, 0xc3, // +0x0f inc %rbx
		0x48, 0x89, 0xd8, // +0x12 mov %rbx,%rax
		0xef,       // +0x15 out %eax,(%dx)
		0xeb, 0xf7, // +0x16 jmp 0x0f
	}
	hypercall := func(rbx uint64) vcpu.Exit {
		return vcpu.Exit{Kind: vcpu.ExitHypercall, Nr: 1, Arg: rbx, RIP: codeAddr + 0x15}
	}
	nothing := func(uint64, uint64) error { return nil }
	v := startFresh(t, code)
	run(t, v)
	s, err := v.Snapshot()
	require.NoError(t, err)
	assert.Equal(t, hypercall(1), run(t, v))
	assert.Equal(t, hypercall(2), run(t, v))
	for range 3 {
		require.NoError(t, v.Reset(s, nothing))
		assert.Equal(t, hypercall(1), run(t, v))
	}

	// A snapshot taken with RSP on the signal stack.
	w := startFresh(t, code)
	run(t, w)
	run(t, w)
	s, err = w.Snapshot()
	require.NoError(t, err)
	assert.Equal(t, hypercall(2), run(t, w))
	assert.Equal(t, hypercall(3), run(t, w))
	for range 3 {
		require.NoError(t, w.Reset(s, nothing))
		assert.Equal(t, hypercall(2), run(t, w))
	}
}

// TestFreshNewPage: a page the guest first touches after the snapshot is
// reported written too (the kernel tracks pages that were never mapped),
// and the guest reads it as the snapshot had it after the reset.
func TestFreshNewPage(t *testing.T) {
	v := startFresh(t, []byte{
		0x66, 0xba, 0x01, 0x05, // mov $0x501,%dx
		0xef,             // +0x04 out %eax,(%dx)
		0x48, 0xff, 0xc3, // inc %rbx
		0x48, 0x8b, 0x04, 0x25, 0x00, 0x00, 0x3f, 0x00, // mov 0x3f0000,%rax
		0x48, 0x01, 0xd8, // add %rbx,%rax
		0x48, 0x89, 0x04, 0x25, 0x00, 0x00, 0x3f, 0x00, // mov %rax,0x3f0000
		0xeb, 0xe3, // jmp 0
	})
	const page = testMemSize - stackSize
	assert.EqualValues(t, 0, run(t, v).Arg)
	s, err := v.Snapshot()
	require.NoError(t, err)
	assert.EqualValues(t, 1, run(t, v).Arg)
	assert.EqualValues(t, 3, run(t, v).Arg, "the word counts on without a reset")
	for range 3 {
		var written [][2]uint64
		require.NoError(t, v.Reset(s, func(addr, n uint64) error {
			written = append(written, [2]uint64{addr, n})
			return v.mem.Zero(addr, n) // the snapshot had no page there
		}))
		assert.Equal(t, [][2]uint64{{page, 0x1000}}, written)
		assert.EqualValues(t, 1, run(t, v).Arg)
	}
}

// TestFreshTrackAll runs the tests of resets with all of guest memory
// write-protected from the start, as where swap is on.
func TestFreshTrackAll(t *testing.T) {
	trackAll = true
	defer func() { trackAll = false }()
	t.Run("reset", TestFreshReset)
	t.Run("new page", TestFreshNewPage)
	t.Run("nothing written", TestFreshResetNothingWritten)
}

// TestFreshResetNothingWritten: a reset right after the snapshot reports no
// guest memory, and the guest goes on as from the snapshot.
func TestFreshResetNothingWritten(t *testing.T) {
	v := startFresh(t, freshCode)
	run(t, v)
	s, err := v.Snapshot()
	require.NoError(t, err)
	require.NoError(t, v.Reset(s, func(addr, n uint64) error {
		t.Errorf("reported [%#x, +%#x) written", addr, n)
		return nil
	}))
	// The monitor's own writes do not count either: they do not go
	// through the guest process's page tables.
	require.NoError(t, v.mem.PutUint64(dataAddr+8, 1))
	require.NoError(t, v.Reset(s, func(addr, n uint64) error {
		t.Errorf("reported [%#x, +%#x) written", addr, n)
		return nil
	}))
	assert.EqualValues(t, 8, run(t, v).Arg)
}

// TestFreshRestoreError: an error from the caller's restore fails the
// reset with it.
func TestFreshRestoreError(t *testing.T) {
	v := startFresh(t, freshCode)
	run(t, v)
	s, err := v.Snapshot()
	require.NoError(t, err)
	run(t, v)
	boom := errors.New("boom")
	assert.ErrorIs(t, v.Reset(s, func(uint64, uint64) error { return boom }), boom)
}

// TestFreshNotParked: Snapshot and Reset need a guest parked at a
// hypercall of a process started by NewFresh.
func TestFreshNotParked(t *testing.T) {
	v := startFresh(t, []byte{0x0f, 0x0b}) // ud2
	assert.Equal(t, vcpu.ExitFault, run(t, v).Kind)
	_, err := v.Snapshot()
	assert.ErrorContains(t, err, "not parked at a hypercall")

	_, w := start(t, freshCode)
	run(t, w)
	_, err = w.Snapshot()
	assert.ErrorContains(t, err, "not started by NewFresh")
}

// TestFreshSharedState resets a second process of the same guest to the
// first one's snapshot.
func TestFreshSharedState(t *testing.T) {
	v := startFresh(t, freshCode)
	run(t, v)
	s, err := v.Snapshot()
	require.NoError(t, err)

	w := startFresh(t, freshCode)
	run(t, w)
	run(t, w)
	assert.EqualValues(t, 12, run(t, w).Arg)
	require.NoError(t, w.mem.PutUint64(dataAddr, 1)) // the snapshot's memory
	require.NoError(t, w.Reset(s, func(uint64, uint64) error { return nil }))
	assert.EqualValues(t, 8, run(t, w).Arg)
}

// TestFreshAdopt: a second process of the same guest, parked at the same
// hypercall (same RIP, RAX and RDX) with other registers, takes the first
// one's snapshot instead of its own and goes on from it; a state taken at
// another hypercall (another argument) is refused, with nothing changed.
func TestFreshAdopt(t *testing.T) {
	code := []byte{
		0x48, 0xff, 0xc3, // inc %rbx
		0x48, 0x89, 0x1c, 0x25, 0x00, 0x10, 0x10, 0x00, // mov %rbx,0x101000
		0xb8, 0x00, 0x01, 0x00, 0x00, // mov $0x100,%eax
		0x66, 0xba, 0x01, 0x05, // mov $0x501,%dx
		0xef,       // out %eax,(%dx)
		0xeb, 0xe9, // jmp 0
	}
	v := startFresh(t, code)
	run(t, v)
	s, err := v.Snapshot()
	require.NoError(t, err)

	w := startFresh(t, code)
	for range 3 {
		run(t, w)
	}
	own, err := w.Snapshot()
	require.NoError(t, err)
	other := *s
	other.report[1]++ // RAX
	same, err := w.Adopt(own, &other)
	require.NoError(t, err)
	assert.False(t, same)
	same, err = w.Adopt(own, s)
	require.NoError(t, err)
	assert.True(t, same)
	run(t, w)
	n, err := w.mem.Uint64(dataAddr)
	require.NoError(t, err)
	assert.EqualValues(t, 2, n, "RBX went on from s's 1, not w's own 3")
}

// TestFreshSandbox: the tracked process still has no descriptor the
// monitor did not leave it: only the userfaultfd.
func TestFreshSandbox(t *testing.T) {
	v := startFresh(t, freshCode)
	run(t, v)
	fds, err := fdTargets(v.pid)
	require.NoError(t, err)
	assert.Equal(t, []string{"anon_inode:[userfaultfd]"}, fds)
}

// fdTargets lists what the descriptors of process pid point to.
func fdTargets(pid int) ([]string, error) {
	dir := fmt.Sprintf("/proc/%d/fd/", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		l, err := os.Readlink(dir + e.Name())
		if err != nil {
			return nil, err
		}
		out = append(out, l)
	}
	return out, nil
}

// BenchmarkReset measures one round of freshCode (a hypercall) followed by
// a reset, against the round alone.
func BenchmarkReset(b *testing.B) {
	lockThread(b)
	mem := newMem(b)
	if err := mem.Write(codeAddr, freshCode); err != nil {
		b.Fatal(err)
	}
	v, err := NewFresh(spawner(b), mem, testBoot())
	if err != nil {
		b.Fatal(err)
	}
	defer v.Close()
	run(b, v)
	s, err := v.Snapshot()
	if err != nil {
		b.Fatal(err)
	}
	b.Run("run", func(b *testing.B) {
		for range b.N {
			run(b, v)
		}
	})
	b.Run("run+reset", func(b *testing.B) {
		for range b.N {
			run(b, v)
			if err := v.Reset(s, func(uint64, uint64) error { return nil }); err != nil {
				b.Fatal(err)
			}
		}
	})
}
