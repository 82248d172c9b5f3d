// Package gateway is the HTTP front end of `tender serve`: it turns POST
// /invoke requests into invocations of a monitor.Pool, answers /healthz for
// load balancers and exposes Prometheus metrics on /metrics.
//
//	gw := gateway.New(gateway.Config{Pool: pool, Logger: logger})
//	ln = gateway.NewListener(ln, gateway.ListenerConfig{MaxConns: 1000})
//	srv := &http.Server{Handler: gw, ConnContext: gateway.ConnContext, ...}
//	go srv.Serve(ln)
//	...
//	gw.SetDraining() // at shutdown start, a while before srv.Shutdown
//
// A Gateway keeps its metrics in a registry of its own, so any number of
// gateways can live in one process.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tendervm/tender/hypercall"
	"github.com/tendervm/tender/monitor"
)

// HTTP headers of the invoke protocol.
const (
	// HeaderTimeout (request, optional) bounds the invocation: a Go duration
	// such as "250ms". The pool's own timeout still applies when earlier.
	HeaderTimeout = "Tender-Timeout"
	// HeaderStatus (reply) is the function's status; 0 is success.
	HeaderStatus = "Tender-Status"
	// HeaderRequestID (reply) is the request id the guest saw, unique
	// within the pool behind the gateway.
	HeaderRequestID = "Tender-Request-Id"
	// HeaderError (error reply) names the kind of failure: fault, crash,
	// abort, protocol, timeout, saturated, too_large, closed, canceled,
	// bad_request, body_timeout or internal.
	HeaderError = "Tender-Error"
)

// StatusClientClosedRequest answers an invocation whose client went away
// (nginx's 499): nobody reads it, but it keeps such requests apart from
// successes in access logs.
const StatusClientClosedRequest = 499

// Config configures a Gateway.
type Config struct {
	// Pool runs the invocations. Required.
	Pool *monitor.Pool
	// Logger receives one Debug line per invocation and a Warn line per
	// guest failure; nil discards them.
	Logger *slog.Logger
	// MaxBody bounds request bodies; larger ones are answered 413 without
	// invoking. hypercall.FnRequestMax when zero, negative or larger, since
	// a guest cannot take more.
	MaxBody int64
	// BodyTimeout bounds reading a request body, from the moment the
	// gateway gets the request: a slower body is answered 408 and its
	// connection closed, so trickling clients cannot hold connections.
	// DefaultBodyTimeout when zero, no bound when negative.
	BodyTimeout time.Duration
	// WriteTimeout bounds writing each reply once it is known, so a client
	// that does not read cannot hold its connection. DefaultWriteTimeout
	// when zero, no bound when negative.
	WriteTimeout time.Duration
}

// Config defaults.
const (
	DefaultBodyTimeout  = 10 * time.Second
	DefaultWriteTimeout = 10 * time.Second
)

// Gateway is an http.Handler serving POST /invoke, GET /healthz and GET
// /metrics. It is safe for concurrent use.
type Gateway struct {
	pool      *monitor.Pool
	log       *slog.Logger
	maxBody   int64
	bodyTime  time.Duration // 0: none
	replyTime time.Duration // 0: none
	draining  atomic.Bool
	m         *metrics
}

// New returns a gateway in front of cfg.Pool with a fresh metrics registry.
// It panics when cfg.Pool is nil.
func New(cfg Config) *Gateway {
	if cfg.Pool == nil {
		panic("gateway: Config.Pool is nil")
	}
	g := &Gateway{pool: cfg.Pool, log: cfg.Logger, maxBody: cfg.MaxBody,
		bodyTime: orDefault(cfg.BodyTimeout, DefaultBodyTimeout), replyTime: orDefault(cfg.WriteTimeout, DefaultWriteTimeout)}
	if g.log == nil {
		g.log = slog.New(slog.DiscardHandler)
	}
	if g.maxBody <= 0 || g.maxBody > hypercall.FnRequestMax {
		g.maxBody = hypercall.FnRequestMax
	}
	g.m = newMetrics(cfg.Pool)
	return g
}

// Registry returns the registry holding the gateway's metrics, for callers
// that serve or push them some other way.
func (g *Gateway) Registry() *prometheus.Registry { return g.m.reg }

// orDefault maps a zero timeout to def and a negative one to 0 (none).
func orDefault(d, def time.Duration) time.Duration {
	switch {
	case d == 0:
		return def
	case d < 0:
		return 0
	}
	return d
}

// SetDraining makes /healthz answer 503 from now on, so load balancers stop
// sending work while in-flight invocations finish. Invocations are still
// served, but every reply from now on carries "Connection: close", so
// keep-alive clients leave after their current request instead of having an
// idle connection closed under a request they are sending.
func (g *Gateway) SetDraining() { g.draining.Store(true) }

// ServeHTTP routes a request: POST /invoke, GET /healthz, GET /metrics.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	if g.bodyTime > 0 && r.ContentLength != 0 {
		// Every route: net/http reads the body of a request the handler
		// did not read, to reuse the connection, and would wait on a
		// trickling client for ever.
		http.NewResponseController(w).SetReadDeadline(now.Add(g.bodyTime))
	}
	if g.draining.Load() || onReserve(r) {
		// A reserve connection serves its one health check only.
		w.Header().Set("Connection", "close")
	}
	if r.URL.Path == "/invoke" && r.Method == http.MethodPost {
		// Its write deadline is set once the outcome is known: nothing is
		// written before.
		g.invoke(w, r, now)
		return
	}
	g.writeDeadline(w, now)
	switch r.URL.Path {
	case "/invoke":
		methodNotAllowed(w, http.MethodPost)
	case "/healthz":
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			methodNotAllowed(w, "GET, HEAD")
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if g.draining.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, "draining\n")
			return
		}
		io.WriteString(w, "ok\n")
	case "/metrics":
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			methodNotAllowed(w, "GET, HEAD")
			return
		}
		g.m.handler.ServeHTTP(w, r)
	default:
		http.NotFound(w, r)
	}
}

// writeDeadline gives the reply WriteTimeout from now to be written. It is
// called once the reply is known, before writing it: the server's own
// deadline, if any, runs from the request's start and so also covers the
// invocation.
func (g *Gateway) writeDeadline(w http.ResponseWriter, now time.Time) {
	if g.replyTime > 0 {
		// ErrNotSupported (a recorder in tests, a wrapping writer) leaves
		// the server's own timeouts in charge.
		http.NewResponseController(w).SetWriteDeadline(now.Add(g.replyTime))
	}
}

func methodNotAllowed(w http.ResponseWriter, allow string) {
	w.Header().Set("Allow", allow)
	http.Error(w, http.StatusText(http.StatusMethodNotAllowed), http.StatusMethodNotAllowed)
}

// invoke runs one invocation. Its duration metric covers reading the body,
// queueing and running, up to the moment the outcome is known; writing the
// reply to a slow client is not the function's time.
func (g *Gateway) invoke(w http.ResponseWriter, r *http.Request, start time.Time) {
	var req monitor.Request
	if v := r.Header.Get(HeaderTimeout); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			g.fail(w, r, start, outcomeBadRequest, http.StatusBadRequest, 0,
				fmt.Errorf("gateway: %s header %q: want a positive Go duration such as 250ms", HeaderTimeout, v))
			return
		}
		req.Deadline = start.Add(d)
	}
	// A declared length over the limit is refused before reading a byte;
	// MaxBytesReader catches chunked bodies that grow past it.
	if r.ContentLength > g.maxBody {
		g.fail(w, r, start, outcomeTooLarge, http.StatusRequestEntityTooLarge, 0, monitor.ErrTooLarge)
		return
	}
	body, err := g.readBody(w, r)
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			g.fail(w, r, start, outcomeTooLarge, http.StatusRequestEntityTooLarge, len(body), monitor.ErrTooLarge)
		} else if errors.Is(err, os.ErrDeadlineExceeded) {
			// Checked before the context: the failed read also cancels it.
			w.Header().Set("Connection", "close")
			g.fail(w, r, start, outcomeBodyTimeout, http.StatusRequestTimeout, len(body),
				fmt.Errorf("gateway: request body not received within %v", g.bodyTime))
		} else if r.Context().Err() != nil {
			g.fail(w, r, start, outcomeCanceled, StatusClientClosedRequest, len(body), &monitor.StoppedError{Cause: r.Context().Err()})
		} else {
			g.fail(w, r, start, outcomeBadRequest, http.StatusBadRequest, len(body), fmt.Errorf("gateway: reading the request body: %w", err))
		}
		return
	}
	req.Body = body

	rep, err := g.pool.Invoke(r.Context(), req)
	if err != nil {
		o, code := classify(err)
		g.fail(w, r, start, o, code, len(body), err)
		return
	}
	o := outcomeOK
	if rep.Status != 0 {
		o = outcomeFunctionError
	}
	d := g.m.record(o, start)
	g.writeDeadline(w, start.Add(d))
	if g.log.Enabled(r.Context(), slog.LevelDebug) {
		g.log.LogAttrs(r.Context(), slog.LevelDebug, "invocation",
			slog.Uint64("id", rep.ID), slog.String("outcome", o.String()), slog.Duration("duration", d),
			slog.Int("bytes_in", len(body)), slog.Int("bytes_out", len(rep.Body)), slog.Uint64("status", rep.Status))
	}
	replyHeader(w.Header(), rep)
	w.WriteHeader(http.StatusOK)
	w.Write(rep.Body) // a write error means the client left; nothing to do
}

// replyHeader sets the header of a reply. The keys are canonical and
// assigned directly, and the values share one slice and one string: one
// Header.Set per field cost an allocation each, a fifth of the gateway's.
func replyHeader(h http.Header, rep monitor.Reply) {
	var buf [3 * 20]byte // three decimal uint64s
	b := strconv.AppendInt(buf[:0], int64(len(rep.Body)), 10)
	n1 := len(b)
	b = strconv.AppendUint(b, rep.Status, 10)
	n2 := len(b)
	b = strconv.AppendUint(b, rep.ID, 10)
	nums := string(b)
	v := []string{"application/octet-stream", nums[:n1], nums[n1:n2], nums[n2:]}
	h["Content-Type"] = v[0:1:1]
	h["Content-Length"] = v[1:2:2]
	h[HeaderStatus] = v[2:3:3]
	h[HeaderRequestID] = v[3:4:4]
}

// fail records and answers an invocation that produced no reply.
func (g *Gateway) fail(w http.ResponseWriter, r *http.Request, start time.Time, o outcome, code, bytesIn int, err error) {
	d := g.m.record(o, start)
	g.writeDeadline(w, start.Add(d))
	ctx := r.Context()
	// Guest text in an error (an abort message) is escaped by the monitor
	// (monitor.EscapeGuestText): it cannot end the body's one line or reach
	// a terminal as control sequences.
	msg := err.Error()
	switch {
	case o.guestFailure():
		g.log.LogAttrs(ctx, slog.LevelWarn, "invocation failed",
			slog.String("outcome", o.String()), slog.Duration("duration", d), slog.Int("bytes_in", bytesIn), slog.String("err", msg))
	case o == outcomeInternal:
		g.log.LogAttrs(ctx, slog.LevelError, "invocation failed",
			slog.String("outcome", o.String()), slog.Duration("duration", d), slog.Int("bytes_in", bytesIn), slog.String("err", msg))
	case g.log.Enabled(ctx, slog.LevelDebug):
		g.log.LogAttrs(ctx, slog.LevelDebug, "invocation",
			slog.String("outcome", o.String()), slog.Duration("duration", d), slog.Int("bytes_in", bytesIn), slog.String("err", msg))
	}
	h := w.Header()
	h.Set(HeaderError, o.String())
	if o == outcomeSaturated {
		h.Set("Retry-After", "1")
	}
	if o == outcomeCanceled {
		w.WriteHeader(code) // the client is gone: no body
		return
	}
	http.Error(w, msg, code)
}

// classify maps an Invoke error to its outcome and HTTP status.
func classify(err error) (outcome, int) {
	switch {
	case errors.Is(err, monitor.ErrSaturated):
		return outcomeSaturated, http.StatusServiceUnavailable
	case errors.Is(err, monitor.ErrTooLarge):
		return outcomeTooLarge, http.StatusRequestEntityTooLarge
	case errors.Is(err, monitor.ErrClosed):
		return outcomeClosed, http.StatusServiceUnavailable
	}
	if _, ok := errors.AsType[*monitor.FaultError](err); ok {
		return outcomeFault, http.StatusBadGateway
	}
	if _, ok := errors.AsType[*monitor.CrashError](err); ok {
		return outcomeCrash, http.StatusBadGateway
	}
	if _, ok := errors.AsType[*monitor.AbortError](err); ok {
		return outcomeAbort, http.StatusBadGateway
	}
	if _, ok := errors.AsType[*monitor.ProtocolError](err); ok {
		return outcomeProtocol, http.StatusBadGateway
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return outcomeTimeout, http.StatusGatewayTimeout
	case errors.Is(err, context.Canceled):
		return outcomeCanceled, StatusClientClosedRequest
	}
	return outcomeInternal, http.StatusInternalServerError
}

// readBody reads the request body within MaxBody. ServeHTTP has set its read
// deadline; once the body is in, the deadline is lifted: the server reads on
// in the background to notice a client leaving, and a read timing out there
// would cancel the invocation. After a failed read it stays, so that the
// server's attempt to drain the rest of the body fails at once too.
func (g *Gateway) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	body := r.Body
	if r.ContentLength < 0 {
		// Only a body of unknown length can grow past MaxBody: net/http
		// ends one of declared length there, which invoke has checked.
		body = http.MaxBytesReader(w, r.Body, g.maxBody)
	}
	buf, err := readAll(body, r.ContentLength)
	if err == nil && g.bodyTime > 0 && r.ContentLength != 0 {
		http.NewResponseController(w).SetReadDeadline(time.Time{})
	}
	return buf, err
}

// bodyPrealloc bounds the buffer readAll allocates before any byte arrives:
// a client may declare a body of MaxBody and send nothing, and its
// connection would hold that much until the body timeout.
const bodyPrealloc = 64 << 10

// readAll reads r to the end into a buffer sized from the declared length
// (size, negative when unknown), so the usual request costs one allocation.
// Beyond bodyPrealloc the buffer grows as bytes arrive, never to more than
// twice what the client has sent.
func readAll(r io.Reader, size int64) ([]byte, error) {
	want := int(size) + 1 // +1: EOF is seen without growing
	if size < 0 {
		want = 512
	}
	buf := make([]byte, 0, min(want, bodyPrealloc))
	for {
		if len(buf) == cap(buf) {
			next := 2 * cap(buf)
			if size >= 0 && cap(buf) < want && 2*next > want {
				// Doubling again would pass the declared length: take
				// it now rather than a last step of a few bytes.
				next = want
			}
			b := make([]byte, len(buf), next)
			copy(b, buf)
			buf = b
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}
