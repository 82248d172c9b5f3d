package monitor

import (
	"bytes"
	"sync"
	"testing"
	"time"
)

// gatedWriter takes writes only while its gate is open, and records them.
type gatedWriter struct {
	gate chan struct{} // closed: writes go through
	mu   sync.Mutex
	buf  bytes.Buffer
}

func (g *gatedWriter) Write(p []byte) (int, error) {
	<-g.gate
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.buf.Write(p)
}

// TestSinkOrderAndBound writes more than ConsoleBuffer to a console that is
// closed at first: the writer waits for room, and the console gets every
// byte in order once it opens.
func TestSinkOrderAndBound(t *testing.T) {
	g := &gatedWriter{gate: make(chan struct{})}
	s := newConsoleSink(g)
	var want bytes.Buffer
	for i := range 3 * ConsoleBuffer / 1000 {
		want.Write(bytes.Repeat([]byte{byte('a' + i%26)}, 1000))
	}
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		b := want.Bytes()
		for len(b) > 0 {
			k := min(len(b), 7000)
			s.write(b[:k])
			b = b[k:]
		}
		s.flush()
	}()
	select {
	case <-wrote:
		t.Fatal("3x ConsoleBuffer accepted by a console that takes nothing")
	case <-time.After(50 * time.Millisecond):
	}
	close(g.gate)
	<-wrote
	if dropped := s.end(); dropped != 0 {
		t.Errorf("dropped %d bytes", dropped)
	}
	if !bytes.Equal(g.buf.Bytes(), want.Bytes()) {
		t.Errorf("console got %d bytes, not the %d written in order", g.buf.Len(), want.Len())
	}
}

// TestSinkKick kicks a writer waiting for a console that never takes
// anything: write and flush return, and end counts every byte as dropped.
func TestSinkKick(t *testing.T) {
	g := &gatedWriter{gate: make(chan struct{})}
	s := newConsoleSink(g)
	time.AfterFunc(20*time.Millisecond, s.wake)
	s.write(make([]byte, 3*ConsoleBuffer)) // one chunk in the Write, one buffered, one waiting
	s.flush()
	if dropped := s.end(); dropped != 3*ConsoleBuffer {
		t.Errorf("dropped %d bytes, want %d", dropped, 3*ConsoleBuffer)
	}
	close(g.gate) // the drain's blocked Write returns, and the drain ends
}

// shortWriter takes one byte less than it is given, without an error.
type shortWriter struct{}

func (shortWriter) Write(p []byte) (int, error) { return max(len(p)-1, 0), nil }

// TestSinkShortWrite treats a short Write as a failed one: the rest of the
// output is discarded, and flush does not wait for it.
func TestSinkShortWrite(t *testing.T) {
	s := newConsoleSink(shortWriter{})
	s.write([]byte("hello\n"))
	s.flush()
	s.write([]byte("more\n"))
	s.flush()
	if dropped := s.end(); dropped != 1+5 {
		t.Errorf("dropped %d bytes, want 6", dropped)
	}
}
