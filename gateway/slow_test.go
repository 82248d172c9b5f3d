package gateway_test

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tendervm/tender/gateway"
	"github.com/tendervm/tender/monitor"
)

// hangCheck bounds waits for answers that must come; it only catches hangs.
const hangCheck = 10 * time.Second

// serveWith is serve with a gateway configured by cfg (Pool and Logger are
// filled in).
func serveWith(t testing.TB, p *monitor.Pool, cfg gateway.Config) (*gateway.Gateway, *httptest.Server) {
	t.Helper()
	cfg.Pool, cfg.Logger = p, testLogger(t)
	g := gateway.New(cfg)
	srv := httptest.NewServer(g)
	t.Cleanup(srv.Close)
	return g, srv
}

// trickle opens a connection to addr, sends head (a request declaring a
// body) and then a byte of body every interval until the connection fails
// or stop closes. It returns the connection for reading the answer.
func trickle(t testing.TB, addr, head string, interval time.Duration, stop <-chan struct{}) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := io.WriteString(c, head); err != nil {
		t.Fatal(err)
	}
	go func() {
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if _, err := c.Write([]byte{'x'}); err != nil {
					return
				}
			}
		}
	}()
	return c
}

// readAnswer reads one HTTP answer from c, and then checks that the server
// closes c (EOF, or a reset since the client may still be sending).
func readAnswer(t testing.TB, c net.Conn) *http.Response {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(hangCheck))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	io.ReadAll(resp.Body)
	resp.Body.Close()
	if _, err := br.ReadByte(); !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("after the answer: %v, want the server to close the connection", err)
	}
	return resp
}

// TestBodyTimeout checks that a client trickling its body is answered 408
// and cut off once BodyTimeout has passed, on /invoke and on a route that
// does not read the body (net/http drains it), while the deadline does not
// touch an invocation that runs longer than it.
func TestBodyTimeout(t *testing.T) {
	p := newPool(t, newHost(t), "fn_spin", monitor.PoolConfig{MaxInstances: 1})
	g, srv := serveWith(t, p, gateway.Config{BodyTimeout: 300 * time.Millisecond})
	addr := strings.TrimPrefix(srv.URL, "http://")
	stop := make(chan struct{})
	defer close(stop)

	start := time.Now()
	c := trickle(t, addr, "POST /invoke HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n", 50*time.Millisecond, stop)
	resp := readAnswer(t, c)
	if resp.StatusCode != http.StatusRequestTimeout || resp.Header.Get(gateway.HeaderError) != "body_timeout" || !resp.Close {
		t.Errorf("trickled /invoke: %d %s=%q close=%v, want 408 body_timeout and Connection: close",
			resp.StatusCode, gateway.HeaderError, resp.Header.Get(gateway.HeaderError), resp.Close)
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("answered after %v, before the 300ms body timeout", d)
	}

	c = trickle(t, addr, "POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n", 50*time.Millisecond, stop)
	if resp := readAnswer(t, c); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("trickled POST /healthz: %d, want 405", resp.StatusCode)
	}

	// The body deadline is lifted once the body is in: a 600 ms spin ends
	// by its own deadline (504), not cancelled (499) at 300 ms.
	wantError(t, post(t, srv, "spin", gateway.HeaderTimeout, "600ms"), http.StatusGatewayTimeout, "timeout")
	if a := post(t, srv, "after"); a.status != http.StatusOK || string(a.body) != "after" {
		t.Errorf("after: %d %q, want 200 after", a.status, a.body)
	}
	if o := outcomes(t, g.Registry()); o["body_timeout"] != 1 || o["canceled"] != 0 {
		t.Errorf("outcomes %v, want one body_timeout and no canceled", o)
	}
}

// TestListenerLimit fills a Listener's regular connections with silent
// clients and checks that health checks are still answered on a reserve
// connection, that anything else over the limit (a flood of slow bodies
// included) is refused at once, that reserve connections are cut after
// their timeout, and that slots come back when clients leave.
func TestListenerLimit(t *testing.T) {
	p := newPool(t, newHost(t), "fn_echo", monitor.PoolConfig{MaxInstances: 1})
	g := gateway.New(gateway.Config{Pool: p, Logger: testLogger(t)})
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := gateway.NewListener(inner, gateway.ListenerConfig{MaxConns: 2, Reserve: 2, ReserveTimeout: 500 * time.Millisecond})
	srv := &http.Server{Handler: g, ConnContext: gateway.ConnContext, ReadHeaderTimeout: time.Minute}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	addr := ln.Addr().String()
	waitOpen := func(regular, reserve int) {
		t.Helper()
		for deadline := time.Now().Add(hangCheck); ; time.Sleep(5 * time.Millisecond) {
			r, s := ln.Open()
			if r == regular && s == reserve {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("open connections: %d regular, %d reserve; want %d and %d", r, s, regular, reserve)
			}
		}
	}
	var silent []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		silent = append(silent, c)
	}
	waitOpen(2, 0)

	// More slow clients than the reserve: each is refused as soon as its
	// request line is in, so the accept queue keeps moving.
	stop := make(chan struct{})
	defer close(stop)
	var flood []net.Conn
	for range 10 {
		flood = append(flood, trickle(t, addr, "POST /invoke HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n", 50*time.Millisecond, stop))
	}
	for _, c := range flood {
		c.SetReadDeadline(time.Now().Add(hangCheck))
		// The 503, or a reset if the close overtook it; never a wait.
		if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err == nil && resp.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("slow client over the limit: %d, want 503", resp.StatusCode)
		} else if err != nil && !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, io.EOF) {
			t.Errorf("slow client over the limit: %v, want a 503 or a closed connection", err)
		}
	}

	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: hangCheck}
	resp, err := client.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatalf("/healthz over the limit: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !resp.Close {
		t.Errorf("/healthz over the limit: %d close=%v, want 200 and Connection: close", resp.StatusCode, resp.Close)
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "POST /invoke HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
	resp = readAnswer(t, c)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get(gateway.HeaderError) != "saturated" || resp.Header.Get("Retry-After") == "" || !resp.Close {
		t.Errorf("/invoke over the limit: %d %s=%q Retry-After=%q close=%v, want 503 saturated with Retry-After and Connection: close",
			resp.StatusCode, gateway.HeaderError, resp.Header.Get(gateway.HeaderError), resp.Header.Get("Retry-After"), resp.Close)
	}
	if n := ln.Refused(); n != 11 {
		t.Errorf("%d connections refused, want 11", n)
	}

	// A silent reserve connection is closed after ReserveTimeout.
	c, err = net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitOpen(2, 1)
	c.SetReadDeadline(time.Now().Add(hangCheck))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Errorf("silent reserve connection: %v, want EOF from the server", err)
	}
	waitOpen(2, 0)

	// A regular client leaves: its slot serves the next invocation.
	silent[0].Close()
	waitOpen(1, 0)
	if a := do(t, client, http.MethodPost, "http://"+addr+"/invoke", strings.NewReader("hello")); a.status != http.StatusOK || string(a.body) != "hello" {
		t.Errorf("invoke after a slot freed: %d %q", a.status, a.body)
	}
}

// TestAbortEscaped checks that guest text in an error (an abort message with
// a newline, a fake JSON log line and an escape sequence) reaches the client
// escaped, on one line.
func TestAbortEscaped(t *testing.T) {
	p := newPool(t, newHost(t), "fn_forge", monitor.PoolConfig{MaxInstances: 1})
	_, srv := serve(t, p)
	a := post(t, srv, "abort")
	wantError(t, a, http.StatusBadGateway, "abort")
	if strings.ContainsRune(string(a.body), 0x1b) {
		t.Errorf("body %q holds a raw ESC", a.body)
	}
	if want := `fn_forge\n{"level":"ERROR"`; !strings.Contains(string(a.body), want) {
		t.Errorf("body %q lacks the escaped message %q", a.body, want)
	}
}

// TestWriteTimeout checks that a client that sends a large request and never
// reads the reply loses its connection once WriteTimeout has passed, and
// holds it while the timeout is off.
func TestWriteTimeout(t *testing.T) {
	p := newPool(t, newHost(t), "fn_echo", monitor.PoolConfig{MaxInstances: 1})
	for _, wt := range []time.Duration{300 * time.Millisecond, -1} {
		g := gateway.New(gateway.Config{Pool: p, Logger: testLogger(t), WriteTimeout: wt})
		inner, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ln := gateway.NewListener(inner, gateway.ListenerConfig{MaxConns: 4})
		srv := &http.Server{Handler: g, ConnContext: gateway.ConnContext}
		go srv.Serve(ln)
		defer srv.Close()

		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.(*net.TCPConn).SetReadBuffer(4096)
		// Pipelined requests whose replies (16 MiB) cannot all fit in the
		// socket buffers: the server's write blocks until the deadline
		// closes the connection.
		req := "POST /invoke HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n" + strings.Repeat("x", 1<<20)
		go func() {
			for range 16 {
				if _, err := io.WriteString(c, req); err != nil {
					return
				}
			}
		}()
		// The server has the connection first; only then can its closing
		// (or not) tell anything.
		for accepted := time.Now().Add(hangCheck); ; time.Sleep(time.Millisecond) {
			if r, _ := ln.Open(); r == 1 {
				break
			}
			if time.Now().After(accepted) {
				t.Fatalf("WriteTimeout %v: the connection was never accepted", wt)
			}
		}
		deadline := time.Now().Add(hangCheck)
		if wt < 0 {
			deadline = time.Now().Add(2 * time.Second)
		}
		for {
			if r, _ := ln.Open(); r == 0 {
				break
			}
			if time.Now().After(deadline) {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		r, _ := ln.Open()
		switch {
		case wt > 0 && r != 0:
			t.Errorf("WriteTimeout %v: the connection of a client that does not read is still open", wt)
		case wt < 0 && r != 1:
			t.Errorf("no WriteTimeout: %d connections open, want the one still being written to", r)
		}
	}
}
