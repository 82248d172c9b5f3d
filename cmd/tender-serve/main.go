// Command tender-serve is `tender serve`: an HTTP gateway (package gateway) in
// front of a pool of function instances. tender executes it for its serve
// command; it can also be run directly with the same flags.
//
//	tender-serve [flags] FN.elf [ARGS...]
//
// The server's JSON log goes to stderr; guest console output goes, escaped
// and prefixed with the function's name, to stdout (-console), so that no
// guest can write into the log.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/tendervm/tender/gateway"
	"github.com/tendervm/tender/internal/cli"
	"github.com/tendervm/tender/monitor"
	"github.com/tendervm/tender/monitor/confine"
)

func main() {
	os.Exit(serve(os.Args[1:], os.Stdout, os.Stderr))
}

func serve(args []string, stdout, stderr io.Writer) int {
	// A stdout or stderr whose reader went away (tender serve fn.elf | head)
	// must cost console and log lines, not kill every instance with SIGPIPE.
	cli.IgnoreSIGPIPE()
	fs := cli.NewFlagSet("serve", "[flags] FN.elf [ARGS...]", "Serve a function over HTTP: POST /invoke, GET /healthz, GET /metrics.", stderr)
	var g cli.GuestFlags
	g.RegisterPool(fs)
	listen := fs.String("listen", "127.0.0.1:8080", "address to serve HTTP on (port 0: any free port, logged at start)")
	mode := fs.String("mode", string(monitor.Warm), "warm (pooled instances), fresh (pooled instances reset to their first fn_next after every request; the process backend needs Linux 6.7) or cold (a new VM per request)")
	maxInstances := fs.Int("max-instances", monitor.DefaultMaxInstances, "instances alive at once (1 or more)")
	queue := fs.Int("queue", monitor.DefaultQueueLimit, fmt.Sprintf("requests waiting for an instance before 503 (0: %d; negative: none wait)", monitor.DefaultQueueLimit))
	idle := fs.Duration("idle-timeout", monitor.DefaultIdleTimeout, "retire a warm instance idle this long (negative: never)")
	timeout := fs.Duration("timeout", monitor.DefaultFnTimeout, "deadline of each invocation, more than 0 (a request's Tender-Timeout header may shorten it)")
	prewarm := fs.Int("prewarm", 1, "instances to boot before serving, up to -max-instances; booting one checks that the guest is a function (-mode cold: none)")
	maxConns := fs.Int("max-conns", 0, "HTTP connections open at once, plus a reserve of 8 for /healthz (0: derived from the open-file limit; negative: no limit)")
	headerTimeout := fs.Duration("header-timeout", 10*time.Second, "a request's headers must arrive within this")
	bodyTimeout := fs.Duration("body-timeout", gateway.DefaultBodyTimeout, "a request's body must arrive within this of its headers, else 408 (negative: no limit)")
	writeTimeout := fs.Duration("write-timeout", gateway.DefaultWriteTimeout, "a reply must be written within this once known (negative: no limit)")
	keepAlive := fs.Duration("keepalive-timeout", 60*time.Second, "close a keep-alive connection idle this long")
	drainDelay := fs.Duration("drain-delay", 2*time.Second, "on SIGTERM, how long /healthz says draining (and replies close their connections) before the listener closes")
	grace := fs.Duration("shutdown-timeout", 30*time.Second, "on SIGTERM, after -drain-delay, how long to let requests in flight finish")
	consoleTo := fs.String("console", "-", "where guest console output goes, as escaped lines prefixed with the function's name: - (stdout), none, or a file to append to")
	level := fs.String("log-level", "info", "debug (a line per request), info, warn or error")
	args, code, ok := cli.Parse(fs, args)
	if !ok {
		return code
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*level)); err != nil {
		return cli.Report(stderr, 0, cli.Usagef("-log-level %q: want debug, info, warn or error", *level))
	}
	switch monitor.Mode(*mode) {
	case monitor.Cold, monitor.Warm, monitor.Fresh:
	default:
		return cli.Report(stderr, 0, cli.Usagef("-mode %q: want cold, warm or fresh", *mode))
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	// Checked here, not by the pool, so that each is the usage error it is
	// and nothing has started yet.
	switch {
	case *timeout <= 0:
		return cli.Report(stderr, 0, cli.Usagef("-timeout %v: want a deadline of more than 0", *timeout))
	case *maxInstances < 1:
		return cli.Report(stderr, 0, cli.Usagef("-max-instances %d: want 1 or more", *maxInstances))
	case *prewarm < 0:
		return cli.Report(stderr, 0, cli.Usagef("-prewarm %d: want 0 or more", *prewarm))
	case *prewarm > *maxInstances:
		return cli.Report(stderr, 0, cli.Usagef("-prewarm %d: more than -max-instances %d", *prewarm, *maxInstances))
	case monitor.Mode(*mode) == monitor.Cold && given["prewarm"] && *prewarm > 0:
		return cli.Report(stderr, 0, cli.Usagef("-prewarm %d: a cold pool keeps no instances to prewarm; use -mode warm or fresh", *prewarm))
	case monitor.Mode(*mode) == monitor.Cold:
		*prewarm = 0
	}
	if err := g.RefuseDevices(); err != nil {
		return cli.Report(stderr, 0, err)
	}
	conns, err := connLimit(*maxConns, *maxInstances)
	if err != nil {
		return cli.Report(stderr, 0, err)
	}
	console, closeConsole, err := openConsole(*consoleTo, stdout)
	if err != nil {
		return cli.Report(stderr, 0, err)
	}
	defer closeConsole()
	// The log and the console each go through a queue of their own that
	// never blocks: a stderr or stdout nobody reads costs lines, never a
	// request's deadline or the shutdown.
	logOut := cli.NewQueue(stderr, outputQueue)
	defer logOut.Close(cli.MessageWait)
	log := slog.New(slog.NewJSONHandler(logOut, &slog.HandlerOptions{Level: lvl}))
	hc, cfg, err := g.Config(args, nil)
	if err != nil {
		return cli.Report(stderr, 0, err)
	}
	if console != nil {
		out := cli.NewQueue(console, outputQueue)
		defer out.Close(cli.MessageWait)
		cfg.Console = gateway.NewConsoleWriter(out, cfg.Name+": ")
	}
	host, err := monitor.NewHost(hc)
	if err != nil {
		return cli.Report(stderr, 0, err)
	}
	defer host.Close()
	procs := cli.Procs(host)
	pool, err := host.NewPool(monitor.PoolConfig{
		Guest: cfg, Mode: monitor.Mode(*mode), MaxInstances: *maxInstances,
		QueueLimit: *queue, IdleTimeout: *idle, Timeout: *timeout,
	})
	if err != nil {
		return cli.Report(stderr, 0, g.Named(err))
	}
	defer pool.Close()
	ctx, stop := cli.SignalContext()
	defer stop()
	if *prewarm > 0 {
		if err := pool.Prewarm(ctx, *prewarm); err != nil {
			return cli.Report(stderr, 0, err) // guest text in it is escaped by the monitor
		}
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return cli.Report(stderr, 0, err)
	}
	if conns > 0 {
		ln = gateway.NewListener(ln, gateway.ListenerConfig{MaxConns: conns})
	}
	gw := gateway.New(gateway.Config{Pool: pool, Logger: log, BodyTimeout: *bodyTimeout, WriteTimeout: *writeTimeout})
	srv := &http.Server{
		Handler:           gw,
		ConnContext:       gateway.ConnContext,
		ReadHeaderTimeout: *headerTimeout,
		IdleTimeout:       *keepAlive,
		// A backstop for what net/http writes by itself; the gateway sets
		// each reply's own deadline (-write-timeout) once it is known.
		WriteTimeout: writeBackstop(*bodyTimeout, *timeout, *writeTimeout),
		ErrorLog:     slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	// Set up: the listener, the pool and its prewarmed instances exist.
	p := confine.ForHost(host)
	p.NewGuests, p.Serve = true, true
	if err := g.Confine(p); err != nil {
		return cli.Report(stderr, 0, err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	log.Info("serving", "addr", ln.Addr().String(), "fn", args[0], "mode", *mode, "backend", string(host.Backend()),
		"max_instances", *maxInstances, "gomaxprocs", procs, "timeout", timeout.String(), "max_conns", conns)

	select {
	case err := <-served:
		return cli.Report(stderr, 0, fmt.Errorf("serve: %w", err))
	case <-ctx.Done():
	}
	// A second signal cuts the drain delay and the wait for requests short.
	hurry, stopHurry := cli.SignalContext()
	defer stopHurry()
	log.Info("draining", "delay", drainDelay.String(), "grace", grace.String())
	gw.SetDraining()
	select {
	case <-time.After(*drainDelay):
	case <-hurry.Done():
	}
	sctx, cancel := context.WithTimeout(hurry, *grace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Warn("shutdown", "err", err.Error())
		srv.Close()
	}
	pool.Close()
	st := pool.Stats()
	log.Info("stopped", "instances_started", st.Started)
	return 0
}

// outputQueue bounds the log lines, and the guests' console writes, waiting
// for a slow stderr or stdout (cli.QueueMaxBytes bounds their bytes).
const outputQueue = 4096

// openConsole opens the -console destination: nil for none.
func openConsole(to string, stdout io.Writer) (io.Writer, func() error, error) {
	switch to {
	case "-":
		return stdout, func() error { return nil }, nil
	case "none":
		return nil, func() error { return nil }, nil
	}
	f, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, nil, fmt.Errorf("-console: %w", err)
	}
	return f, f.Close, nil
}

// writeBackstop returns the http.Server's WriteTimeout, which runs from a
// request's headers: the longest its body, its invocation and its reply may
// take together, each flag read as the gateway and the pool read it (0: the
// default; a negative -timeout too). It is 0, no backstop, when the body or
// the reply has no limit, and saturates where the sum would overflow: a
// wrapped sum can come out small, cutting replies short, or negative, which
// net/http takes for none.
func writeBackstop(body, fn, write time.Duration) time.Duration {
	if body < 0 || write < 0 {
		return 0
	}
	if body == 0 {
		body = gateway.DefaultBodyTimeout
	}
	if write == 0 {
		write = gateway.DefaultWriteTimeout
	}
	if fn <= 0 {
		fn = monitor.DefaultFnTimeout
	}
	sum := body
	for _, d := range []time.Duration{fn, write} {
		if sum > math.MaxInt64-d {
			return math.MaxInt64
		}
		sum += d
	}
	return sum
}
