package cli

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// gatedWriter is a destination that takes nothing until its gate opens, as
// a stdout nobody reads, and then keeps all it is given.
type gatedWriter struct {
	gate chan struct{}
	mu   sync.Mutex
	buf  bytes.Buffer
}

func (g *gatedWriter) Write(p []byte) (int, error) {
	<-g.gate
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.buf.Write(p)
}

func (g *gatedWriter) String() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.buf.String()
}

// TestQueueBytes: while the destination is stalled, a queue with room for
// many writes still holds at most QueueMaxBytes; the writes that do not fit
// are dropped, counted, and reported once the destination moves again,
// and every write that fitted arrives whole and in order.
func TestQueueBytes(t *testing.T) {
	const chunk = 1 << 20
	dst := &gatedWriter{gate: make(chan struct{})}
	q := NewQueue(dst, 4096)
	fits := QueueMaxBytes / chunk
	for i := range fits + 3 {
		n, err := q.Write(bytes.Repeat([]byte{'a' + byte(i%26)}, chunk))
		require.NoError(t, err)
		require.Equal(t, chunk, n)
	}
	assert.EqualValues(t, 3, q.Dropped(), "writes beyond %d bytes queued are dropped", QueueMaxBytes)

	// Room is made as the destination takes what was queued.
	close(dst.gate)
	require.Eventually(t, func() bool { return len(dst.String()) >= fits*chunk }, 10*time.Second, time.Millisecond)
	q.Write([]byte("after\n"))
	q.Close(10 * time.Second)
	// The drops are reported after the write the destination was stalled
	// on.
	const report = "tender: 3 output lines dropped: the reader did not keep up\n"
	got := dst.String()
	require.Equal(t, 1, strings.Count(got, report), "the drops are reported once")
	got = strings.Replace(got, report, "", 1)
	require.Len(t, got, fits*chunk+len("after\n"))
	for i := range fits {
		require.Equal(t, strings.Repeat(string(rune('a'+i%26)), chunk), got[i*chunk:(i+1)*chunk], "write %d", i)
	}
	assert.Equal(t, "after\n", got[fits*chunk:])
	assert.EqualValues(t, 3, q.Dropped())
}

// TestQueueWriteAfterClose: a Write after Close (a handler logging after a
// forced shutdown) is dropped and counted, not a panic.
func TestQueueWriteAfterClose(t *testing.T) {
	var dst bytes.Buffer
	q := NewQueue(&dst, 16)
	q.Write([]byte("before\n"))
	q.Close(10 * time.Second)
	var n int
	var err error
	require.NotPanics(t, func() { n, err = q.Write([]byte("after\n")) })
	assert.NoError(t, err)
	assert.Equal(t, len("after\n"), n)
	assert.EqualValues(t, 1, q.Dropped())
	q.Close(0) // a second Close is harmless too
	assert.Equal(t, "before\n", dst.String())
}
