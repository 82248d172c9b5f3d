package gateway

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Listener defaults.
const (
	// DefaultReserveConns is how many connections over the limit a
	// Listener triages at once.
	DefaultReserveConns = 8
	// DefaultReserveTimeout is how long a reserve connection may live.
	DefaultReserveTimeout = 2 * time.Second
)

// ListenerConfig configures a Listener.
type ListenerConfig struct {
	// MaxConns bounds the connections open at once, so that accept never
	// runs out of file descriptors. Required (at least 1).
	MaxConns int
	// Reserve is how many more connections may be open for triage and
	// health checks once MaxConns are; DefaultReserveConns when zero or
	// negative.
	Reserve int
	// ReserveTimeout bounds the life of a reserve connection: its request
	// line must arrive and its reply leave within it. DefaultReserveTimeout
	// when zero or negative.
	ReserveTimeout time.Duration
}

// Listener is a net.Listener that keeps at most MaxConns connections open,
// plus Reserve connections for health checks. Without a limit, a flood of
// slow clients makes accept fail with EMFILE, and then no request at all is
// served, health checks included.
//
// A connection accepted while MaxConns regular ones are open takes a reserve
// slot and is triaged before the server sees it: its request line is read
// (within ReserveTimeout); GET or HEAD /healthz goes on to the server, which
// answers it and closes the connection (with ConnContext set to
// gateway.ConnContext), and anything else is answered 503 saturated at once
// and closed without reading further. So the accept queue keeps moving
// while slow clients hold every regular connection, and a load balancer's
// probe that arrives behind a flood is answered. Only when the reserve is
// full too does the Listener stop accepting, leaving clients in the
// kernel's accept queue.
type Listener struct {
	inner          net.Listener
	regular        chan struct{} // a token per open regular connection and for the accept in progress
	reserve        chan struct{} // a token per open reserve connection and for the accept in progress
	reserveTimeout time.Duration

	conns chan net.Conn // accepted connections for Accept
	errs  chan error    // accept errors for Accept
	done  chan struct{} // closed by Close

	closeOnce sync.Once
	mu        sync.Mutex
	triaging  map[*reserveConn]struct{} // reserve connections whose request line is awaited
	wg        sync.WaitGroup            // the accept loop and the triage goroutines

	openRegular, openReserve atomic.Int64
	refused                  atomic.Uint64
}

// NewListener limits the connections of inner. It panics when
// cfg.MaxConns < 1. Close it to stop it.
func NewListener(inner net.Listener, cfg ListenerConfig) *Listener {
	if cfg.MaxConns < 1 {
		panic("gateway: ListenerConfig.MaxConns < 1")
	}
	if cfg.Reserve <= 0 {
		cfg.Reserve = DefaultReserveConns
	}
	if cfg.ReserveTimeout <= 0 {
		cfg.ReserveTimeout = DefaultReserveTimeout
	}
	l := &Listener{
		inner:          inner,
		regular:        make(chan struct{}, cfg.MaxConns),
		reserve:        make(chan struct{}, cfg.Reserve),
		reserveTimeout: cfg.ReserveTimeout,
		conns:          make(chan net.Conn),
		errs:           make(chan error),
		done:           make(chan struct{}),
		triaging:       map[*reserveConn]struct{}{},
	}
	l.wg.Add(1)
	go l.acceptLoop()
	return l
}

// acceptLoop accepts connections while slots are free: regular ones go to
// Accept, reserve ones to triage. It runs apart from Accept so that a health
// check that passes triage is handed over even while no new client arrives.
func (l *Listener) acceptLoop() {
	defer l.wg.Done()
	for {
		var slot chan struct{}
		select {
		case l.regular <- struct{}{}:
			slot = l.regular
		default:
			select {
			case l.regular <- struct{}{}:
				slot = l.regular
			case l.reserve <- struct{}{}:
				slot = l.reserve
			case <-l.done:
				return
			}
		}
		c, err := l.inner.Accept()
		if err != nil {
			<-slot
			select {
			case l.errs <- err: // http.Server backs off on temporary errors
			case <-l.done:
				return
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		if slot == l.reserve {
			// A regular slot may have freed while accept waited.
			select {
			case l.regular <- struct{}{}:
				<-l.reserve
				slot = l.regular
			default:
			}
		}
		if slot == l.regular {
			l.openRegular.Add(1)
			l.deliver(&limitedConn{Conn: c, slot: slot, open: &l.openRegular})
			continue
		}
		l.openReserve.Add(1)
		rc := &reserveConn{limitedConn: limitedConn{Conn: c, slot: slot, open: &l.openReserve}, end: time.Now().Add(l.reserveTimeout)}
		rc.Conn.SetDeadline(rc.end)
		l.mu.Lock()
		l.triaging[rc] = struct{}{}
		l.mu.Unlock()
		l.wg.Add(1)
		go l.triage(rc)
	}
}

// deliver hands c to Accept, or closes it once the listener is closed.
func (l *Listener) deliver(c net.Conn) {
	select {
	case l.conns <- c:
	case <-l.done:
		c.Close()
	}
}

// refusal answers a connection over the limit that is no health check.
var refusal = func() []byte {
	const body = "gateway: connection limit reached\n"
	return []byte("HTTP/1.1 503 Service Unavailable\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n" +
		HeaderError + ": " + outcomeSaturated.String() + "\r\n" +
		"Retry-After: 1\r\n" +
		"Connection: close\r\n" +
		"Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body)
}()

// triage reads the request line of a reserve connection and passes a health
// check on to the server; anything else is refused and closed at once. The
// refusal does not wait for the rest of the request: freeing the slot is
// worth more than the chance that closing with unread bytes resets the
// connection before the client reads the 503.
func (l *Listener) triage(c *reserveConn) {
	defer l.wg.Done()
	buf := make([]byte, 0, 256)
	for !bytes.Contains(buf, []byte("\r\n")) && len(buf) < cap(buf) {
		n, err := c.Conn.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err != nil {
			break
		}
	}
	l.mu.Lock()
	delete(l.triaging, c)
	l.mu.Unlock()
	if healthCheck(buf) {
		c.head = buf
		l.deliver(c)
		return
	}
	l.refused.Add(1)
	if len(buf) > 0 {
		c.Conn.Write(refusal)
		// Read what already arrived, without waiting: a close with
		// unread bytes would reset the connection under the reply.
		c.Conn.SetReadDeadline(time.Now())
		for range 64 {
			if n, err := c.Conn.Read(buf[:cap(buf)]); n == 0 || err != nil {
				break
			}
		}
	}
	c.Close()
}

// healthCheck reports whether a request starts with GET or HEAD /healthz.
func healthCheck(head []byte) bool {
	line, _, ok := bytes.Cut(head, []byte("\r\n"))
	if !ok {
		return false
	}
	method, rest, _ := bytes.Cut(line, []byte(" "))
	target, _, _ := bytes.Cut(rest, []byte(" "))
	path, _, _ := bytes.Cut(target, []byte("?"))
	return (string(method) == http.MethodGet || string(method) == http.MethodHead) && string(path) == "/healthz"
}

// Accept returns the next connection to serve.
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case err := <-l.errs:
		return nil, err
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close closes the inner listener, ends Accept and triage, and waits for
// the Listener's goroutines. Connections already handed out stay open.
func (l *Listener) Close() error {
	var err error
	l.closeOnce.Do(func() {
		close(l.done)
		err = l.inner.Close()
		l.mu.Lock()
		for c := range l.triaging {
			c.Conn.SetDeadline(time.Now()) // ends its read at once
		}
		l.mu.Unlock()
		l.wg.Wait()
	})
	return err
}

// Addr returns the inner listener's address.
func (l *Listener) Addr() net.Addr { return l.inner.Addr() }

// Open returns the regular and reserve connections open now.
func (l *Listener) Open() (regular, reserve int) {
	return int(l.openRegular.Load()), int(l.openReserve.Load())
}

// Refused returns how many connections over the limit triage refused.
func (l *Listener) Refused() uint64 { return l.refused.Load() }

// limitedConn gives its slot back when closed.
type limitedConn struct {
	net.Conn
	slot chan struct{}
	open *atomic.Int64
	once sync.Once
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.open.Add(-1)
		<-c.slot
	})
	return err
}

// CloseWrite lets net/http half-close the connection before closing it after
// a reply that leaves request bytes unread (a refused body): without it the
// close resets the connection and the client may lose the reply.
func (c *limitedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// reserveConn is a connection over the limit. head holds what triage read,
// for the server to read again; no deadline may be later than end, which
// the server's own deadlines (keep-alive, header) would otherwise extend or
// clear.
type reserveConn struct {
	limitedConn
	head []byte
	end  time.Time
}

func (c *reserveConn) Read(p []byte) (int, error) {
	if len(c.head) > 0 {
		n := copy(p, c.head)
		c.head = c.head[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

func (c *reserveConn) cap(t time.Time) time.Time {
	if t.IsZero() || t.After(c.end) {
		return c.end
	}
	return t
}

func (c *reserveConn) SetDeadline(t time.Time) error { return c.Conn.SetDeadline(c.cap(t)) }

func (c *reserveConn) SetReadDeadline(t time.Time) error { return c.Conn.SetReadDeadline(c.cap(t)) }

func (c *reserveConn) SetWriteDeadline(t time.Time) error {
	return c.Conn.SetWriteDeadline(c.cap(t))
}

type reserveKey struct{}

// ConnContext marks the requests of a Listener's reserve connections, for
// the Gateway to answer them and close the connection; use it as the
// http.Server's ConnContext.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	if _, ok := c.(*reserveConn); ok {
		return context.WithValue(ctx, reserveKey{}, true)
	}
	return ctx
}

// onReserve reports whether r came on a reserve connection.
func onReserve(r *http.Request) bool {
	v, _ := r.Context().Value(reserveKey{}).(bool)
	return v
}
