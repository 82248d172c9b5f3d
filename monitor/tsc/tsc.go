// Package tsc reads the host's time-stamp counter and measures its frequency
// when the hypervisor cannot report it.
package tsc

import "time"

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
