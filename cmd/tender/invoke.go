package main

import (
	"fmt"
	"io"

	"github.com/tendervm/tender/hypercall"
	"github.com/tendervm/tender/internal/cli"
	"github.com/tendervm/tender/monitor"
	"github.com/tendervm/tender/monitor/confine"
)

func invokeCmd(c command, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	// The guest's console, stderr, may be a pipe nobody reads: it never
	// holds a stopped invocation (package monitor), nor do tender's own
	// messages.
	cli.IgnoreSIGPIPE()
	console := stderr
	stderr = cli.Bounded(stderr, cli.MessageWait)
	fs := cli.NewFlagSet(c.name, c.args, c.summary, stderr)
	var g cli.GuestFlags
	g.RegisterPool(fs)
	mode := fs.String("mode", string(monitor.Cold), "cold (a new VM for the invocation), warm (through a warm pool) or fresh (through a pool of instances reset after each call; the process backend needs Linux 6.7)")
	timeout := fs.Duration("timeout", monitor.DefaultFnTimeout, "deadline of the invocation, more than 0")
	args, code, ok := cli.Parse(fs, args)
	if !ok {
		return code
	}
	switch monitor.Mode(*mode) {
	case monitor.Cold, monitor.Warm, monitor.Fresh:
	default:
		return cli.Report(stderr, 0, cli.Usagef("-mode %q: want cold, warm or fresh", *mode))
	}
	if *timeout <= 0 {
		return cli.Report(stderr, 0, cli.Usagef("-timeout %v: want a deadline of more than 0", *timeout))
	}
	if err := g.RefuseDevices(); err != nil {
		return cli.Report(stderr, 0, err)
	}
	// The guest's console is diagnostics; the reply owns stdout.
	hc, cfg, err := g.Config(args, console)
	if err != nil {
		return cli.Report(stderr, 0, err)
	}
	body, err := io.ReadAll(io.LimitReader(stdin, hypercall.FnRequestMax+1))
	if err != nil {
		return cli.Report(stderr, 0, fmt.Errorf("reading the request: %w", err))
	}
	if len(body) > hypercall.FnRequestMax {
		return cli.Report(stderr, 0, cli.UsageError{Err: monitor.ErrTooLarge})
	}
	host, err := monitor.NewHost(hc)
	if err != nil {
		return cli.Report(stderr, 0, err)
	}
	defer host.Close()
	pool, err := host.NewPool(monitor.PoolConfig{Guest: cfg, Mode: monitor.Mode(*mode), MaxInstances: 1, Timeout: *timeout})
	if err != nil {
		return cli.Report(stderr, 0, g.Named(err))
	}
	defer pool.Close()
	ctx, cancel := cli.SignalContext()
	defer cancel()
	// Instances boot in Invoke, cold or warm: they start under the filter.
	p := confine.ForHost(host)
	p.NewGuests = true
	if err := g.Confine(p); err != nil {
		return cli.Report(stderr, 0, err)
	}
	rep, err := pool.Invoke(ctx, monitor.Request{Body: body})
	if err != nil {
		return cli.Report(stderr, 0, err)
	}
	// A stdout nobody reads holds the reply until a signal.
	if err := cli.WriteContext(ctx, stdout, rep.Body); err != nil {
		if ctx.Err() != nil {
			fmt.Fprintln(stderr, "tender: interrupted while writing the reply")
			return monitor.ExitTimeout
		}
		return cli.Report(stderr, 0, fmt.Errorf("writing the reply: %w", err))
	}
	if rep.Status != 0 {
		fmt.Fprintf(stderr, "tender: function status %d\n", rep.Status)
		return int(min(rep.Status, hypercall.ExitStatusMax))
	}
	return 0
}
