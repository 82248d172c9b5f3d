package guestmem

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tendervm/tender/monitor/vcpu"
)

const testPages = 64

// layoutFrom derives a valid region table from fuzz bytes: pairs of (gap,
// size) in pages, with a permission from a third byte.
func layoutFrom(b []byte) []vcpu.Region {
	var rs []vcpu.Region
	var page uint64
	for len(b) >= 3 && len(rs) < 8 {
		gap, size, perm := uint64(b[0]%4), uint64(b[1]%8)+1, vcpu.Perm(b[2]%8)
		b = b[3:]
		if page+gap+size > testPages {
			break
		}
		if perm == 0 {
			perm = vcpu.Read
		}
		rs = append(rs, vcpu.Region{Addr: (page + gap) * pageSize, Size: size * pageSize, Perm: perm})
		page += gap + size
	}
	return rs
}

// reference decides an access page by page: the first denied address and
// what the guest may do there, or ok.
func reference(rs []vcpu.Region, addr, n uint64, need vcpu.Perm) (at uint64, have vcpu.Perm, ok bool) {
	perm := func(a uint64) vcpu.Perm {
		for _, r := range rs {
			if a >= r.Addr && a < r.Addr+r.Size {
				return r.Perm
			}
		}
		return 0
	}
	for p := addr &^ (pageSize - 1); p < addr+n; p += pageSize {
		if h := perm(p); h&need != need || h == 0 {
			return max(p, addr), h, false
		}
	}
	return 0, 0, true
}

func FuzzGuest(f *testing.F) {
	f.Add([]byte{0, 2, 5, 1, 3, 3, 0, 1, 7}, uint64(0x1000), uint64(0x2000), uint8(1))
	f.Add([]byte{1, 1, 1, 0, 1, 7}, uint64(0x1ff8), uint64(16), uint8(2))
	f.Add([]byte{0, 7, 3}, uint64(0), uint64(0), uint8(3))
	f.Add([]byte{0, 7, 3}, ^uint64(0)-4, uint64(8), uint8(1))
	f.Add([]byte{2, 3, 7, 0, 2, 1}, uint64(0x4fff), uint64(2), uint8(1))
	f.Fuzz(func(t *testing.T, lay []byte, addr, n uint64, needb uint8) {
		m, err := New(testPages * pageSize)
		require.NoError(t, err)
		defer m.Close()
		rs := layoutFrom(lay)
		require.NoError(t, m.SetLayout(rs))
		need := vcpu.Perm(needb%7) + 1
		b, err := m.Guest(addr, n, need)
		if n == 0 {
			require.NoError(t, err)
			assert.Empty(t, b)
			return
		}
		if addr > m.Size() || n > m.Size()-addr {
			var re *RangeError
			require.True(t, errors.As(err, &re), "addr %#x n %#x: %v", addr, n, err)
			return
		}
		at, have, ok := reference(rs, addr, n, need)
		if ok {
			require.NoError(t, err, "layout %v", rs)
			require.Len(t, b, int(n))
			return
		}
		var ae *AccessError
		require.True(t, errors.As(err, &ae), "layout %v addr %#x n %#x need %v: got %v", rs, addr, n, need, err)
		assert.Equal(t, at, ae.At, "first denied address")
		assert.Equal(t, have, ae.Have)
		assert.Nil(t, b)
	})
}

func TestGuestAccess(t *testing.T) {
	m, err := New(testPages * pageSize)
	require.NoError(t, err)
	defer m.Close()
	_, err = m.Guest(0x1000, 1, vcpu.Read)
	require.ErrorAs(t, err, new(*AccessError), "no layout: nothing is accessible")

	require.NoError(t, m.SetLayout([]vcpu.Region{
		{Addr: 0x1000, Size: 0x1000, Perm: vcpu.Read},
		{Addr: 0x2000, Size: 0x2000, Perm: vcpu.Read | vcpu.Exec},
		{Addr: 0x4000, Size: 0x4000, Perm: vcpu.Read | vcpu.Write},
		{Addr: 0x9000, Size: 0x1000, Perm: vcpu.Read | vcpu.Write},
	}))
	for _, c := range []struct {
		addr, n uint64
		need    vcpu.Perm
		err     string
	}{
		{0x1000, 0x3000, vcpu.Read, ""},
		{0x4000, 0x4000, vcpu.Read | vcpu.Write, ""},
		{0x0fff, 2, vcpu.Read, "not mapped for the guest at 0xfff"},
		{0x3ff0, 0x20, vcpu.Write, "needs -w-, but the guest's page at 0x3ff0 is r-x"},
		{0x7ff0, 0x20, vcpu.Write, "not mapped for the guest at 0x8000"},
		{0x8000, 0x2000, vcpu.Read, "not mapped for the guest at 0x8000"},
		{0x9000, 0x1001, vcpu.Read, "not mapped for the guest at 0xa000"},
		{0x2000, 1, vcpu.Exec | vcpu.Write, "needs -wx"},
	} {
		b, err := m.Guest(c.addr, c.n, c.need)
		if c.err == "" {
			assert.NoError(t, err, "%#x+%#x", c.addr, c.n)
			assert.Len(t, b, int(c.n))
			continue
		}
		assert.ErrorContains(t, err, c.err, "%#x+%#x", c.addr, c.n)
	}
}

func TestSetLayoutRejects(t *testing.T) {
	m, err := New(16 * pageSize)
	require.NoError(t, err)
	defer m.Close()
	for _, c := range []struct {
		rs  []vcpu.Region
		err string
	}{
		{[]vcpu.Region{{Addr: 0x1000, Size: 0}}, "empty or not page-aligned"},
		{[]vcpu.Region{{Addr: 0x1001, Size: 0x1000}}, "empty or not page-aligned"},
		{[]vcpu.Region{{Addr: 0x2000, Size: 0x2000}, {Addr: 0x3000, Size: 0x1000}}, "overlaps"},
		{[]vcpu.Region{{Addr: 0xf000, Size: 0x2000}}, "outside guest memory"},
		{[]vcpu.Region{{Addr: ^uint64(0) &^ 0xfff, Size: 0x1000}}, "outside guest memory"},
	} {
		assert.ErrorContains(t, m.SetLayout(c.rs), c.err, "%v", c.rs)
	}
}
