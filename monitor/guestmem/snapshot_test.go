package guestmem

import (
	"encoding/binary"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tendervm/tender/monitor/vcpu"
)

// TestFreezeRevert: after Freeze, writes land in private pages that Revert
// drops, so the memory reads as it did at Freeze.
func TestFreezeRevert(t *testing.T) {
	m, err := NewShared(16 * pageSize)
	require.NoError(t, err)
	defer m.Close()
	require.NoError(t, m.Write(0x1000, []byte("snapshot")))
	require.NoError(t, m.Freeze(nil))
	require.ErrorContains(t, m.Freeze(nil), "already frozen")

	for range 2 {
		require.NoError(t, m.Write(0x1000, []byte("request!")))
		require.NoError(t, m.Write(0x5008, []byte("more")))
		b, _ := m.Slice(0x1000, 8)
		assert.Equal(t, "request!", string(b))
		require.NoError(t, m.Revert())
		assert.Equal(t, "snapshot", string(b), "a slice taken before Revert reads the snapshot")
		c, _ := m.Slice(0x5008, 4)
		assert.Equal(t, []byte{0, 0, 0, 0}, c)
	}
}

func TestFreezeNeedsShared(t *testing.T) {
	m, err := New(4 * pageSize)
	require.NoError(t, err)
	defer m.Close()
	require.ErrorContains(t, m.Freeze(nil), "only shared memory")
	require.ErrorContains(t, m.Revert(), "not frozen")
}

// mapped reads /proc/self/pagemap: whether the page at host address addr is
// present in the mapping.
func mapped(t *testing.T, addr uintptr) bool {
	t.Helper()
	f, err := os.Open("/proc/self/pagemap")
	require.NoError(t, err)
	defer f.Close()
	var e [8]byte
	_, err = f.ReadAt(e[:], int64(addr/pageSize*8))
	require.NoError(t, err)
	return binary.LittleEndian.Uint64(e[:])>>63 == 1
}

// TestRevertWritten: with a Pagemap, Revert drops the pages written since
// Freeze, more of them than one scan returns, and leaves a page only read
// mapped.
func TestRevertWritten(t *testing.T) {
	pm := pagemap(t)
	const pages = 256
	m, err := NewShared(pages * pageSize)
	require.NoError(t, err)
	defer m.Close()
	for i := uint64(0); i < pages; i++ {
		require.NoError(t, m.PutUint64(i*pageSize, i))
	}
	require.NoError(t, m.Freeze(pm))
	read := m.HostAddr() + pageSize
	for range 2 {
		v, err := m.Uint64(pageSize)
		require.NoError(t, err)
		require.EqualValues(t, 1, v)
		for i := uint64(2); i < pages; i += 2 { // not adjacent: one region each
			require.NoError(t, m.PutUint64(i*pageSize, 1000+i))
		}
		require.NoError(t, m.Revert())
		assert.True(t, mapped(t, read), "a page only read stays mapped")
		assert.False(t, mapped(t, m.HostAddr()+2*pageSize), "a page written is dropped")
		for i := uint64(0); i < pages; i++ {
			v, err := m.Uint64(i * pageSize)
			require.NoError(t, err)
			require.Equal(t, i, v, "page %d", i)
		}
	}
}

// TestRevertCopiesBack: up to CopyBackPages private pages get the snapshot
// copied back and stay mapped; a page written again after that is put back
// the same way.
func TestRevertCopiesBack(t *testing.T) {
	pm := pagemap(t)
	m, err := NewShared(64 * pageSize)
	require.NoError(t, err)
	defer m.Close()
	require.NoError(t, m.Write(3*pageSize, []byte("snapshot")))
	require.NoError(t, m.Freeze(pm))
	for i := range 3 {
		require.NoError(t, m.Write(3*pageSize, []byte("request!")))
		require.NoError(t, m.PutUint64(uint64(10+i)*pageSize, 7))
		require.NoError(t, m.Revert())
		assert.True(t, mapped(t, m.HostAddr()+3*pageSize), "round %d: a page copied back stays mapped", i)
		b, err := m.Slice(3*pageSize, 8)
		require.NoError(t, err)
		assert.Equal(t, "snapshot", string(b), "round %d", i)
		for j := range 3 {
			v, err := m.Uint64(uint64(10+j) * pageSize)
			require.NoError(t, err)
			assert.Zero(t, v, "round %d: page %d", i, 10+j)
		}
	}
}

// TestNewView: views of a frozen memory read its snapshot, keep their
// writes to themselves, and revert to the snapshot.
func TestNewView(t *testing.T) {
	pm := pagemap(t)
	m, err := NewShared(16 * pageSize)
	require.NoError(t, err)
	defer m.Close()
	require.NoError(t, m.Write(pageSize, []byte("snapshot")))
	require.NoError(t, m.Freeze(pm))
	var views []*Memory
	for range 2 {
		v, err := NewView(m.FD(), m.Size(), pm)
		require.NoError(t, err)
		defer v.Close()
		assert.True(t, v.Frozen())
		assert.Equal(t, -1, v.FD())
		views = append(views, v)
	}
	require.NoError(t, views[0].Write(pageSize, []byte("view 0!!")))
	require.NoError(t, views[0].Zero(2*pageSize, pageSize))
	for i, mm := range []*Memory{m, views[1], views[0]} {
		b, _ := mm.Slice(pageSize, 8)
		want := "snapshot"
		if i == 2 {
			want = "view 0!!"
		}
		assert.Equal(t, want, string(b), "memory %d", i)
	}
	require.NoError(t, views[0].Revert())
	b, _ := views[0].Slice(pageSize, 8)
	assert.Equal(t, "snapshot", string(b))
}

// TestRevertWritable: with a layout, Revert looks at the pages from the
// lowest to the highest the guest may write, and WrittenOutside counts the
// pages written elsewhere, which it leaves (the monitor writes none there
// after Freeze).
func TestRevertWritable(t *testing.T) {
	pm := pagemap(t)
	m, err := NewShared(64 * pageSize)
	require.NoError(t, err)
	defer m.Close()
	require.NoError(t, m.SetLayout([]vcpu.Region{
		{Addr: 2 * pageSize, Size: 2 * pageSize, Perm: vcpu.Read | vcpu.Exec},
		{Addr: 8 * pageSize, Size: 4 * pageSize, Perm: vcpu.Read | vcpu.Write},
		{Addr: 12 * pageSize, Size: 4 * pageSize, Perm: vcpu.Read},
		{Addr: 16 * pageSize, Size: 48 * pageSize, Perm: vcpu.Read | vcpu.Write},
	}))
	require.NoError(t, m.Freeze(pm))
	n, err := m.WrittenOutside()
	require.NoError(t, err)
	assert.Zero(t, n)
	// Inside: the first and the last writable page, and a read-only page
	// between writable ones (in the span, so put back too).
	for _, p := range []uint64{8, 13, 63} {
		require.NoError(t, m.PutUint64(p*pageSize, 7))
	}
	n, err = m.WrittenOutside()
	require.NoError(t, err)
	assert.Zero(t, n, "every page written lies in the span")
	// Outside: below the lowest writable page.
	require.NoError(t, m.PutUint64(2*pageSize, 9))
	require.NoError(t, m.PutUint64(7*pageSize, 9))
	n, err = m.WrittenOutside()
	require.NoError(t, err)
	assert.Equal(t, 2, n)
	require.NoError(t, m.Revert())
	for _, p := range []uint64{8, 13, 63} {
		v, err := m.Uint64(p * pageSize)
		require.NoError(t, err)
		assert.Zero(t, v, "page %d put back", p)
	}
	v, err := m.Uint64(2 * pageSize)
	require.NoError(t, err)
	assert.Equal(t, uint64(9), v, "a page outside the span is not looked at")
}

// pagemap opens the process's pagemap for the test, which it skips on
// kernels without PAGEMAP_SCAN (Linux before 6.7).
func pagemap(t *testing.T) *Pagemap {
	t.Helper()
	pm, err := OpenPagemap()
	if err != nil {
		t.Skipf("no PAGEMAP_SCAN on this kernel: %v", err)
	}
	t.Cleanup(func() { pm.Close() })
	return pm
}
