// Package bench runs the bypass-vs-container experiment of the HotOS'17 paper
// "Will Serverless End the Dominance of Linux in the Cloud?" (Koller and
// Williams) on this machine: the same echo function served by a Linux
// process per request, by namespaced "microcontainers", by the crun and runc
// container runtimes, and by tender cold, warm and fresh, with the latency of one
// request, the throughput of concurrent requests and the memory of one
// instance for each.
//
// Run measures every row and returns a Report, which renders as a Markdown
// table (Report.Markdown), JSON (Report.WriteJSON) and plots (Report.Plot).
// A row that cannot run here (a runtime not installed, no KVM, no root) is
// kept in the report with the reason instead of a result.
package bench

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Config says what to measure and how long.
type Config struct {
	// BinDir holds bin/tender, bin/guest/fn_echo.elf and the host echo
	// programs in bin/guest/host/, as `make all` builds them.
	BinDir string
	// N is the number of sequential requests timed per row.
	N int
	// Warmup requests run before the timed ones and are not counted;
	// N/10 (at least 1, at most 20) when zero. More run until the warm-up
	// has lasted 20 ms (minWarmup).
	Warmup int
	// Duration is the throughput window of each row.
	Duration time.Duration
	// Concurrency is the number of concurrent requesters in the throughput
	// window; runtime.NumCPU() when zero.
	Concurrency int
	// MemInstances is the number of warm tender instances booted to measure
	// the memory of one; 16 when zero.
	MemInstances int
	// Rows selects rows by key: a row runs when its key equals an entry or
	// starts with an entry followed by "-". All rows when empty.
	Rows []string
	// Backend is how tender runs guests: "auto" (KVM where it works, else
	// the process backend), "kvm" or "process". "auto" when empty.
	Backend string
	// Payload is the request body; "hello" when empty.
	Payload []byte
	// Progress, if not nil, is told how far Run has got.
	Progress Progress
}

// Progress follows a run: Start with the total number of steps, then Step
// as they are done, Done at the end.
type Progress interface {
	Start(total int)
	Step(desc string, n int)
	Done()
}

// Report is the outcome of a run.
type Report struct {
	// Date is when the run started.
	Date time.Time `json:"date"`
	// Command is the command line, when the caller sets it.
	Command string `json:"command,omitempty"`
	// Machine describes the host.
	Machine Machine `json:"machine"`
	// Backend is the tender backend the tender rows used.
	Backend string `json:"backend"`
	// N, Warmup, Duration and Concurrency are the settings used.
	N           int           `json:"n"`
	Warmup      int           `json:"warmup"`
	Duration    time.Duration `json:"duration_ns"`
	Concurrency int           `json:"concurrency"`
	// Payload is the request body every row echoed.
	Payload string `json:"payload"`
	// Rows are the results, in the order of the experiment.
	Rows []RowResult `json:"rows"`
	// Ratios compare rows as the issue and the paper do.
	Ratios []Ratio `json:"ratios"`
}

// RowResult is one row's measurements, or why it has none.
type RowResult struct {
	// Key is the row's short name, as -rows selects it.
	Key string `json:"key"`
	// Name is the row's label in tables and plots.
	Name string `json:"name"`
	// Unavailable, when not empty, is why the row has no result.
	Unavailable string `json:"unavailable,omitempty"`
	// Latency summarises N sequential requests, start to completion.
	Latency Summary `json:"latency"`
	// Throughput is completed requests per second with Concurrency
	// concurrent requesters; Requests of them completed in Elapsed.
	Throughput float64       `json:"throughput_per_s"`
	Requests   int64         `json:"throughput_requests"`
	Elapsed    time.Duration `json:"throughput_elapsed_ns"`
	// MemoryKiB is the peak memory of one instance, negative when it could
	// not be measured; MemoryMethod says how it was measured, or why not.
	MemoryKiB    float64 `json:"memory_kib"`
	MemoryMethod string  `json:"memory_method,omitempty"`
	// Notes say what the row runs.
	Notes string `json:"notes,omitempty"`
}

// OK reports whether the row has a result.
func (r RowResult) OK() bool { return r.Unavailable == "" }

// row is one line of the experiment before it runs.
type row struct {
	key, name, notes string
	// unavailable, when set, is known before setting up.
	unavailable string
	// setup prepares the row; an error makes it unavailable.
	setup func(ctx context.Context) (runner, error)
}

// runner serves the requests of one row.
type runner interface {
	// enter prepares the calling goroutine before it makes requests; each
	// requester goroutine calls it once, first, and ends after its work
	// (a runner may lock the goroutine to a thread it changes).
	enter() error
	// once makes one request and checks the reply.
	once(ctx context.Context) error
	// memory measures the peak memory of one instance, in KiB, and says
	// how.
	memory(ctx context.Context) (kib float64, method string, err error)
	close() error
}

// requestTimeout bounds one request of any row.
const requestTimeout = 30 * time.Second

// Run measures the selected rows one after another and returns the report.
// It fails only for a bad configuration or a cancelled ctx; a row that cannot
// run is reported unavailable.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if cfg.N <= 0 {
		return nil, fmt.Errorf("bench: N must be positive, not %d", cfg.N)
	}
	if cfg.Duration <= 0 {
		return nil, fmt.Errorf("bench: the throughput duration must be positive, not %v", cfg.Duration)
	}
	if cfg.Warmup <= 0 {
		cfg.Warmup = min(max(cfg.N/10, 1), 20)
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = runtime.NumCPU()
	}
	if cfg.MemInstances <= 0 {
		cfg.MemInstances = 16
	}
	if len(cfg.Payload) == 0 {
		cfg.Payload = []byte("hello")
	}
	if len(cfg.Payload) > PayloadMax {
		return nil, fmt.Errorf("bench: payload of %d bytes, at most %d", len(cfg.Payload), PayloadMax)
	}
	env, err := newEnv(cfg)
	if err != nil {
		return nil, err
	}
	all := env.rows()
	rows, err := selectRows(all, cfg.Rows)
	if err != nil {
		return nil, err
	}
	rep := &Report{
		Date: time.Now().UTC(), Machine: describeMachine(), Backend: env.backendName(),
		N: cfg.N, Warmup: cfg.Warmup, Duration: cfg.Duration, Concurrency: cfg.Concurrency,
		Payload: string(cfg.Payload),
	}
	prog := cfg.Progress
	if prog == nil {
		prog = noProgress{}
	}
	perRow := cfg.Warmup + cfg.N + throughputSteps(cfg.Duration) + 1
	prog.Start(perRow * len(rows))
	defer prog.Done()
	for _, r := range rows {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		res := measure(ctx, cfg, r, prog)
		prog.Step(r.name, perRow-res.steps)
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		rep.Rows = append(rep.Rows, res.RowResult)
	}
	rep.Ratios = ratios(rep.Rows)
	return rep, nil
}

// selectRows keeps the rows the selection names, in the experiment's order.
func selectRows(all []row, sel []string) ([]row, error) {
	if len(sel) == 0 {
		return all, nil
	}
	var out []row
	used := make(map[string]bool)
	for _, r := range all {
		// Every selector the key matches counts as used, not only the
		// first: in "process,process-nolibc" both name process-nolibc.
		matched := false
		for _, s := range sel {
			if r.key == s || strings.HasPrefix(r.key, s+"-") {
				used[s] = true
				matched = true
			}
		}
		if matched {
			out = append(out, r)
		}
	}
	for _, s := range sel {
		if !used[s] {
			var keys []string
			for _, r := range all {
				keys = append(keys, r.key)
			}
			return nil, fmt.Errorf("bench: no row %q (rows: %s)", s, strings.Join(keys, ", "))
		}
	}
	return out, nil
}

// RowKeys lists the keys of every row of the experiment, in order.
func RowKeys() []string {
	var keys []string
	for _, r := range (&env{cfg: Config{Backend: "process"}, backend: "process"}).rows() {
		keys = append(keys, r.key)
	}
	return keys
}

// throughputSteps is the number of progress steps of a throughput window:
// one per 100 ms.
func throughputSteps(d time.Duration) int { return max(int(d/(100*time.Millisecond)), 1) }

type measured struct {
	RowResult
	steps int // progress steps reported
}

// measure runs one row: latency, throughput, memory.
func measure(ctx context.Context, cfg Config, r row, prog Progress) (m measured) {
	m.RowResult = RowResult{Key: r.key, Name: r.name, Notes: r.notes}
	if r.unavailable != "" {
		m.Unavailable = r.unavailable
		return m
	}
	prog.Step(r.name, 0)
	run, err := r.setup(ctx)
	if err != nil {
		m.Unavailable = err.Error()
		return m
	}
	defer func() {
		// A failed row reports its cleanup's error too: a failed request
		// is when containers or directories are most likely left behind.
		if err := run.close(); err != nil && m.OK() {
			m.Notes = strings.TrimPrefix(m.Notes+"; cleanup: "+err.Error(), "; ")
		} else if err != nil {
			m.Unavailable += "; cleanup: " + err.Error()
		}
	}()

	// As testing does before a benchmark: a collection that the setup's
	// garbage would start otherwise runs during the samples, and on a host
	// with few CPUs its workers and the threads they wake slow each request
	// (docs/performance.md).
	runtime.GC()

	// Latency: sequential requests on one requester.
	var samples []time.Duration
	err = inGoroutine(run, func() (err error) {
		samples, err = latency(ctx, cfg, run, func() { prog.Step(r.name, 1); m.steps++ })
		return err
	})
	if err != nil {
		m.Unavailable = "failed: " + err.Error()
		return m
	}
	m.Latency = Summarize(samples)

	// Throughput: Concurrency requesters for Duration.
	n, elapsed, err := throughput(ctx, cfg, run, func() { prog.Step(r.name, 1); m.steps++ })
	if err != nil {
		m.Unavailable = "failed (throughput): " + err.Error()
		return m
	}
	m.Requests, m.Elapsed = n, elapsed
	m.Throughput = float64(n) / elapsed.Seconds()
	if a, ok := run.(interface{ anomalies() string }); ok {
		if note := a.anomalies(); note != "" {
			m.Notes = strings.TrimPrefix(m.Notes+"; "+note, "; ")
		}
	}

	// Memory.
	err = inGoroutine(run, func() error {
		kib, method, err := run.memory(ctx)
		m.MemoryKiB, m.MemoryMethod = kib, method
		return err
	})
	if err != nil {
		m.MemoryKiB, m.MemoryMethod = -1, "not measured: "+err.Error()
		m.Notes = strings.TrimPrefix(m.Notes+"; memory "+m.MemoryMethod, "; ")
	}
	return m
}

// selfTimed is a runner that bounds each request by requestTimeout itself,
// as a monitor.Pool does with its Timeout.
type selfTimed interface{ timesRequests() }

func onceWithTimeout(ctx context.Context, run runner) error {
	if _, ok := run.(selfTimed); ok {
		// A context timer per request would make Go's runtime wake an
		// idle thread per request, which competes with the guest's.
		return run.once(ctx)
	}
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	return run.once(ctx)
}

// minWarmup is the least time a row's warm-up lasts. After the collection
// that precedes the samples, and after any time with nothing to run, Go's
// scheduler watches its threads every 20 µs for about a millisecond, then
// less and less often; where its thread shares a CPU with a guest's, each
// look costs the guest an exit (docs/performance.md, "A slow phase").
// Twenty requests of a fast row take less than that.
const minWarmup = 20 * time.Millisecond

// latency times cfg.N sequential requests after cfg.Warmup untimed ones
// and at least minWarmup of them; step is called after each of those
// Warmup + N requests. A request a retrier made again is not a sample.
func latency(ctx context.Context, cfg Config, run runner, step func()) ([]time.Duration, error) {
	warmEnd := time.Now().Add(minWarmup)
	for i := 0; i < cfg.Warmup || time.Now().Before(warmEnd); i++ {
		if err := onceWithTimeout(ctx, run); err != nil {
			return nil, err
		}
		if i < cfg.Warmup {
			step()
		}
	}
	retries := func() int64 { return 0 }
	if r, ok := run.(retrier); ok {
		retries = r.retried
	}
	samples := make([]time.Duration, 0, cfg.N)
	for redone := 0; len(samples) < cfg.N; {
		before := retries()
		start := time.Now()
		err := onceWithTimeout(ctx, run)
		d := time.Since(start)
		if err != nil {
			return nil, err
		}
		if retries() != before {
			// The time covers the run that failed, its clean-up and
			// the second run: another request is timed in its place.
			if redone++; redone > cfg.N {
				return nil, fmt.Errorf("more than %d timed requests were made again", cfg.N)
			}
			continue
		}
		samples = append(samples, d)
		step()
	}
	return samples, nil
}

// retrier is a runner that makes a request again when its first run fails
// in a known way; retried counts the requests it made again.
type retrier interface{ retried() int64 }

// inGoroutine runs f on a new goroutine that has called run.enter, and waits.
func inGoroutine(run runner, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		if err := run.enter(); err != nil {
			errc <- err
			return
		}
		errc <- f()
	}()
	return <-errc
}

// throughput runs cfg.Concurrency requesters until cfg.Duration has passed
// and returns the requests completed and the time until the last finished.
func throughput(ctx context.Context, cfg Config, run runner, tick func()) (int64, time.Duration, error) {
	var (
		done     atomic.Int64
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()
	deadline := start.Add(cfg.Duration)
	for range cfg.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := inGoroutine(run, func() error {
				for time.Now().Before(deadline) {
					if err := onceWithTimeout(ctx, run); err != nil {
						return err
					}
					done.Add(1)
				}
				return nil
			})
			if err != nil {
				mu.Lock()
				if firstErr == nil && !errors.Is(err, context.Canceled) {
					firstErr = err
				}
				mu.Unlock()
				cancel()
			}
		}()
	}
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	ticks := throughputSteps(cfg.Duration)
	for {
		select {
		case <-finished:
			elapsed := time.Since(start)
			for ; ticks > 0; ticks-- {
				tick()
			}
			if firstErr == nil {
				firstErr = ctx.Err()
			}
			return done.Load(), elapsed, firstErr
		case <-t.C:
			if ticks > 0 {
				tick()
				ticks--
			}
		}
	}
}

type noProgress struct{}

func (noProgress) Start(int)        {}
func (noProgress) Step(string, int) {}
func (noProgress) Done()            {}
