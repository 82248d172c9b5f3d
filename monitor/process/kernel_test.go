package process

import "testing"

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
