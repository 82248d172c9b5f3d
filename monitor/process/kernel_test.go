package process

import (
	"fmt"
	"math"
	"testing"
)

// TestReleaseAtLeast: the waking receive is used from Linux 6.11 only; a
// release string that does not parse counts as older (the poll is safe
// everywhere).
func TestReleaseAtLeast(t *testing.T) {
	for rel, want := range map[string]bool{
		"6.11.0":           true,
		"6.18.44-fc-v1272": true,
		"7.0":              true,
		"6.10.14-1-lts":    false,
		"6.8.0-1065-azure": false,
		"6.6.58":           false,
		"5.19.0":           false,
		"6.11rc3":          true,
		"6.1-foo":          false,
		"":                 false,
		"6":                false,
		"x.y":              false,
		"6.-1":             false,
		"10.2.0":           true,
		"6.110.0":          true,
	} {
		if got := releaseAtLeast(rel, 6, 11); got != want {
			t.Errorf("releaseAtLeast(%q, 6, 11) = %v, want %v", rel, got, want)
		}
	}
}

// FuzzReleaseAtLeast: no release string panics the check, a release at
// least major.minor is at least every earlier version, and a plain
// "a.b.0" compares as the numbers do.
func FuzzReleaseAtLeast(f *testing.F) {
	for _, rel := range []string{
		"6.11.0", "6.18.44-fc-v1272", "7.0", "6.10.14-1-lts", "6.8.0-1065-azure",
		"6.6.58", "5.19.0", "6.11rc3", "6.1-foo", "", "6", "x.y", "6.-1", "10.2.0",
		"6.110.0", "+7.0", "6.99999999999999999999", "99999999999999999999.1",
	} {
		f.Add(rel, 6, 11)
	}
	f.Fuzz(func(t *testing.T, rel string, major, minor int) {
		if releaseAtLeast(rel, major, minor) {
			if minor > math.MinInt && !releaseAtLeast(rel, major, minor-1) {
				t.Fatalf("%q is %d.%d but not %d.%d", rel, major, minor, major, minor-1)
			}
			if major > math.MinInt && !releaseAtLeast(rel, major-1, math.MaxInt) {
				t.Fatalf("%q is %d.%d but not %d.%d", rel, major, minor, major-1, math.MaxInt)
			}
		}
		a, b := int(uint16(len(rel))), int(uint16(major)) // two small versions
		got := releaseAtLeast(fmt.Sprintf("%d.%d.0-x", a, b), major, minor)
		if want := a > major || a == major && b >= minor; got != want {
			t.Fatalf("%d.%d.0-x against %d.%d: %v", a, b, major, minor, got)
		}
	})
}
