package monitor

import (
	"io"
	"sync"
	"time"
)

// ConsoleBuffer is how far, in bytes, a guest's console output may run ahead
// of Config.Console: output the console has not taken yet, besides the chunk
// a Write is working on. A guest that gets this far ahead waits for the
// console, and a deadline, cancellation or pool stop ends the wait.
const ConsoleBuffer = 64 << 10

// consoleSink stands between the vCPU and Config.Console. A Write can block
// for ever (a pipe nobody reads), and a vCPU blocked in one can be neither
// kicked nor stopped, so the vCPU only copies the guest's output into a
// bounded buffer, and a goroutine of the sink's writes it to the console.
// Every wait of the vCPU's here ends when the run is kicked.
//
// One sink serves one run: write, flush and end are called by the vCPU's
// goroutine, wake by anyone.
type consoleSink struct {
	w io.Writer

	kicked   chan struct{} // closed by wake: the run is being stopped
	kickOnce sync.Once
	started  bool // the drain goroutine was started

	mu      sync.Mutex
	pending []byte // accepted, not yet taken by the drain
	spare   []byte // the drain's last chunk, reused for pending
	writing int    // bytes in the Write under way
	failed  bool   // a Write failed: the rest is discarded
	failure error  // that Write's error
	// onFail, when set, is called once, on the drain's goroutine, when a
	// Write fails (Config.ConsoleRequired).
	onFail  func(error)
	closed  bool  // the run ended: the drain stops
	dropped int64 // bytes never to be delivered

	ready chan struct{} // 1-buffered: pending is no longer empty, or closed
	space chan struct{} // 1-buffered: the drain took pending, or a Write ended
}

func newConsoleSink(w io.Writer) *consoleSink {
	return &consoleSink{
		w:      w,
		kicked: make(chan struct{}),
		ready:  make(chan struct{}, 1),
		space:  make(chan struct{}, 1),
	}
}

// notify posts a wake-up on a 1-buffered channel, unless one is pending.
func notify(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// wake ends every wait of the run's, now and later: the run is kicked.
func (s *consoleSink) wake() { s.kickOnce.Do(func() { close(s.kicked) }) }

// write queues p for the console, waiting for room while the buffer is
// full. If the run is kicked meanwhile, the rest of p is dropped: the vCPU
// then stops at its next entry.
func (s *consoleSink) write(p []byte) {
	if !s.started {
		s.started = true
		go s.drain()
	}
	for len(p) > 0 {
		s.mu.Lock()
		if s.failed {
			s.dropped += int64(len(p))
			s.mu.Unlock()
			return
		}
		if k := min(ConsoleBuffer-len(s.pending), len(p)); k > 0 {
			wasEmpty := len(s.pending) == 0
			s.pending = append(s.pending, p[:k]...)
			s.mu.Unlock()
			p = p[k:]
			if wasEmpty {
				notify(s.ready)
			}
			continue
		}
		s.mu.Unlock()
		select {
		case <-s.space:
		case <-s.kicked:
			s.mu.Lock()
			s.dropped += int64(len(p))
			s.mu.Unlock()
			return
		}
	}
}

// flush waits until the console has taken everything written so far, a
// Write has failed, or the run is kicked.
func (s *consoleSink) flush() { s.flushUntil(nil, nil) }

// flushBy is flush that also gives up at deadline or when done is closed,
// for a wait that no kick bounds.
func (s *consoleSink) flushBy(deadline time.Time, done <-chan struct{}) {
	if s.flushed() {
		return
	}
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	s.flushUntil(t.C, done)
}

func (s *consoleSink) flushUntil(expired <-chan time.Time, done <-chan struct{}) {
	for !s.flushed() {
		select {
		case <-s.space:
		case <-s.kicked:
			return
		case <-expired:
			return
		case <-done:
			return
		}
	}
}

// flushed reports whether nothing is left to deliver.
func (s *consoleSink) flushed() bool {
	if !s.started {
		return true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.failed || len(s.pending) == 0 && s.writing == 0
}

// err returns the error of the Write that failed, if one did.
func (s *consoleSink) err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.failure
}

// end stops the drain and returns how many bytes were not delivered: those
// dropped, those still buffered, and those of a Write under way, which may
// yet complete. The drain goroutine returns at once, or when that Write does.
func (s *consoleSink) end() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		s.dropped += int64(len(s.pending) + s.writing)
		s.pending, s.spare = nil, nil
		notify(s.ready)
	}
	return s.dropped
}

// drain writes what the vCPU queues to the console, a chunk at a time,
// until end. A failed or short Write makes the sink discard the rest.
func (s *consoleSink) drain() {
	for {
		s.mu.Lock()
		for len(s.pending) == 0 && !s.closed {
			s.mu.Unlock()
			<-s.ready
			s.mu.Lock()
		}
		if s.closed {
			s.mu.Unlock()
			return
		}
		chunk := s.pending
		s.pending, s.spare = s.spare[:0], nil
		s.writing = len(chunk)
		s.mu.Unlock()
		notify(s.space)

		n, err := s.w.Write(chunk)
		n = min(max(n, 0), len(chunk))
		if err == nil && n < len(chunk) {
			err = io.ErrShortWrite
		}

		s.mu.Lock()
		s.writing = 0
		if s.closed {
			s.mu.Unlock()
			return
		}
		failed := err != nil && !s.failed
		if failed {
			s.failed, s.failure = true, err
			s.dropped += int64(len(chunk)-n) + int64(len(s.pending))
			s.pending = s.pending[:0]
		}
		s.spare = chunk
		s.mu.Unlock()
		notify(s.space)
		if failed && s.onFail != nil {
			s.onFail(err)
		}
	}
}
