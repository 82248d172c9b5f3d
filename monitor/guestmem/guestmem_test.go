package guestmem

import (
	"math"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSliceBounds(t *testing.T) {
	for _, shared := range []bool{false, true} {
		var m *Memory
		var err error
		if shared {
			m, err = NewShared(1 << 20)
		} else {
			m, err = New(1 << 20)
		}
		require.NoError(t, err)
		size := m.Size()
		ok := []struct{ addr, n uint64 }{{0, 0}, {0, size}, {size, 0}, {size - 1, 1}, {4096, 8}}
		for _, c := range ok {
			s, err := m.Slice(c.addr, c.n)
			assert.NoError(t, err, "%#x+%#x", c.addr, c.n)
			assert.Len(t, s, int(c.n))
			assert.Equal(t, int(c.n), cap(s), "capacity clipped: no access past the range")
		}
		bad := []struct{ addr, n uint64 }{
			{size, 1}, {size - 1, 2}, {0, size + 1}, {size + 1, 0},
			{math.MaxUint64, 1}, {1, math.MaxUint64}, {math.MaxUint64, math.MaxUint64}, {size / 2, math.MaxUint64 - size/4},
		}
		for _, c := range bad {
			_, err := m.Slice(c.addr, c.n)
			var re *RangeError
			assert.ErrorAs(t, err, &re, "%#x+%#x", c.addr, c.n)
		}
		require.NoError(t, m.PutUint64(size-8, 0x1122334455667788))
		v, err := m.Uint64(size - 8)
		require.NoError(t, err)
		assert.EqualValues(t, 0x1122334455667788, v)
		var re *RangeError
		if assert.ErrorAs(t, m.PutUint64(size-7, 1), &re) {
			assert.Equal(t, RangeError{Addr: size - 7, Len: 8, Size: size}, *re)
		}
		tail := RangeError{Addr: size - 1, Len: 2, Size: size}
		for name, err := range map[string]error{
			"Write": m.Write(size-1, []byte{1, 2}),
			"Read":  m.Read(size-1, make([]byte, 2)),
			"Zero":  m.Zero(size-1, 2),
		} {
			if assert.ErrorAs(t, err, &re, name) {
				assert.Equal(t, tail, *re, name)
			}
		}
		assert.Equal(t, shared, m.FD() >= 0)
		require.NoError(t, m.Close())
		require.NoError(t, m.Close(), "Close is idempotent")
	}
}

func TestNewRejects(t *testing.T) {
	_, err := New(0)
	assert.ErrorContains(t, err, "size 0x0 is not a positive multiple of the page size")
	_, err = New(4097)
	assert.ErrorContains(t, err, "size 0x1001 is not a positive multiple of the page size")
	_, err = NewShared(100)
	assert.ErrorContains(t, err, "size 0x64 is not a positive multiple of the page size")
}

func rssKiB(t *testing.T) int {
	b, err := os.ReadFile("/proc/self/status")
	require.NoError(t, err)
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			n, err := strconv.Atoi(f[1])
			require.NoError(t, err)
			return n
		}
	}
	t.Fatal("no VmRSS in /proc/self/status")
	return 0
}

// TestLazy checks that a large guest costs only the pages it touches.
func TestLazy(t *testing.T) {
	before := rssKiB(t)
	m, err := New(1 << 30)
	require.NoError(t, err)
	defer m.Close()
	for off := uint64(0); off < 1<<20; off += 4096 { // touch 1 MiB spread over the first MiB
		require.NoError(t, m.PutUint64(off, 1))
	}
	require.NoError(t, m.PutUint64(512<<20, 1))
	grew := rssKiB(t) - before
	assert.Less(t, grew, 8<<10, "touching 1 MiB of a 1 GiB guest grew RSS by %d KiB", grew)
	assert.GreaterOrEqual(t, grew, 1<<10-64, "the touched pages are resident")
}

// TestPopulate checks that Populate allocates exactly the pages of its range,
// refuses ranges outside memory, and leaves the memory usable.
func TestPopulate(t *testing.T) {
	for _, shared := range []bool{false, true} {
		newMem := New
		if shared {
			newMem = NewShared
		}
		m, err := newMem(64 << 20)
		require.NoError(t, err)
		before := rssKiB(t)
		require.NoError(t, m.Populate(4<<20+100, 2<<20)) // 2 MiB from mid-page: 513 pages
		grew := rssKiB(t) - before
		assert.GreaterOrEqual(t, grew, 2<<10, "shared=%v: the range is resident", shared)
		assert.Less(t, grew, 3<<10, "shared=%v: only the range is resident", shared)
		require.NoError(t, m.Populate(0, 0))
		var re *RangeError
		assert.ErrorAs(t, m.Populate(64<<20-10, 11), &re, "past the end")
		if assert.ErrorAs(t, m.Populate(^uint64(0), 2), &re, "wrapping") {
			assert.Equal(t, RangeError{Addr: ^uint64(0), Len: 2, Size: 64 << 20}, *re)
		}
		require.NoError(t, m.PutUint64(4<<20+100, 7))
		v, err := m.Uint64(4<<20 + 100)
		require.NoError(t, err)
		assert.EqualValues(t, 7, v)
		require.NoError(t, m.Close())
	}
}

// TestZero checks that Zero clears its range, partial pages included, and
// leaves the whole pages of anonymous memory unallocated.
func TestZero(t *testing.T) {
	for _, shared := range []bool{false, true} {
		newMem := New
		if shared {
			newMem = NewShared
		}
		m, err := newMem(4 << 20)
		require.NoError(t, err)
		require.NoError(t, m.Populate(0, 1<<20))
		for off := uint64(0); off < 1<<20; off += 8 {
			require.NoError(t, m.PutUint64(off, ^uint64(0)))
		}
		require.NoError(t, m.Zero(100, 64<<10))
		if !shared { // before any read, which maps the zero page
			n, err := m.Resident(4096, 60<<10)
			require.NoError(t, err)
			assert.Zero(t, n, "whole pages zeroed are not allocated")
		}
		for _, c := range []struct {
			addr uint64
			want uint64
		}{{92, ^uint64(0)}, {100, 0}, {4096, 0}, {100 + 64<<10 - 8, 0}, {100 + 64<<10, ^uint64(0)}} {
			v, err := m.Uint64(c.addr)
			require.NoError(t, err)
			assert.Equal(t, c.want, v, "shared=%v: word at %#x", shared, c.addr)
		}
		var re *RangeError
		assert.ErrorAs(t, m.Zero(4<<20-8, 9), &re, "past the end")
		require.NoError(t, m.Close())
	}
}
