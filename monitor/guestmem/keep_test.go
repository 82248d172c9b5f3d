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
	require.NoError(t, m.Keep())
	require.ErrorContains(t, m.Keep(), "without a snapshot")

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
	require.ErrorContains(t, m.Keep(), "only shared memory")
}
