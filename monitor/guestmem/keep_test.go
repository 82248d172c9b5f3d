package guestmem

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestKeepPutBack: PutBack restores what Keep saw, zero where the memory
// had no page, and PutBackNoted restores the ranges Note logged, once.
func TestKeepPutBack(t *testing.T) {
	m, err := NewShared(16 * pageSize)
	require.NoError(t, err)
	defer m.Close()
	require.NoError(t, m.Write(0x1000, []byte("snapshot")))
	require.NoError(t, m.Write(0x3ff8, []byte("12345678abcdefgh"))) // across a page boundary
	require.ErrorContains(t, m.PutBack(0, 8), "no snapshot kept")
	m.Note(m.buf[:8]) // before Keep: not logged
	k, err := m.Keep()
	require.NoError(t, err)
	require.NoError(t, k.Close())
	_, err = m.Keep()
	require.ErrorContains(t, err, "without a snapshot")

	require.NoError(t, m.Write(0x1000, []byte("request!")))
	require.NoError(t, m.Write(0x3ff8, []byte("ABCDEFGHIJKLMNOP")))
	require.NoError(t, m.Write(0x8000, []byte("hole")))
	require.NoError(t, m.PutBack(0x1000, pageSize))
	require.NoError(t, m.PutBack(0x3000, 2*pageSize))
	require.NoError(t, m.PutBack(0x8000, pageSize))
	got := func(addr, n uint64) string {
		b, err := m.Slice(addr, n)
		require.NoError(t, err)
		return string(b)
	}
	assert.Equal(t, "snapshot", got(0x1000, 8))
	assert.Equal(t, "12345678abcdefgh", got(0x3ff8, 16))
	assert.Equal(t, "\x00\x00\x00\x00", got(0x8000, 4))

	b, err := m.Slice(0x2000, 16)
	require.NoError(t, err)
	copy(b, "monitor's write!")
	m.Note(b)
	m.Note(make([]byte, 8)) // not guest memory: ignored
	for range 1000 {
		m.Note(b) // the same range again: logged once
	}
	assert.Len(t, m.noted, 1)
	require.NoError(t, m.PutBackNoted())
	assert.Equal(t, make([]byte, 16), b)
	copy(b, "again")
	require.NoError(t, m.PutBackNoted())
	assert.Equal(t, "again", string(b[:5]), "the log is emptied")
}

func TestKeepNeedsShared(t *testing.T) {
	m, err := New(4 * pageSize)
	require.NoError(t, err)
	defer m.Close()
	_, err = m.Keep()
	require.ErrorContains(t, err, "only shared memory")
}

// TestKeepFrom: a memory that keeps another's copy gets its contents
// (copied where they differ, its own other pages cleared) and is put back to
// it; the copy stays mapped until the last memory and the Keep caller have
// closed it.
func TestKeepFrom(t *testing.T) {
	a, err := NewShared(16 * pageSize)
	require.NoError(t, err)
	require.NoError(t, a.Write(0x1000, []byte("image")))
	require.NoError(t, a.Write(0x5000, []byte("image too")))
	k, err := a.Keep()
	require.NoError(t, err)

	b, err := NewShared(16 * pageSize)
	require.NoError(t, err)
	defer b.Close()
	require.NoError(t, b.Write(0x1000, []byte("IMAGE")))   // differs
	require.NoError(t, b.Write(0x3000, []byte("b's own"))) // not in the image
	require.NoError(t, b.KeepFrom(k))
	_, err = b.Keep()
	require.ErrorContains(t, err, "without a snapshot")
	require.NoError(t, a.Close())
	require.NoError(t, k.Close()) // b still keeps it

	got := func(addr, n uint64) string {
		s, err := b.Slice(addr, n)
		require.NoError(t, err)
		return string(s)
	}
	assert.Equal(t, "image", got(0x1000, 5))
	assert.Equal(t, "image too", got(0x5000, 9))
	pages, err := b.allocated()
	require.NoError(t, err)
	assert.Equal(t, [][2]int64{{0x1000, 0x2000}, {0x3000, 0x4000}, {0x5000, 0x6000}}, pages, "b keeps its own page, cleared")
	assert.Equal(t, "\x00\x00\x00", got(0x3000, 3))

	require.NoError(t, b.Write(0x1000, []byte("write")))
	require.NoError(t, b.PutBack(0x1000, pageSize))
	assert.Equal(t, "image", got(0x1000, 5))

	c, err := NewShared(8 * pageSize)
	require.NoError(t, err)
	defer c.Close()
	assert.ErrorContains(t, c.KeepFrom(k), "same size")
}
