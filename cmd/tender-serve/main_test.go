package main

import (
	"math"
	"testing"
	"time"

	"github.com/tendervm/tender/gateway"
	"github.com/tendervm/tender/monitor"
)

// TestWriteBackstop: the server's write timeout covers the body, the
// invocation and the reply as the gateway and the pool read their flags
// (0: their defaults), is none when the body or the reply has no limit,
// and saturates rather than wrapping negative.
func TestWriteBackstop(t *testing.T) {
	const s = time.Second
	defaults := gateway.DefaultBodyTimeout + monitor.DefaultFnTimeout + gateway.DefaultWriteTimeout
	for _, c := range []struct {
		name            string
		body, fn, write time.Duration
		want            time.Duration
	}{
		{"set", 1 * s, 2 * s, 3 * s, 6 * s},
		{"defaults", gateway.DefaultBodyTimeout, monitor.DefaultFnTimeout, gateway.DefaultWriteTimeout, defaults},
		{"zeros mean defaults", 0, 0, 0, defaults},
		{"zero timeout", 1 * s, 0, 3 * s, 4*s + monitor.DefaultFnTimeout},
		{"negative timeout", 1 * s, -1, 3 * s, 4*s + monitor.DefaultFnTimeout},
		{"zero body timeout", 0, 2 * s, 3 * s, 5*s + gateway.DefaultBodyTimeout},
		{"zero write timeout", 1 * s, 2 * s, 0, 3*s + gateway.DefaultWriteTimeout},
		{"no body limit", -1, 2 * s, 3 * s, 0},
		{"no reply limit", 1 * s, 2 * s, -1, 0},
		{"huge timeout", 1 * s, math.MaxInt64, 3 * s, math.MaxInt64},
		{"huge everything", math.MaxInt64, math.MaxInt64, math.MaxInt64, math.MaxInt64},
	} {
		if got := writeBackstop(c.body, c.fn, c.write); got != c.want {
			t.Errorf("%s: writeBackstop(%v, %v, %v) = %v, want %v", c.name, c.body, c.fn, c.write, got, c.want)
		}
	}
}
