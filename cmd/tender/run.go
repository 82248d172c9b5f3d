package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/tendervm/tender/internal/cli"
	"github.com/tendervm/tender/monitor"
	"github.com/tendervm/tender/monitor/confine"
)

func runCmd(c command, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	// The guest's console may be a pipe nobody reads: it never holds a
	// stopped guest (package monitor), nor do tender's own messages.
	cli.IgnoreSIGPIPE()
	stderr = cli.Bounded(stderr, cli.MessageWait)
	fs := cli.NewFlagSet(c.name, c.args, c.summary, stderr)
	var g cli.GuestFlags
	g.Register(fs)
	timeout := fs.Duration("timeout", 0, "stop the guest after this long (e.g. 500ms, 10s); 0: no limit")
	stats := fs.Bool("stats", false, "print run statistics as JSON on stderr")
	args, code, ok := cli.Parse(fs, args)
	if !ok {
		return code
	}
	if *timeout < 0 {
		return cli.Report(stderr, 0, cli.Usagef("-timeout %v: want 0 (no limit) or more", *timeout))
	}
	hc, cfg, err := g.Config(args, stdout)
	if err != nil {
		return cli.Report(stderr, 0, err)
	}
	// The console is the run's output: losing it (| head, a full disk)
	// ends the run, as it would any Unix filter.
	cfg.ConsoleRequired = true
	defer g.Close()
	ctx, cancel, watching := cli.WatchSignals()
	defer cancel()
	if *timeout > 0 {
		ctx, cancel = context.WithTimeout(ctx, *timeout)
		defer cancel()
	}
	res, err := runConfined(ctx, hc, cfg, &g, watching)
	if *stats {
		writeStats(stderr, res.Stats)
	}
	return cli.Report(stderr, res.Status, g.Named(err))
}

// runConfined is monitor.Run, confining the process once the guest's VM and
// devices exist and before the guest runs: what is left after that is
// running it and releasing everything. The filter is built while Run
// creates the VM, and the guest runs once watching is closed, so that SIGINT
// and SIGTERM stop it as ctx says.
func runConfined(ctx context.Context, hc monitor.HostConfig, cfg monitor.Config, g *cli.GuestFlags, watching <-chan struct{}) (monitor.Result, error) {
	host, err := monitor.NewHost(hc)
	if err != nil {
		return monitor.Result{}, err
	}
	defer host.Close()
	type compiled struct {
		prog *confine.Program
		err  error
	}
	filter := make(chan compiled, 1)
	cfg.Ready = func() error {
		<-watching
		c := <-filter
		if c.err != nil {
			return c.err
		}
		return c.prog.Install()
	}
	vm, err := host.New(cfg)
	if err != nil {
		return monitor.Result{}, err
	}
	defer vm.Close()
	go func() {
		p := confine.ForHost(host)
		p.Runs(vm)
		prog, err := g.Compile(p)
		filter <- compiled{prog, err}
	}()
	return vm.Run(ctx)
}

func writeStats(w io.Writer, s monitor.Stats) {
	net := make([]map[string]any, 0, len(s.Net))
	for _, n := range s.Net {
		net = append(net, map[string]any{
			"name": n.Name, "frames_in": n.FramesIn, "bytes_in": n.BytesIn, "dropped_in": n.DroppedIn,
			"frames_out": n.FramesOut, "bytes_out": n.BytesOut, "dropped_out": n.DroppedOut,
		})
	}
	block := make([]map[string]any, 0, len(s.Block))
	for _, d := range s.Block {
		block = append(block, map[string]any{
			"name": d.Name, "reads": d.Reads, "bytes_read": d.BytesRead,
			"writes": d.Writes, "bytes_written": d.BytesWritten, "errors": d.Errors,
		})
	}
	b, _ := json.Marshal(map[string]any{
		"net":                net,
		"block":              block,
		"exits":              s.ExitCounts(),
		"hypercalls":         s.HypercallCounts(),
		"setup_us":           us(s.Setup),
		"phases_us":          phases(s.Phases),
		"first_hypercall_us": us(s.FirstHypercall),
		"guest_us":           us(s.GuestTime),
		"total_us":           us(s.Total),
		"console_bytes":      s.ConsoleBytes,
		"console_dropped":    s.ConsoleDropped,
	})
	fmt.Fprintf(w, "%s\n", b)
}

// phases names Stats.Phases for -stats, in microseconds.
func phases(p monitor.Phases) map[string]float64 {
	return map[string]float64{
		"load": us(p.Load), "tables": us(p.Tables), "vm": us(p.VM), "vcpu": us(p.VCPU),
		"state": us(p.State), "clock": us(p.Clock), "ready": us(p.Ready), "first_exit": us(p.FirstExit),
	}
}

func us(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }
