package gateway_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/tendervm/tender/gateway"
	"github.com/tendervm/tender/hypercall"
	"github.com/tendervm/tender/monitor"
)

// TestDeclaredLengthNotPreallocated: a request declaring the largest body
// allowed whose client then sends a few bytes and fails must not have cost
// a buffer of the declared length, or each connection sending headers only
// would hold a MiB. TestBodySizes checks that bodies that do arrive are
// read whole.
func TestDeclaredLengthNotPreallocated(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates on its own")
	}
	p := newPool(t, newHost(t), "fn_echo", monitor.PoolConfig{MaxInstances: 1})
	g := gateway.New(gateway.Config{Pool: p})
	r, err := http.NewRequest(http.MethodPost, "/invoke",
		io.NopCloser(io.MultiReader(strings.NewReader("a few bytes"), errReader{})))
	if err != nil {
		t.Fatal(err)
	}
	r.ContentLength = hypercall.FnRequestMax
	w := &countingWriter{h: http.Header{}}

	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	g.ServeHTTP(w, r)
	runtime.ReadMemStats(&after)
	if w.code != http.StatusBadRequest || w.h.Get(gateway.HeaderError) != "bad_request" {
		t.Fatalf("got %d %v %q, want 400 bad_request", w.code, w.h, w.body.Bytes())
	}
	// Far below the declared length, far above what the handler needs.
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("allocated %d bytes for a body declared %d bytes long that failed after 11", alloc, hypercall.FnRequestMax)
	if alloc >= hypercall.FnRequestMax/4 {
		t.Errorf("allocated %d bytes for a body that sent 11 of a declared %d: the buffer was sized from the declaration", alloc, hypercall.FnRequestMax)
	}
}

// errReader is a client connection failing.
type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("connection reset") }

// TestBodySizes echoes bodies around the sizes where the gateway's body
// buffer grows, of declared and unknown length, arriving in pieces as from
// a network: each must reach the function whole.
func TestBodySizes(t *testing.T) {
	p := newPool(t, newHost(t), "fn_echo", monitor.PoolConfig{MaxInstances: 1})
	g := gateway.New(gateway.Config{Pool: p})
	for _, size := range []int{0, 1, 64<<10 - 1, 64 << 10, 64<<10 + 1, 200 << 10, 512<<10 + 3, hypercall.FnRequestMax} {
		for _, declared := range []bool{true, false} {
			t.Run(fmt.Sprintf("%d/declared=%v", size, declared), func(t *testing.T) {
				payload := make([]byte, size)
				for i := range payload {
					payload[i] = byte(i * 7)
				}
				r, err := http.NewRequest(http.MethodPost, "/invoke", io.NopCloser(iotest.HalfReader(bytes.NewReader(payload))))
				if err != nil {
					t.Fatal(err)
				}
				r.ContentLength = -1
				if declared {
					r.ContentLength = int64(size)
				}
				w := &countingWriter{h: http.Header{}}
				g.ServeHTTP(w, r)
				if w.code != http.StatusOK || !bytes.Equal(w.body.Bytes(), payload) {
					t.Fatalf("got %d %v and %d bytes, want 200 and the %d bytes sent", w.code, w.h, w.body.Len(), size)
				}
			})
		}
	}
}
