package guestmem

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestFreezeRevert: after Freeze, writes land in private pages that Revert
// drops, so the memory reads as it did at Freeze.
func TestFreezeRevert(t *testing.T) {
	m, err := NewShared(16 * pageSize)
	require.NoError(t, err)
	defer m.Close()
	require.NoError(t, m.Write(0x1000, []byte("snapshot")))
	require.NoError(t, m.Freeze())
	require.ErrorContains(t, m.Freeze(), "already frozen")

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
	require.ErrorContains(t, m.Freeze(), "only shared memory")
	require.ErrorContains(t, m.Revert(), "not frozen")
}
