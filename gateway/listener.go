package gateway

import (
	"context"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Listener defaults.
const (
	// DefaultReserveConns is how many connections a Listener accepts
	// beyond its limit for health checks.
	DefaultReserveConns = 8
	// DefaultReserveTimeout is how long a reserve connection may live.
	DefaultReserveTimeout = 2 * time.Second
)

// ListenerConfig configures a Listener.
type ListenerConfig struct {
	// MaxConns bounds the connections open at once, so that accept never
	// runs out of file descriptors. Required (at least 1).
	MaxConns int
	// Reserve is how many more connections are accepted once MaxConns are
	// open; DefaultReserveConns when zero, none when negative.
	Reserve int
	// ReserveTimeout bounds the life of a reserve connection: its request
	// must arrive and its reply leave within it. DefaultReserveTimeout when
	// zero or negative.
	ReserveTimeout time.Duration
}

// Listener is a net.Listener that keeps at most MaxConns connections open,
// plus a few reserve connections for health checks. While every slot is
// taken, Accept waits for a connection to close and new clients wait in the
// kernel's accept queue, instead of accept failing with EMFILE and the
// server spinning on it.
//
// A connection accepted while the MaxConns regular ones are all open is a
// reserve connection: it lives at most ReserveTimeout (its deadlines are
// capped), and a Gateway whose server has ConnContext set to
// gateway.ConnContext answers only /healthz and /metrics on it, refusing
// other requests with 503 saturated, and closes it after one reply. So a
// load balancer's probe is answered even when slow clients hold every
// regular connection.
type Listener struct {
	inner          net.Listener
	regular        chan struct{} // a token per open regular connection
	reserve        chan struct{} // a token per open reserve connection
	reserveTimeout time.Duration
	done           chan struct{}
	closeOnce      sync.Once
	// Connections open, for Open: the channels also count the slot Accept
	// holds while it waits.
	openRegular, openReserve atomic.Int64
}

// NewListener limits the connections of inner. It panics when
// cfg.MaxConns < 1.
func NewListener(inner net.Listener, cfg ListenerConfig) *Listener {
	if cfg.MaxConns < 1 {
		panic("gateway: ListenerConfig.MaxConns < 1")
	}
	if cfg.Reserve == 0 {
		cfg.Reserve = DefaultReserveConns
	}
	if cfg.Reserve < 0 {
		cfg.Reserve = 0
	}
	if cfg.ReserveTimeout <= 0 {
		cfg.ReserveTimeout = DefaultReserveTimeout
	}
	return &Listener{
		inner:          inner,
		regular:        make(chan struct{}, cfg.MaxConns),
		reserve:        make(chan struct{}, cfg.Reserve),
		reserveTimeout: cfg.ReserveTimeout,
		done:           make(chan struct{}),
	}
}

// Accept waits for a free slot, then for a connection.
func (l *Listener) Accept() (net.Conn, error) {
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
			return nil, net.ErrClosed
		}
	}
	c, err := l.inner.Accept()
	if err != nil {
		<-slot
		return nil, err
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
		return &limitedConn{Conn: c, slot: slot, open: &l.openRegular}, nil
	}
	l.openReserve.Add(1)
	rc := &reserveConn{limitedConn: limitedConn{Conn: c, slot: slot, open: &l.openReserve}, end: time.Now().Add(l.reserveTimeout)}
	rc.Conn.SetDeadline(rc.end)
	return rc, nil
}

// Close closes the inner listener and ends a waiting Accept. Connections
// already accepted stay open.
func (l *Listener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.inner.Close()
}

// Addr returns the inner listener's address.
func (l *Listener) Addr() net.Addr { return l.inner.Addr() }

// Open returns the regular and reserve connections open now.
func (l *Listener) Open() (regular, reserve int) {
	return int(l.openRegular.Load()), int(l.openReserve.Load())
}

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

// reserveConn is a connection over the limit: no deadline of it may be later
// than end, which the server's own deadlines (keep-alive, header) would
// otherwise extend or clear.
type reserveConn struct {
	limitedConn
	end time.Time
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
// the Gateway to tell them apart; use it as the http.Server's ConnContext.
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
