package gateway_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/tendervm/tender/gateway"
	"github.com/tendervm/tender/monitor"
)

// countingWriter is a ResponseWriter that keeps one header map and counts
// the deadlines set through http.ResponseController, so a run of the
// handler costs only what the gateway itself does.
type countingWriter struct {
	h             http.Header
	code          int
	body          bytes.Buffer
	reads, writes int
}

func (w *countingWriter) Header() http.Header { return w.h }

func (w *countingWriter) WriteHeader(code int) { w.code = code }

func (w *countingWriter) Write(p []byte) (int, error) { return w.body.Write(p) }

func (w *countingWriter) SetReadDeadline(time.Time) error { w.reads++; return nil }

func (w *countingWriter) SetWriteDeadline(time.Time) error { w.writes++; return nil }

// TestInvokeCost pins what the gateway adds to an invocation on its hot
// path, beyond Pool.Invoke: one read deadline set and lifted around the
// body, one write deadline once the outcome is known, and at most three
// allocations (the body, the reply header's values and their digits).
func TestInvokeCost(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates on its own")
	}
	p := newPool(t, newHost(t), "fn_echo", monitor.PoolConfig{MaxInstances: 1})
	g := gateway.New(gateway.Config{Pool: p})
	payload := bytes.Repeat([]byte("x"), 64)
	rd := bytes.NewReader(payload)
	r, err := http.NewRequest(http.MethodPost, "/invoke", io.NopCloser(rd))
	if err != nil {
		t.Fatal(err)
	}
	r.ContentLength = int64(len(payload))
	w := &countingWriter{h: http.Header{}}
	serveOnce := func() {
		rd.Reset(payload)
		clear(w.h)
		w.body.Reset()
		w.code, w.reads, w.writes = 0, 0, 0
		g.ServeHTTP(w, r)
	}
	serveOnce() // boots the instance
	if w.code != http.StatusOK || !bytes.Equal(w.body.Bytes(), payload) || w.h.Get(gateway.HeaderStatus) != "0" ||
		w.h.Get("Content-Length") != "64" || w.h.Get("Content-Type") != "application/octet-stream" {
		t.Fatalf("got %d %v %q, want 200 and the payload", w.code, w.h, w.body.Bytes())
	}
	if w.reads != 2 || w.writes != 1 {
		t.Errorf("deadlines set: %d read, %d write; want 2 read (set, lifted) and 1 write", w.reads, w.writes)
	}

	ctx := context.Background()
	invoke := testing.AllocsPerRun(200, func() {
		if _, err := p.Invoke(ctx, monitor.Request{Body: payload}); err != nil {
			t.Fatal(err)
		}
	})
	handler := testing.AllocsPerRun(200, serveOnce)
	t.Logf("allocations per invocation: %.1f through the gateway, %.1f through Pool.Invoke", handler, invoke)
	if extra := handler - invoke; extra > 3 {
		t.Errorf("the gateway allocates %.1f times per invocation beyond Pool.Invoke's %.1f; want at most 3", extra, invoke)
	}
}
