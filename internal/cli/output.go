package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// IgnoreSIGPIPE makes a write to a pipe whose reader has gone fail with
// EPIPE instead of killing the process, so that a guest whose console went
// away still ends with its own outcome.
func IgnoreSIGPIPE() { signal.Ignore(syscall.SIGPIPE) }

// MessageWait bounds how long a command waits for one of its own messages
// (the error report, -stats) to be written: a stderr nobody reads must not
// hold the exit after a guest has been stopped.
const MessageWait = 500 * time.Millisecond

// ErrStalled is returned by a Bounded writer once a Write has overrun its
// wait.
var ErrStalled = errors.New("output stalled")

// WriteContext writes b to w, giving up when ctx is done. A write to a pipe
// nobody reads blocks in the kernel, where nothing cancels it, so it goes on
// on a goroutine of its own until the process exits; b must not change.
func WriteContext(ctx context.Context, w io.Writer, b []byte) error {
	done := make(chan error, 1)
	go func() {
		_, err := w.Write(b)
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Bounded returns a writer that gives each Write to w at most wait; after
// one overruns, it writes nothing more and fails with ErrStalled. It is for
// one goroutine's use.
func Bounded(w io.Writer, wait time.Duration) io.Writer {
	return &bounded{w: w, wait: wait}
}

type bounded struct {
	w       io.Writer
	wait    time.Duration
	stalled bool
}

func (b *bounded) Write(p []byte) (int, error) {
	if b.stalled {
		return 0, ErrStalled
	}
	ctx, cancel := context.WithTimeout(context.Background(), b.wait)
	defer cancel()
	// The write may outlive this call, and callers such as fmt reuse p.
	if err := WriteContext(ctx, b.w, bytes.Clone(p)); err != nil {
		if ctx.Err() != nil {
			b.stalled = true
			return 0, ErrStalled
		}
		return 0, err
	}
	return len(p), nil
}

// QueueMaxBytes bounds the bytes a Queue holds, besides its count of
// writes: a writer may expand what it is given (a ConsoleWriter prefixes and
// escapes a guest's lines), so a count alone could let a flood of large
// writes pile up gigabytes while the destination is stalled.
const QueueMaxBytes = 16 << 20

// Queue is a writer that never blocks its callers: each Write is copied into
// a queue of at most a fixed number of writes and QueueMaxBytes bytes, which
// a goroutine of its own writes to the destination in order. While the queue
// is full, and once it is closed, writes are dropped and counted. It is for a
// server's log and its guests' console output on a stderr or stdout that
// nobody may be reading: a stalled reader then costs log lines, never a
// request's deadline or a shutdown.
type Queue struct {
	ch      chan []byte
	queued  atomic.Int64 // bytes in ch or being written
	dropped atomic.Int64
	done    chan struct{}
	// mu orders Writes (read-locked) before Close, which closes ch: a
	// handler that logs after a forced shutdown must find the queue closed,
	// not send on a closed channel.
	mu     sync.RWMutex
	closed bool
}

// NewQueue starts a Queue of at most n writes in front of w.
func NewQueue(w io.Writer, n int) *Queue {
	q := &Queue{ch: make(chan []byte, n), done: make(chan struct{})}
	go func() {
		defer close(q.done)
		reported := int64(0)
		for b := range q.ch {
			w.Write(b)
			q.queued.Add(-int64(len(b)))
			// Say what was lost once the destination moves again.
			if d := q.dropped.Load(); d > reported {
				fmt.Fprintf(w, "tender: %d output lines dropped: the reader did not keep up\n", d-reported)
				reported = d
			}
		}
	}()
	return q
}

// Write queues a copy of p, or drops it when the queue is full or closed; it
// always reports success.
func (q *Queue) Write(p []byte) (int, error) {
	n := int64(len(p))
	q.mu.RLock()
	defer q.mu.RUnlock()
	if !q.closed {
		if q.queued.Add(n) <= QueueMaxBytes {
			select {
			case q.ch <- bytes.Clone(p):
				return len(p), nil
			default:
			}
		}
		q.queued.Add(-n)
	}
	q.dropped.Add(1)
	return len(p), nil
}

// Dropped is the number of writes dropped so far.
func (q *Queue) Dropped() int64 { return q.dropped.Load() }

// Close stops taking writes and waits at most wait for those queued to be
// written. Writes that follow are dropped.
func (q *Queue) Close(wait time.Duration) {
	q.mu.Lock()
	if !q.closed {
		q.closed = true
		close(q.ch)
	}
	q.mu.Unlock()
	select {
	case <-q.done:
	case <-time.After(wait):
	}
}
