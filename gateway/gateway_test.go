package gateway_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tendervm/tender/gateway"
	"github.com/tendervm/tender/hypercall"
	"github.com/tendervm/tender/monitor"
)

// TestMain builds the function guests the tests boot, so `go test
// ./gateway` works on a fresh checkout.
func TestMain(m *testing.M) {
	cmd := exec.Command("make", "-s", "-C", "..", "guests")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "gateway: `make guests` failed:", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

func newHost(t testing.TB) *monitor.Host {
	t.Helper()
	h, err := monitor.NewHost(monitor.HostConfig{Backend: monitor.BackendAuto})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// newPool starts a pool of bin/guest/NAME.elf, closed at the end of the test.
func newPool(t testing.TB, h *monitor.Host, name string, cfg monitor.PoolConfig) *monitor.Pool {
	t.Helper()
	elf, err := os.ReadFile("../bin/guest/" + name + ".elf")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Guest.ELF, cfg.Guest.Name = elf, name
	p, err := h.NewPool(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// testLogger shows the gateway's logs with the test's output.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// serve puts a gateway over p behind a loopback server; the server closes
// before the pool (cleanups run last-in first-out).
func serve(t testing.TB, p *monitor.Pool) (*gateway.Gateway, *httptest.Server) {
	t.Helper()
	g := gateway.New(gateway.Config{Pool: p, Logger: testLogger(t)})
	srv := httptest.NewServer(g)
	t.Cleanup(srv.Close)
	return g, srv
}

type answer struct {
	status int
	header http.Header
	body   []byte
	close  bool // the reply said Connection: close (net/http takes the header out)
}

// do sends one request and reads the whole answer.
func do(t testing.TB, c *http.Client, method, url string, body io.Reader, hdr ...string) answer {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return answer{resp.StatusCode, resp.Header, b, resp.Close}
}

func post(t testing.TB, srv *httptest.Server, body string, hdr ...string) answer {
	t.Helper()
	return do(t, srv.Client(), http.MethodPost, srv.URL+"/invoke", strings.NewReader(body), hdr...)
}

// wantError checks a failed invocation's status, kind and one-line body.
func wantError(t testing.TB, a answer, status int, kind string) {
	t.Helper()
	if a.status != status || a.header.Get(gateway.HeaderError) != kind {
		t.Fatalf("got %d %s=%q %q, want %d %s", a.status, gateway.HeaderError, a.header.Get(gateway.HeaderError), a.body, status, kind)
	}
	if n := bytes.Count(a.body, []byte("\n")); n != 1 || a.body[len(a.body)-1] != '\n' {
		t.Errorf("error body %q: want one line", a.body)
	}
}

// outcomes reads tender_invocations_total by outcome from a registry.
func outcomes(t testing.TB, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "tender_invocations_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			out[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
		}
	}
	return out
}

func TestEcho(t *testing.T) {
	p := newPool(t, newHost(t), "fn_echo", monitor.PoolConfig{MaxInstances: 2})
	g, srv := serve(t, p)

	t.Run("RoundTrip", func(t *testing.T) {
		for _, body := range []string{"hello, tender", "", "\x00binary\xff"} {
			a := post(t, srv, body)
			if a.status != http.StatusOK || string(a.body) != body {
				t.Fatalf("got %d %q, want 200 %q", a.status, a.body, body)
			}
			if s := a.header.Get(gateway.HeaderStatus); s != "0" {
				t.Errorf("%s = %q, want 0", gateway.HeaderStatus, s)
			}
			if id, err := strconv.ParseUint(a.header.Get(gateway.HeaderRequestID), 10, 64); err != nil || id == 0 {
				t.Errorf("%s = %q, want a request id", gateway.HeaderRequestID, a.header.Get(gateway.HeaderRequestID))
			}
			if ct := a.header.Get("Content-Type"); ct != "application/octet-stream" {
				t.Errorf("Content-Type = %q", ct)
			}
		}
	})
	t.Run("LargestBody", func(t *testing.T) {
		body := bytes.Repeat([]byte("0123456789abcdef"), hypercall.FnRequestMax/16)
		a := do(t, srv.Client(), http.MethodPost, srv.URL+"/invoke", bytes.NewReader(body))
		if a.status != http.StatusOK || !bytes.Equal(a.body, body) {
			t.Fatalf("got %d with %d bytes, want 200 with the %d bytes sent", a.status, len(a.body), len(body))
		}
	})
	t.Run("TooLarge", func(t *testing.T) {
		body := make([]byte, hypercall.FnRequestMax+1)
		// Declared length, refused up front.
		a := do(t, srv.Client(), http.MethodPost, srv.URL+"/invoke", bytes.NewReader(body))
		wantError(t, a, http.StatusRequestEntityTooLarge, "too_large")
		// Chunked (a reader of unknown length): MaxBytesReader stops it.
		a = do(t, srv.Client(), http.MethodPost, srv.URL+"/invoke", io.MultiReader(bytes.NewReader(body)))
		wantError(t, a, http.StatusRequestEntityTooLarge, "too_large")
	})
	t.Run("BadTimeout", func(t *testing.T) {
		for _, v := range []string{"soon", "-1s", "0"} {
			wantError(t, post(t, srv, "x", gateway.HeaderTimeout, v), http.StatusBadRequest, "bad_request")
		}
	})
	t.Run("Routes", func(t *testing.T) {
		a := do(t, srv.Client(), http.MethodGet, srv.URL+"/invoke", nil)
		if a.status != http.StatusMethodNotAllowed || a.header.Get("Allow") != http.MethodPost {
			t.Errorf("GET /invoke: %d Allow=%q, want 405 Allow=POST", a.status, a.header.Get("Allow"))
		}
		if a := do(t, srv.Client(), http.MethodPost, srv.URL+"/healthz", nil); a.status != http.StatusMethodNotAllowed {
			t.Errorf("POST /healthz: %d, want 405", a.status)
		}
		if a := do(t, srv.Client(), http.MethodGet, srv.URL+"/nope", nil); a.status != http.StatusNotFound {
			t.Errorf("GET /nope: %d, want 404", a.status)
		}
	})
	t.Run("Metrics", func(t *testing.T) {
		a := do(t, srv.Client(), http.MethodGet, srv.URL+"/metrics", nil)
		if a.status != http.StatusOK {
			t.Fatalf("GET /metrics: %d", a.status)
		}
		text := string(a.body)
		for _, want := range []string{
			`tender_invocations_total{outcome="ok"} 4`, // 3 round trips and the largest body
			`tender_invocations_total{outcome="too_large"} 2`,
			`tender_invocations_total{outcome="bad_request"} 3`,
			`tender_invocations_total{outcome="fault"} 0`,
			`tender_invocation_duration_seconds_bucket{outcome="ok",le="1e-05"}`,
			`tender_instances{state="live"} `,
			`tender_instances{state="idle"} `,
			`tender_instances_started_total `,
			`tender_resets_total 0`, // a warm pool
			`tender_reset_seconds_total 0`,
			`tender_resets_lost_total 0`,
			`tender_exits_total{kind="hypercall"} `,
			`go_goroutines `,
			`process_resident_memory_bytes `,
		} {
			if !strings.Contains(text, want) {
				t.Errorf("/metrics lacks %q", want)
			}
		}
		if t.Failed() {
			t.Log(text)
		}
	})
	t.Run("Healthz", func(t *testing.T) {
		a := do(t, srv.Client(), http.MethodGet, srv.URL+"/healthz", nil)
		if a.status != http.StatusOK || string(a.body) != "ok\n" || a.close {
			t.Errorf("before SetDraining: %d %q close=%v", a.status, a.body, a.close)
		}
		g.SetDraining()
		a = do(t, srv.Client(), http.MethodGet, srv.URL+"/healthz", nil)
		if a.status != http.StatusServiceUnavailable || string(a.body) != "draining\n" {
			t.Errorf("after SetDraining: %d %q", a.status, a.body)
		}
		// Draining tells load balancers; invocations still run, but each
		// reply closes its connection so keep-alive clients leave.
		if a := post(t, srv, "still here"); a.status != http.StatusOK || !a.close {
			t.Errorf("invoke while draining: %d close=%v, want 200 and Connection: close", a.status, a.close)
		}
	})
	t.Run("Closed", func(t *testing.T) {
		p.Close()
		wantError(t, post(t, srv, "late"), http.StatusServiceUnavailable, "closed")
	})
}

func TestFaultReplaced(t *testing.T) {
	p := newPool(t, newHost(t), "fn_fault", monitor.PoolConfig{MaxInstances: 1})
	g, srv := serve(t, p)

	a := post(t, srv, "fault")
	wantError(t, a, http.StatusBadGateway, "fault")
	if !strings.Contains(string(a.body), "guest fault") {
		t.Errorf("body %q does not name the fault", a.body)
	}
	if a := post(t, srv, "hello"); a.status != http.StatusOK || string(a.body) != "hello" {
		t.Fatalf("after the fault: %d %q, want 200 hello", a.status, a.body)
	}
	if s := p.Stats(); s.Started != 2 {
		t.Errorf("%d instances started, want 2 (the faulting one replaced)", s.Started)
	}
	if o := outcomes(t, g.Registry()); o["fault"] != 1 || o["ok"] != 1 {
		t.Errorf("outcomes %v, want one fault and one ok", o)
	}
}

func TestSpinTimeout(t *testing.T) {
	p := newPool(t, newHost(t), "fn_spin", monitor.PoolConfig{MaxInstances: 1})
	g, srv := serve(t, p)

	start := time.Now()
	wantError(t, post(t, srv, "spin", gateway.HeaderTimeout, "200ms"), http.StatusGatewayTimeout, "timeout")
	if d := time.Since(start); d < 200*time.Millisecond || d > 10*time.Second {
		t.Errorf("a 200ms deadline answered after %v", d)
	}
	if a := post(t, srv, "x"); a.status != http.StatusOK || string(a.body) != "x" {
		t.Fatalf("after the timeout: %d %q, want 200 x", a.status, a.body)
	}

	// A client that leaves is counted as canceled.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/invoke", strings.NewReader("spin"))
	req.Header.Set(gateway.HeaderTimeout, "1s")
	if resp, err := srv.Client().Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("a request cancelled by its client got %d", resp.StatusCode)
	} else if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("the client's request failed with %v, want its own deadline", err)
	}
	for deadline := time.Now().Add(5 * time.Second); outcomes(t, g.Registry())["canceled"] != 1; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("outcomes %v, want one canceled", outcomes(t, g.Registry()))
		}
	}
	if o := outcomes(t, g.Registry()); o["timeout"] != 1 || o["ok"] != 1 {
		t.Errorf("outcomes %v, want one timeout, one ok, one canceled", o)
	}
}

func TestSaturated(t *testing.T) {
	p := newPool(t, newHost(t), "fn_spin", monitor.PoolConfig{MaxInstances: 1, QueueLimit: -1})
	_, srv := serve(t, p)

	spun := make(chan answer, 1)
	// 500 ms: the refused request below follows the instance's start by
	// a poll of a millisecond.
	go func() { spun <- post(t, srv, "spin", gateway.HeaderTimeout, "500ms") }()
	// The spin holds the only instance from the moment it takes its slot.
	for deadline := time.Now().Add(5 * time.Second); p.Stats().Live != 1; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the spinning invocation never started an instance")
		}
	}
	a := post(t, srv, "x")
	wantError(t, a, http.StatusServiceUnavailable, "saturated")
	if ra := a.header.Get("Retry-After"); ra != "1" {
		t.Errorf("Retry-After = %q, want 1", ra)
	}
	wantError(t, <-spun, http.StatusGatewayTimeout, "timeout")
}
