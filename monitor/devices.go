package monitor

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/tendervm/tender/monitor/loader"
)

// matchedDevice is a declared device of one kind with the device attached
// for it; handle is its index in the guest's manifest.
type matchedDevice[D any] struct {
	handle int
	name   string
	dev    D
}

// matchDevices pairs the guest's declared devices of type typ with the
// attached ones by name: every declared device must be attached and every
// attached one declared. It returns them in manifest order, none when the
// guest declares none. kind ("network", "block") and flag (-net, -block)
// name them in errors.
func matchDevices[D comparable](declared []loader.Device, typ uint32, attached map[string]D, kind, flag string) ([]matchedDevice[D], error) {
	var names []string
	for _, d := range declared {
		if d.Type == typ {
			names = append(names, d.Name)
		}
	}
	var extra []string
	for name := range attached {
		if !slices.Contains(names, name) {
			extra = append(extra, name)
		}
	}
	if len(extra) > 0 {
		sort.Strings(extra)
		decl := "declares no " + kind + " devices"
		if len(names) > 0 {
			decl = "declares only " + quoteList(names)
		}
		return nil, fmt.Errorf("monitor: %s device %q was attached but the guest %s", kind, extra[0], decl)
	}
	var zero D
	var m []matchedDevice[D]
	for i, d := range declared {
		if d.Type != typ {
			continue
		}
		dev := attached[d.Name]
		if dev == zero {
			return nil, fmt.Errorf("monitor: guest declares %s device %q but none was attached (%s %s=...)", kind, d.Name, flag, d.Name)
		}
		m = append(m, matchedDevice[D]{handle: i, name: d.Name, dev: dev})
	}
	return m, nil
}

// handleIndex maps each handle of a manifest of n devices to the index of
// its device among those matched, -1 for a device of another kind.
func handleIndex[D any](n int, m []matchedDevice[D]) []int {
	index := make([]int, n)
	for i := range index {
		index[i] = -1
	}
	for i, d := range m {
		index[d.handle] = i
	}
	return index
}

func quoteList(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = fmt.Sprintf("%q", n)
	}
	return strings.Join(q, ", ")
}
