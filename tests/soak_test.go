package tests

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tendervm/tender/internal/proctest"

	"github.com/tendervm/tender/monitor"
)

// TestSoak runs `tender serve` of fn_mixed under bounded loopback load that
// mixes echoes, faults, spins past their deadline, console output and
// requests the client abandons, then sends SIGTERM while the load goes on.
// Every request must get its expected answer or a clean refusal, and the
// server's descriptors, threads and memory must stay flat after warm-up.
//
// It runs only when TENDER_SOAK is a duration (make soak: 10m per backend);
// TENDER_SOAK_BACKEND picks one backend. The figures are logged.
func TestSoak(t *testing.T) {
	d, err := time.ParseDuration(os.Getenv("TENDER_SOAK"))
	if err != nil {
		t.Skip("set TENDER_SOAK to a duration (e.g. 10m) to run the soak test")
	}
	if d < 5*time.Second {
		t.Fatalf("TENDER_SOAK=%v: at least 5s, for the samples that check the figures stay flat", d)
	}
	for _, b := range backends(t) {
		if want := os.Getenv("TENDER_SOAK_BACKEND"); want != "" && want != string(b) {
			continue
		}
		t.Run(string(b), func(t *testing.T) { soak(t, b, d) })
	}
}

// soakKinds are the requests of the mix, with their weights.
var soakKinds = []struct {
	name   string
	weight int
}{{"echo", 70}, {"fault", 8}, {"spin", 8}, {"abandon", 7}, {"print", 7}}

type soakCounts struct {
	sent, answered, refused, abandoned, lost, wrong atomic.Int64
	byKind                                          [5]atomic.Int64
	firstWrong                                      atomic.Value
}

func soak(t *testing.T, b monitor.Backend, d time.Duration) {
	cmd := exec.Command(filepath.Join(root, "bin", "tender"), "serve", "-backend="+string(b),
		"-listen=127.0.0.1:0", "-timeout=2s", "-max-instances=8", guestPath("fn_mixed"))
	logs, err := cmd.StderrPipe()
	require.NoError(t, err)
	cmd.Stdout = io.Discard
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	lines := bufio.NewScanner(logs)
	var addr string
	for lines.Scan() {
		var l struct{ Msg, Addr string }
		if json.Unmarshal(lines.Bytes(), &l) == nil && l.Msg == "serving" {
			addr = l.Addr
			break
		}
	}
	if addr == "" {
		cmd.Process.Kill()
		t.Fatalf("no serving line: %v", cmd.Wait())
	}
	var tail lockedBuffer // the server's log after start, for a failure
	go func() {
		for lines.Scan() {
			if tail.Len() < 1<<20 {
				tail.Write(append(lines.Bytes(), '\n'))
			}
		}
		exited <- cmd.Wait()
	}()
	url := "http://" + addr + "/invoke"
	pid := cmd.Process.Pid

	const workers = 8
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: workers, MaxConnsPerHost: workers}}
	var c soakCounts
	stop := make(chan struct{})
	// A load balancer's health check: once /healthz says draining, no new
	// request is sent (those in flight go on).
	var draining atomic.Bool
	go func() {
		for !draining.Load() {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			if resp, err := client.Get("http://" + addr + "/healthz"); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusServiceUnavailable {
					draining.Store(true)
				}
			}
		}
	}()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				if draining.Load() {
					return
				}
				if !soakOne(client, url, rng, w, n, &c) {
					return // refused: the server is gone
				}
			}
		}()
	}

	type sample struct {
		at               time.Duration
		fds, threads     int
		rssKiB           int
		seccomp          string
		answered, errors int64
	}
	var samples []sample
	start := time.Now()
	every := max(d/60, time.Second)
	for time.Since(start) < d {
		time.Sleep(every)
		fds, threads, rss, sc, err := procFigures(pid)
		if err != nil {
			t.Errorf("reading tender serve's figures at %v: %v", time.Since(start).Round(time.Second), err)
			break
		}
		samples = append(samples, sample{time.Since(start).Round(time.Second), fds, threads, rss, sc, c.answered.Load(), c.lost.Load() + c.wrong.Load()})
	}
	// SIGTERM under load: the workers keep going until refused.
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM), "the server ended early; its log:\n%s", tail.String())
	var exitErr error
	select {
	case exitErr = <-exited:
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		t.Errorf("tender serve still running 60 s after SIGTERM")
		exitErr = <-exited
	}
	close(stop)
	wg.Wait()

	var tab strings.Builder
	fmt.Fprintf(&tab, "| t | fds | threads | RSS KiB | answered | lost+wrong | seccomp |\n|---|---|---|---|---|---|---|\n")
	for i, s := range samples {
		if i%max(len(samples)/12, 1) == 0 || i == len(samples)-1 {
			fmt.Fprintf(&tab, "| %v | %d | %d | %d | %d | %d | %s |\n", s.at, s.fds, s.threads, s.rssKiB, s.answered, s.errors, s.seccomp)
		}
	}
	kinds := make([]string, len(soakKinds))
	for i, k := range soakKinds {
		kinds[i] = fmt.Sprintf("%s %d", k.name, c.byKind[i].Load())
	}
	t.Logf("%s soak %v: %d requests (%s): %d answered as expected, %d abandoned by the client, %d refused after SIGTERM, %d lost, %d wrong (first: %v); draining seen: %v; exit %v\n%s",
		b, d, c.sent.Load(), strings.Join(kinds, ", "), c.answered.Load(), c.abandoned.Load(), c.refused.Load(), c.lost.Load(), c.wrong.Load(), c.firstWrong.Load(), draining.Load(), exitErr, tab.String())
	assert.Zero(t, c.lost.Load(), "requests lost")
	assert.Zero(t, c.wrong.Load(), "wrong answers (first: %v)", c.firstWrong.Load())
	assert.NoError(t, exitErr, "tender serve exits 0 after draining")
	assert.True(t, draining.Load(), "/healthz reported draining after SIGTERM")
	// Flat after warm-up (the first fifth): never above the warm-up's peak
	// plus a little slack (connections come and go, KVM instances keep a
	// thread each), RSS within 25% of it.
	if warm := len(samples) / 5; warm >= 1 {
		var peak sample
		for _, s := range samples[:warm] {
			peak.fds, peak.threads, peak.rssKiB = max(peak.fds, s.fds), max(peak.threads, s.threads), max(peak.rssKiB, s.rssKiB)
		}
		for _, s := range samples[warm:] {
			assert.LessOrEqual(t, s.fds, peak.fds+workers, "descriptors at %v", s.at)
			assert.LessOrEqual(t, s.threads, peak.threads+4, "threads at %v", s.at)
			assert.LessOrEqual(t, float64(s.rssKiB), 1.25*float64(peak.rssKiB), "RSS at %v", s.at)
		}
	} else {
		t.Errorf("%d samples, too few to check that the figures stay flat (TENDER_SOAK=%v: at least 5s)", len(samples), d)
	}
}

// soakOne sends one request of a random kind and checks its answer. It
// returns false once the server refuses connections.
func soakOne(client *http.Client, url string, rng *rand.Rand, w, n int, c *soakCounts) bool {
	pick := rng.IntN(100)
	k := 0
	for ; pick >= soakKinds[k].weight; k++ {
		pick -= soakKinds[k].weight
	}
	kind := soakKinds[k].name
	body := fmt.Sprintf("echo %d/%d %x", w, n, rng.Uint64())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	timeout := ""
	want := http.StatusOK
	switch kind {
	case "fault":
		body, want = "fault "+body, http.StatusBadGateway
	case "spin":
		body, want, timeout = "spin "+body, http.StatusGatewayTimeout, "50ms"
	case "abandon":
		body, timeout = "spin "+body, "1s"
		time.AfterFunc(time.Duration(5+rng.IntN(30))*time.Millisecond, cancel)
	case "print":
		body = "print " + body + "\n"
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if timeout != "" {
		req.Header.Set("Tender-Timeout", timeout)
	}
	c.sent.Add(1)
	c.byKind[k].Add(1)
	resp, err := client.Do(req)
	if err != nil {
		switch {
		case kind == "abandon" && errors.Is(err, context.Canceled):
			c.abandoned.Add(1)
		case errors.Is(err, syscall.ECONNREFUSED):
			c.refused.Add(1)
			return false
		default:
			c.lost.Add(1)
			c.firstWrong.CompareAndSwap(nil, fmt.Sprintf("%s: %v", kind, err))
		}
		return true
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	switch {
	case err != nil && kind == "abandon":
		c.abandoned.Add(1)
	case err != nil:
		c.lost.Add(1)
		c.firstWrong.CompareAndSwap(nil, fmt.Sprintf("%s: body: %v", kind, err))
	case resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Connection") == "close":
		c.refused.Add(1) // draining: a clean refusal
	case kind == "abandon":
		c.abandoned.Add(1) // answered before the client gave up
	case resp.StatusCode != want || (want == http.StatusOK && !bytes.Equal(got, []byte(body))):
		c.wrong.Add(1)
		c.firstWrong.CompareAndSwap(nil, fmt.Sprintf("%s: status %d body %.80q", kind, resp.StatusCode, got))
	default:
		c.answered.Add(1)
	}
	return true
}

// procFigures reads a process's open descriptors, threads, resident memory
// and the seccomp modes of its threads.
func procFigures(pid int) (fds, threads, rssKiB int, seccomp string, err error) {
	if fds, err = proctest.FDs(pid); err != nil {
		return 0, 0, 0, "", err
	}
	v, err := proctest.Field(pid, "Threads")
	if err != nil {
		return 0, 0, 0, "", err
	}
	if threads, err = strconv.Atoi(v); err != nil {
		return 0, 0, 0, "", fmt.Errorf("threads: %w", err)
	}
	if v, err = proctest.Field(pid, "VmRSS"); err != nil {
		return 0, 0, 0, "", err
	}
	if rssKiB, err = strconv.Atoi(strings.TrimSuffix(v, " kB")); err != nil {
		return 0, 0, 0, "", fmt.Errorf("VmRSS: %w", err)
	}
	modes := map[string]int{}
	fields, err := proctest.ThreadField(pid, "Seccomp")
	if err != nil {
		return 0, 0, 0, "", err
	}
	for _, m := range fields {
		modes[m]++
	}
	var parts []string
	for m, n := range modes {
		parts = append(parts, fmt.Sprintf("%d×%s", n, m))
	}
	return fds, threads, rssKiB, strings.Join(parts, " "), nil
}
