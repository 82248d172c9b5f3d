// Command tender-bench is `tender bench`: the bypass-vs-container experiment
// of the HotOS'17 paper "Will Serverless End the Dominance of Linux in the
// Cloud?" (package bench). It prints a Markdown table of latency, throughput
// and memory per row, then the ratios the issue asks for; -json and -plots
// keep the raw results and the figures. tender executes it for its bench
// command; it can also be run directly with the same flags.
//
//	tender-bench [-quick] [-n N] [-duration D] [-rows KEYS] [-backend auto|kvm|process]
//	             [-json FILE] [-plots DIR] [-report FILE] [-quiet]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/tendervm/tender/bench"
	"github.com/tendervm/tender/monitor"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// Settings of -quick and of a full run.
const (
	quickN, quickDuration, quickMem = 20, 300 * time.Millisecond, 4
	fullN, fullDuration, fullMem    = 300, 4 * time.Second, 32
)

func run(args []string, stdout io.Writer, stderr io.Writer) int {
	fs := flag.NewFlagSet("tender bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: tender bench [flags]\n\n"+
			"Run the HotOS'17 bypass-vs-container experiment: the same echo function as a Linux\n"+
			"process, a namespaced microcontainer, crun and runc containers, and tender cold,\n"+
			"warm and fresh; print latency, throughput and memory per row as a Markdown table.\n\nrows: %s\n\nflags:\n",
			strings.Join(bench.RowKeys(), ", "))
		fs.PrintDefaults()
	}
	n := fs.Int("n", fullN, "sequential requests timed per row (latency)")
	duration := fs.Duration("duration", fullDuration, "throughput window per row")
	quick := fs.Bool("quick", false, fmt.Sprintf("small run for CI: -n %d, -duration %v, -mem-instances %d unless given", quickN, quickDuration, quickMem))
	rows := fs.String("rows", "", "comma-separated row keys to run (a key also selects the keys it prefixes, e.g. tender); all when empty")
	backend := fs.String("backend", string(monitor.BackendAuto), "tender's backend: auto (kvm where it works, else process), kvm or process")
	concurrency := fs.Int("concurrency", runtime.NumCPU(), "concurrent requesters in the throughput window")
	memInstances := fs.Int("mem-instances", fullMem, "warm instances booted to measure tender's memory per instance")
	jsonPath := fs.String("json", "", "write the raw results as JSON to this file")
	plots := fs.String("plots", "", "write latency.{png,svg} and throughput.{png,svg} into this directory")
	reportPath := fs.String("report", "", "write a Markdown report (machine, command, table, ratios) to this file")
	binDir := fs.String("bin", "", "directory holding tender and guest/ (default: the directory of this program)")
	quiet := fs.Bool("quiet", false, "no progress bar")
	from := fs.String("from", "", "measure nothing: render the table, plots and report of this earlier -json file")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return monitor.ExitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "tender bench: unexpected arguments %q\n", fs.Args())
		fs.Usage()
		return monitor.ExitUsage
	}
	if *quick {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		if !set["n"] {
			*n = quickN
		}
		if !set["duration"] {
			*duration = quickDuration
		}
		if !set["mem-instances"] {
			*memInstances = quickMem
		}
	}
	if *binDir == "" {
		self, err := os.Executable()
		if err != nil {
			fmt.Fprintf(stderr, "tender bench: %v\n", err)
			return monitor.ExitMonitor
		}
		*binDir = filepath.Dir(self)
	}
	cfg := bench.Config{
		BinDir: *binDir, N: *n, Duration: *duration, Concurrency: *concurrency,
		MemInstances: *memInstances, Backend: *backend,
	}
	if *rows != "" {
		for _, r := range strings.Split(*rows, ",") {
			if r = strings.TrimSpace(r); r != "" {
				cfg.Rows = append(cfg.Rows, r)
			}
		}
	}
	if !*quiet && term.IsTerminal(int(os.Stderr.Fd())) {
		cfg.Progress = &bar{w: stderr}
	}
	if *plots != "" {
		if err := os.MkdirAll(*plots, 0o755); err != nil {
			fmt.Fprintf(stderr, "tender bench: %v\n", err)
			return monitor.ExitMonitor
		}
	}

	var rep *bench.Report
	if *from != "" {
		var err error
		if rep, err = bench.ReadJSON(*from); err != nil {
			fmt.Fprintf(stderr, "tender bench: %v\n", err)
			return monitor.ExitMonitor
		}
	} else {
		ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer cancel()
		var err error
		if rep, err = bench.Run(ctx, cfg); err != nil {
			fmt.Fprintf(stderr, "tender bench: %v\n", err)
			if ctx.Err() != nil {
				return monitor.ExitTimeout
			}
			return monitor.ExitUsage
		}
		rep.Command = "tender bench " + strings.Join(args, " ")
	}
	if err := rep.Markdown(stdout); err != nil {
		fmt.Fprintf(stderr, "tender bench: %v\n", err)
		return monitor.ExitMonitor
	}
	code := 0
	fail := func(err error) {
		fmt.Fprintf(stderr, "tender bench: %v\n", err)
		code = monitor.ExitMonitor
	}
	if *jsonPath != "" {
		if err := rep.WriteJSON(*jsonPath); err != nil {
			fail(err)
		}
	}
	if *plots != "" {
		if err := rep.Plot(*plots); err != nil {
			fail(err)
		}
	}
	if *reportPath != "" {
		if err := writeReport(*reportPath, rep); err != nil {
			fail(err)
		}
	}
	return code
}

// writeReport writes the Markdown report: when, where, how, and the results.
func writeReport(path string, rep *bench.Report) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	fmt.Fprintf(f, "# tender bench, %s\n\n", rep.Date.Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(f, "## Machine\n\n%s\n", rep.Machine)
	fmt.Fprintf(f, "## Command\n\n```\n%s\n```\n\n## Results\n\n", rep.Command)
	if err := rep.Markdown(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// bar shows a progress bar on a terminal.
type bar struct {
	w io.Writer
	b *progressbar.ProgressBar
}

func (p *bar) Start(total int) {
	p.b = progressbar.NewOptions(total,
		progressbar.OptionSetWriter(p.w),
		progressbar.OptionSetWidth(30),
		progressbar.OptionShowCount(),
		progressbar.OptionSetElapsedTime(true),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionClearOnFinish(),
		progressbar.OptionSetDescription("tender bench"),
	)
}

func (p *bar) Step(desc string, n int) {
	p.b.Describe(fmt.Sprintf("%-44.44s", desc))
	if n > 0 {
		p.b.Add(n)
	}
}

func (p *bar) Done() {
	p.b.Finish()
	p.b.Clear()
}
