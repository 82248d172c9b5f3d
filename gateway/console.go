package gateway

import (
	"bytes"
	"io"
	"sync"

	"github.com/tendervm/tender/monitor"
)

// ConsoleWriter is a console for the instances of a pool (monitor.Config's
// Console) that keeps guest output recognisable and harmless: every line a
// guest writes becomes one line of the form PREFIX TEXT, with TEXT escaped
// as by monitor.EscapeGuestText. A guest can thus neither forge lines that look like the
// server's own (a JSON log line) nor send control sequences to a terminal.
//
// Each Write is one console write of one instance, and instances write
// concurrently, so a line written in pieces cannot be joined again: the
// piece after a write's last newline ends a line of its own. Writes are
// serialised, and a Write that fails (the destination is gone) fails only
// that guest's console, never the server's log, which has a writer of its
// own.
type ConsoleWriter struct {
	mu     sync.Mutex
	w      io.Writer
	prefix string
	buf    []byte // reused under mu
}

// NewConsoleWriter returns a ConsoleWriter writing to w, starting each line
// with prefix.
func NewConsoleWriter(w io.Writer, prefix string) *ConsoleWriter {
	return &ConsoleWriter{w: w, prefix: prefix}
}

// Write writes p as lines, in one write to the destination.
func (c *ConsoleWriter) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	b := c.buf[:0]
	for rest := p; len(rest) > 0; {
		line, tail, _ := bytes.Cut(rest, []byte{'\n'})
		b = append(b, c.prefix...)
		b = append(b, monitor.EscapeGuestText(string(line))...)
		b = append(b, '\n')
		rest = tail
	}
	if cap(b) <= 64<<10 { // keep a usual buffer, not a flood's
		c.buf = b
	}
	if _, err := c.w.Write(b); err != nil {
		return 0, err
	}
	return len(p), nil
}
