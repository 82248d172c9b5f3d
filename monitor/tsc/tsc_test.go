package tsc

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"golang.org/x/sys/unix"
)

func TestCalibrate(t *testing.T) {
	a := Read()
	hz := Calibrate(5 * time.Millisecond)
	assert.Greater(t, Read(), a, "TSC must advance")
	// Any x86-64 TSC made in this century runs between 100 MHz and 10 GHz.
	assert.Greater(t, hz, uint64(100e6))
	assert.Less(t, hz, uint64(10e9))
}

// TestCalibrateShortWindow checks that the short window the process backend
// uses agrees with a long one.
func TestCalibrateShortWindow(t *testing.T) {
	long := float64(Calibrate(20 * time.Millisecond))
	short := float64(Calibrate(500 * time.Microsecond))
	assert.InEpsilon(t, long, short, 0.01, "500 µs: %.0f Hz, 20 ms: %.0f Hz", short, long)
}

// TestMark checks that a measurement over time the process spends otherwise
// (here asleep) agrees with a busy one.
func TestMark(t *testing.T) {
	long := float64(Calibrate(20 * time.Millisecond))
	m := Now()
	time.Sleep(time.Millisecond)
	assert.InEpsilon(t, long, float64(m.Hz(500*time.Microsecond)), 0.01, "window already past")
	assert.InEpsilon(t, long, float64(Now().Hz(500*time.Microsecond)), 0.01, "window waited for")
}

// TestMarkWaitsOutSignals checks that the window is waited out in full when
// signals keep interrupting the sleep (as Go's preemption signal does).
func TestMarkWaitsOutSignals(t *testing.T) {
	long := float64(Calibrate(20 * time.Millisecond))
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			_ = unix.Kill(unix.Getpid(), unix.SIGURG) // ignored by Go's handler
			time.Sleep(20 * time.Microsecond)
		}
	}()
	defer func() { close(stop); <-done }()
	for range 20 {
		m := Now()
		hz := m.Hz(2 * time.Millisecond)
		assert.GreaterOrEqual(t, time.Since(m.t), 2*time.Millisecond, "window cut short")
		assert.InEpsilon(t, long, float64(hz), 0.01)
	}
}

// BenchmarkMarkHz measures a measurement whose window starts at the call,
// the case of a cold start that reaches the guest's clock early. It takes
// the window and a few µs, not the millisecond time.Sleep would round to.
func BenchmarkMarkHz(b *testing.B) {
	for b.Loop() {
		Now().Hz(500 * time.Microsecond)
	}
}
