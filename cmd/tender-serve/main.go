// Command tender-serve is `tender serve`: an HTTP gateway (package gateway) in
// front of a pool of function instances. tender executes it for its serve
// command; it can also be run directly with the same flags.
//
//	tender-serve [flags] FN.elf [ARGS...]
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/tendervm/tender/gateway"
	"github.com/tendervm/tender/internal/cli"
	"github.com/tendervm/tender/monitor"
	"github.com/tendervm/tender/monitor/confine"
)

// lockedWriter serialises console writes from concurrent instances, so lines
// of different guests do not interleave within one write.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func main() {
	os.Exit(serve(os.Args[1:], os.Stderr))
}

func serve(args []string, stderr io.Writer) int {
	fs := cli.NewFlagSet("serve", "[flags] FN.elf [ARGS...]", "Serve a function over HTTP: POST /invoke, GET /healthz, GET /metrics.", stderr)
	var g cli.GuestFlags
	g.Register(fs)
	listen := fs.String("listen", "127.0.0.1:8080", "address to serve HTTP on (port 0: any free port, logged at start)")
	mode := fs.String("mode", string(monitor.Warm), "warm (pooled instances) or cold (a fresh VM per request)")
	maxInstances := fs.Int("max-instances", monitor.DefaultMaxInstances, "instances alive at once")
	queue := fs.Int("queue", monitor.DefaultQueueLimit, "requests waiting for an instance before 503 (negative: none wait)")
	idle := fs.Duration("idle-timeout", monitor.DefaultIdleTimeout, "retire a warm instance idle this long (negative: never)")
	timeout := fs.Duration("timeout", monitor.DefaultFnTimeout, "deadline of each invocation (a request's Tender-Timeout header may shorten it)")
	prewarm := fs.Int("prewarm", 0, "warm instances to boot before serving")
	grace := fs.Duration("shutdown-timeout", 30*time.Second, "on SIGTERM, how long to let requests in flight finish")
	level := fs.String("log-level", "info", "debug (a line per request), info, warn or error")
	args, code, ok := cli.Parse(fs, args)
	if !ok {
		return code
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*level)); err != nil {
		return cli.Report(stderr, 0, cli.Usagef("-log-level %q: want debug, info, warn or error", *level))
	}
	if *mode != string(monitor.Cold) && *mode != string(monitor.Warm) {
		return cli.Report(stderr, 0, cli.Usagef("-mode %q: want cold or warm", *mode))
	}
	if len(g.Net) > 0 {
		// One device cannot be shared by the instances of a pool.
		return cli.Report(stderr, 0, cli.Usagef("-net: functions take requests through fn_next, not network devices; run network guests with tender run"))
	}
	out := &lockedWriter{w: stderr}
	log := slog.New(slog.NewJSONHandler(out, &slog.HandlerOptions{Level: lvl}))
	hc, cfg, err := g.Config(args, out)
	if err != nil {
		return cli.Report(stderr, 0, err)
	}
	host, err := monitor.NewHost(hc)
	if err != nil {
		return cli.Report(stderr, 0, err)
	}
	defer host.Close()
	pool, err := host.NewPool(monitor.PoolConfig{
		Guest: cfg, Mode: monitor.Mode(*mode), MaxInstances: *maxInstances,
		QueueLimit: *queue, IdleTimeout: *idle, Timeout: *timeout,
	})
	if err != nil {
		return cli.Report(stderr, 0, err)
	}
	defer pool.Close()
	ctx, stop := cli.SignalContext()
	defer stop()
	if *prewarm > 0 {
		if err := pool.Prewarm(ctx, *prewarm); err != nil {
			return cli.Report(stderr, 0, err)
		}
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return cli.Report(stderr, 0, err)
	}
	gw := gateway.New(gateway.Config{Pool: pool, Logger: log})
	srv := &http.Server{Handler: gw, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	// Set up: the listener, the pool and its prewarmed instances exist.
	p := confine.ForHost(host)
	p.NewGuests, p.Serve = true, true
	if err := g.Confine(p); err != nil {
		return cli.Report(stderr, 0, err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	log.Info("serving", "addr", ln.Addr().String(), "fn", args[0], "mode", *mode, "backend", string(host.Backend()),
		"max_instances", *maxInstances, "timeout", timeout.String())

	select {
	case err := <-served:
		return cli.Report(stderr, 0, fmt.Errorf("serve: %w", err))
	case <-ctx.Done():
	}
	log.Info("draining", "grace", grace.String())
	gw.SetDraining()
	sctx, cancel := context.WithTimeout(context.Background(), *grace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Warn("shutdown", "err", err.Error())
	}
	pool.Close()
	st := pool.Stats()
	log.Info("stopped", "instances_started", st.Started)
	return 0
}
