package process

import (
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// exitReleasesFilter says whether the kernel drops a process's seccomp
// filters when the process exits (Linux 6.11 and later) rather than when it
// is reaped. Only then does a receive blocked on the listener return once
// the guest process dies: before, it sleeps until the monitor reaps the
// process, which it does only after the receive returns.
func exitReleasesFilter() bool {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return false
	}
	return releaseAtLeast(unix.ByteSliceToString(u.Release[:]), 6, 11)
}

// releaseAtLeast reports whether a kernel release string (uname -r, such
// as "6.8.0-45-generic") is major.minor or later; false when it does not
// start with two dot-separated numbers.
func releaseAtLeast(release string, major, minor int) bool {
	parts := strings.SplitN(release, ".", 3)
	if len(parts) < 2 {
		return false
	}
	ma, err := strconv.Atoi(parts[0])
	if err != nil {
		return false
	}
	end := strings.IndexFunc(parts[1], func(r rune) bool { return r < '0' || r > '9' })
	if end == 0 {
		return false
	}
	if end < 0 {
		end = len(parts[1])
	}
	mi, err := strconv.Atoi(parts[1][:end])
	if err != nil {
		return false
	}
	return ma > major || ma == major && mi >= minor
}
