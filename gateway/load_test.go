package gateway_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tendervm/tender/gateway"
	"github.com/tendervm/tender/monitor"
	"github.com/tendervm/tender/monitor/vcpu"
)

// What a load-test request is, and so which answer is right.
const (
	kindEcho  = iota // 200 with the body echoed exactly
	kindFault        // 502, Tender-Error: fault
	kindSpin         // 504, Tender-Error: timeout
	numKinds
)

var kindNames = [numKinds]string{"echo", "fault", "spin"}

type loadRequest struct {
	kind   int
	target int // 0: the fn_fault gateway, 1: the fn_spin gateway
	body   []byte
}

// loadPlan returns n requests, about 5% of them hostile, the rest unique
// payloads of mixed sizes (mostly small, a few up to 256 KiB), spread over
// both gateways.
func loadPlan(n int) []loadRequest {
	rng := rand.New(rand.NewPCG(1, 2))
	plan := make([]loadRequest, n)
	for i := range plan {
		r := &plan[i]
		switch x := rng.IntN(40); {
		case x == 0:
			r.kind, r.target, r.body = kindFault, 0, fmt.Appendf(nil, "fault %d", i)
		case x == 1:
			r.kind, r.target, r.body = kindSpin, 1, fmt.Appendf(nil, "spin %d", i)
		default:
			size := rng.IntN(256)
			switch y := rng.IntN(100); {
			case y == 0:
				size = rng.IntN(256 << 10)
			case y < 10:
				size = rng.IntN(16 << 10)
			}
			// The index prefix makes it unique and keeps it from starting
			// with "fault" or "spin"; the rest is arbitrary bytes.
			r.kind, r.target = kindEcho, rng.IntN(2)
			r.body = fmt.Appendf(nil, "req %d:", i)
			for range size {
				r.body = append(r.body, byte(rng.Uint32()))
			}
		}
	}
	return plan
}

// levelCounter is a slog.Handler that counts records by level.
type levelCounter struct{ debug, warn, other atomic.Int64 }

func (c *levelCounter) Enabled(context.Context, slog.Level) bool { return true }
func (c *levelCounter) WithAttrs([]slog.Attr) slog.Handler       { return c }
func (c *levelCounter) WithGroup(string) slog.Handler            { return c }
func (c *levelCounter) Handle(_ context.Context, r slog.Record) error {
	switch r.Level {
	case slog.LevelDebug:
		c.debug.Add(1)
	case slog.LevelWarn:
		c.warn.Add(1)
	default:
		c.other.Add(1)
	}
	return nil
}

// TestNothingLost drives two gateways with concurrent clients, some of them
// hostile, and checks that every request gets exactly its right answer,
// that the metrics agree, and that nothing leaks: goroutines, fds, guest
// processes, memory.
//
// N = 2000 takes about 2.5 s (3.5 s with -race) on the process backend of a
// 2-core machine.
func TestNothingLost(t *testing.T) {
	n := 2000
	if testing.Short() {
		n = 300
	}
	const (
		clients = 64
		// A spinning guest burns a core until its deadline, and this
		// machine may have only two, shared with the other test packages
		// `go test ./...` runs at the same time. An echo that misses its
		// deadline is a right answer (504) the test could not tell from a
		// wrong one, so echoes get a generous pool deadline (echoTimeout),
		// at most two spins run at once, and every spin carries its own
		// short deadline (Tender-Timeout): most spinTimeout, one in eight
		// longSpinTimeout. Measured on 2 cores alone: the slowest echo
		// takes under 100 ms (240 ms with -race); under a parallel
		// `make test` some took over 300 ms.
		maxSpins        = 2
		spinTimeout     = "50ms"
		longSpinTimeout = "300ms"
		echoTimeout     = 5 * time.Second
	)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	plan := loadPlan(n)
	baseG, baseFD, baseRSS := settle(t, -1, -1)
	t.Logf("before: %d goroutines, %d fds, RSS %d KiB", baseG, baseFD, baseRSS>>10)

	host, err := monitor.NewHost(monitor.HostConfig{Backend: monitor.BackendAuto})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("backend %s", host.Backend())
	logs := &levelCounter{}
	var (
		pools [2]*monitor.Pool
		gws   [2]*gateway.Gateway
		srvs  [2]*httptest.Server
	)
	for i, name := range []string{"fn_fault", "fn_spin"} {
		elf, err := os.ReadFile("../bin/guest/" + name + ".elf")
		if err != nil {
			t.Fatal(err)
		}
		pools[i], err = host.NewPool(monitor.PoolConfig{
			Guest:        monitor.Config{ELF: elf, Name: name},
			MaxInstances: 8,
			Timeout:      echoTimeout,
			QueueLimit:   1 << 16,
		})
		if err != nil {
			t.Fatal(err)
		}
		gws[i] = gateway.New(gateway.Config{Pool: pools[i], Logger: slog.New(logs)})
		srvs[i] = httptest.NewServer(gws[i])
	}
	tr := &http.Transport{MaxIdleConnsPerHost: clients}
	client := &http.Client{Transport: tr}

	var (
		next    atomic.Int64
		right   [numKinds]atomic.Int64
		wrong   atomic.Int64
		mu      sync.Mutex
		samples []string // the first few wrong answers
		spins   = make(chan struct{}, maxSpins)
		wg      sync.WaitGroup
	)
	bad := func(i int, format string, args ...any) {
		wrong.Add(1)
		mu.Lock()
		defer mu.Unlock()
		if len(samples) < 10 {
			samples = append(samples, fmt.Sprintf("request %d (%s to gateway %d): ", i, kindNames[plan[i].kind], plan[i].target)+fmt.Sprintf(format, args...))
		}
	}
	start := time.Now()
	for range clients {
		wg.Go(func() {
			buf := new(bytes.Buffer)
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				r := plan[i]
				if r.kind == kindSpin {
					spins <- struct{}{}
				}
				req, err := http.NewRequestWithContext(ctx, http.MethodPost, srvs[r.target].URL+"/invoke", bytes.NewReader(r.body))
				if err != nil {
					t.Error(err)
					return
				}
				if r.kind == kindSpin {
					if i%8 != 0 {
						req.Header.Set(gateway.HeaderTimeout, spinTimeout)
					} else {
						req.Header.Set(gateway.HeaderTimeout, longSpinTimeout)
					}
				}
				resp, err := client.Do(req)
				if r.kind == kindSpin {
					<-spins
				}
				if err != nil {
					bad(i, "%v", err)
					continue
				}
				buf.Reset()
				_, err = buf.ReadFrom(resp.Body)
				resp.Body.Close()
				if err != nil {
					bad(i, "reading the answer: %v", err)
					continue
				}
				kind := resp.Header.Get(gateway.HeaderError)
				switch {
				case r.kind == kindEcho && resp.StatusCode == http.StatusOK && bytes.Equal(buf.Bytes(), r.body) && resp.Header.Get(gateway.HeaderStatus) == "0",
					r.kind == kindFault && resp.StatusCode == http.StatusBadGateway && kind == "fault",
					r.kind == kindSpin && resp.StatusCode == http.StatusGatewayTimeout && kind == "timeout":
					right[r.kind].Add(1)
				default:
					bad(i, "%d %s=%q, %d bytes (sent %d): %.80q", resp.StatusCode, gateway.HeaderError, kind, buf.Len(), len(r.body), buf.Bytes())
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)

	var want [numKinds]int64
	for _, r := range plan {
		want[r.kind]++
	}
	total := wrong.Load()
	for k := range numKinds {
		total += right[k].Load()
		if got := right[k].Load(); got != want[k] {
			t.Errorf("%s: %d right answers of %d", kindNames[k], got, want[k])
		}
	}
	t.Logf("%d requests in %v (%.0f/s): %d echo, %d fault, %d spin, %d wrong",
		n, elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds(), right[kindEcho].Load(), right[kindFault].Load(), right[kindSpin].Load(), wrong.Load())
	if total != int64(n) || wrong.Load() != 0 {
		t.Errorf("%d answers for %d requests, %d wrong; first: %s", total, n, wrong.Load(), strings.Join(samples, "; "))
	}

	// The metrics saw the same: every request once, in the right outcome.
	sum := map[string]float64{}
	for _, g := range gws {
		for o, v := range outcomes(t, g.Registry()) {
			sum[o] += v
		}
	}
	var all float64
	for _, v := range sum {
		all += v
	}
	if all != float64(n) || sum["ok"] != float64(want[kindEcho]) || sum["fault"] != float64(want[kindFault]) || sum["timeout"] != float64(want[kindSpin]) {
		t.Errorf("tender_invocations_total: %v (sum %v), want %d: ok %d, fault %d, timeout %d", sum, all, n, want[kindEcho], want[kindFault], want[kindSpin])
	}
	if d, w, o := logs.debug.Load(), logs.warn.Load(), logs.other.Load(); d != want[kindEcho] || w != want[kindFault]+want[kindSpin] || o != 0 {
		t.Errorf("log lines: %d debug, %d warn, %d other; want %d, %d, 0", d, w, o, want[kindEcho], want[kindFault]+want[kindSpin])
	}
	for i, p := range pools {
		s := p.Stats()
		t.Logf("pool %d: %d instances started, %d live, %d hypercall exits", i, s.Started, s.Live, s.Exits[vcpu.ExitHypercall])
	}

	// Tear everything down and check it is all gone.
	for i := range srvs {
		srvs[i].Close()
	}
	tr.CloseIdleConnections()
	for _, p := range pools {
		p.Close()
	}
	host.Close()
	plan = nil
	g, fds, rss := settle(t, baseG, baseFD)
	t.Logf("after: %d goroutines, %d fds, RSS %d KiB", g, fds, rss>>10)
	if g > baseG || fds > baseFD {
		buf := make([]byte, 1<<20)
		t.Errorf("leak: %d goroutines (was %d), %d fds (was %d)\n%s", g, baseG, fds, baseFD, buf[:runtime.Stack(buf, true)])
	}
	if kids := children(t); len(kids) != 0 {
		t.Errorf("guest processes left: %v", kids)
	}
	if rss > baseRSS+64<<20 && !raceEnabled {
		t.Errorf("RSS %d KiB, was %d KiB: more than 64 MiB kept", rss>>10, baseRSS>>10)
	}
}

// settle waits up to 10 s for goroutines and fds to fall to at most
// maxG and maxFD (any level when negative: just let things finish), then
// returns them with the RSS after returning free memory to the OS.
func settle(t *testing.T, maxG, maxFD int) (g, fds int, rss int64) {
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		runtime.GC()
		g, fds = runtime.NumGoroutine(), countFDs(t)
		if maxG < 0 || (g <= maxG && fds <= maxFD) || time.Now().After(deadline) {
			break
		}
	}
	debug.FreeOSMemory()
	return g, fds, vmRSS(t)
}

func countFDs(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// vmRSS returns the process's resident set size in bytes.
func vmRSS(t *testing.T) int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmRSS in /proc/self/status")
	return 0
}

// children lists the test process's child processes (the process backend's
// guests), from every thread since each guest is traced by the thread that
// started it.
func children(t *testing.T) []string {
	files, err := filepath.Glob("/proc/self/task/*/children")
	if err != nil {
		t.Fatal(err)
	}
	var pids []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // the thread ended
		}
		pids = append(pids, strings.Fields(string(b))...)
	}
	return pids
}
