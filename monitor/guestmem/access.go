package guestmem

import (
	"fmt"

	"github.com/tendervm/tender/monitor/vcpu"
)

// AccessError reports a guest range that the guest itself may not access the
// way a hypercall asked: some byte of it lies in no region of the guest's
// layout, or in one without the permission needed.
type AccessError struct {
	Addr, Len uint64
	// Need is the permission the hypercall needed.
	Need vcpu.Perm
	// At is the first address without it; Have is what the guest may do
	// there (0: nothing, the address is not mapped for the guest).
	At   uint64
	Have vcpu.Perm
}

// Error implements error.
func (e *AccessError) Error() string {
	if e.Have == 0 {
		return fmt.Sprintf("guest range [%#x, +%#x) is not mapped for the guest at %#x", e.Addr, e.Len, e.At)
	}
	return fmt.Sprintf("guest range [%#x, +%#x) needs %v, but the guest's page at %#x is %v", e.Addr, e.Len, e.Need, e.At, e.Have)
}

// SetLayout records the guest's own view of its memory: the same region table
// the backends build its mappings from (sorted, disjoint, page-aligned, inside
// memory). Guest checks every hypercall buffer against it. Until it is set,
// the guest may access nothing.
func (m *Memory) SetLayout(regions []vcpu.Region) error {
	var end uint64
	for i, r := range regions {
		if r.Size == 0 || r.Addr%pageSize != 0 || r.Size%pageSize != 0 {
			return fmt.Errorf("guestmem: region %d [%#x, +%#x) is empty or not page-aligned", i, r.Addr, r.Size)
		}
		if r.Addr < end {
			return fmt.Errorf("guestmem: region %d at %#x overlaps or precedes region %d", i, r.Addr, i-1)
		}
		if _, err := m.Slice(r.Addr, r.Size); err != nil {
			return fmt.Errorf("guestmem: region %d: %w", i, err)
		}
		end = r.Addr + r.Size
	}
	m.layout = append([]vcpu.Region(nil), regions...)
	return nil
}

// Guest is the accessor for buffers a guest names in its hypercalls: it
// returns the host view of [addr, addr+n) only if the guest itself may access
// every byte of it with need (vcpu.Read for data the monitor reads, vcpu.Write
// for data it writes, both for in/out structures). The monitor thus never
// reads or writes, on a guest's behalf, what the guest could not: its
// read-only or executable pages, or the monitor's own structures that share
// guest memory. An empty range touches nothing and is always allowed.
func (m *Memory) Guest(addr, n uint64, need vcpu.Perm) ([]byte, error) {
	if n == 0 {
		return []byte{}, nil
	}
	b, err := m.Slice(addr, n)
	if err != nil {
		return nil, err
	}
	at, end := addr, addr+n // Slice checked that addr+n does not wrap
	for _, r := range m.layout {
		if at >= end {
			break
		}
		if r.Addr+r.Size <= at {
			continue
		}
		if r.Addr > at {
			break // a hole before this region
		}
		if r.Perm&need != need {
			return nil, &AccessError{Addr: addr, Len: n, Need: need, At: at, Have: r.Perm}
		}
		at = r.Addr + r.Size
	}
	if at < end {
		return nil, &AccessError{Addr: addr, Len: n, Need: need, At: at}
	}
	return b, nil
}
