// Package tsc reads the host's time-stamp counter and measures its frequency
// when the hypervisor cannot report it.
package tsc

import (
	"time"

	"golang.org/x/sys/unix"
)

// Read returns the current time-stamp counter (rdtsc).
func Read() uint64

// Calibrate measures the TSC frequency in Hz against the monotonic clock over
// about d. Longer windows give more precise results; 10 ms gives about 0.01%.
func Calibrate(d time.Duration) uint64 {
	t0, c0 := time.Now(), Read()
	for time.Since(t0) < d {
	}
	t1, c1 := time.Now(), Read()
	ns := t1.Sub(t0).Nanoseconds()
	if ns <= 0 || c1 <= c0 {
		return 0
	}
	return uint64(float64(c1-c0) * 1e9 / float64(ns))
}

// Mark is a reading of the TSC and the monotonic clock together, the start of
// a measurement that Since completes: whatever the process does meanwhile
// is the measurement window, so no CPU time is spent waiting it out.
type Mark struct {
	t time.Time
	c uint64
}

// Now marks the start of a measurement.
func Now() Mark { return Mark{time.Now(), Read()} }

// Hz returns the TSC frequency measured from m to now, first sleeping until
// at least d has passed since m, as the precision needs (500 µs: about
// 0.02%). It returns 0 if the TSC did not advance.
func (m Mark) Hz(d time.Duration) uint64 {
	if left := d - time.Since(m.t); left > 0 {
		sleep(left)
	}
	t1, c1 := time.Now(), Read()
	ns := t1.Sub(m.t).Nanoseconds()
	if ns <= 0 || c1 <= m.c {
		return 0
	}
	return uint64(float64(c1-m.c) * 1e9 / float64(ns))
}

// sleep blocks the calling thread for d with nanosleep. time.Sleep would
// round a wait under a millisecond up to one when the process is otherwise
// idle (Go's poller waits in whole milliseconds), and the rest of a window
// is typically under 100 µs: a cold start would wait ten times that.
func sleep(d time.Duration) {
	ts := unix.NsecToTimespec(d.Nanoseconds())
	for unix.Nanosleep(&ts, &ts) == unix.EINTR {
	}
}
