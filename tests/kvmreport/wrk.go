package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// server is an HTTP server the report started for wrk.
type server struct {
	cmd  *exec.Cmd
	addr string
	done chan error
}

// stop ends the server with SIGTERM (tender serve drains), then SIGKILL
// after 10 s.
func (s *server) stop() {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

// startServer starts argv with its output in the log file. The address it
// serves on comes from addrOf, which reads its stderr line by line until it
// returns one; with addrOf nil, the caller knows the address. An interrupt
// of the report stops the server as it does any command (commandContext).
func (r *runner) startServer(log string, argv []string, addrOf func(line string) string) (*server, error) {
	logf, err := os.Create(filepath.Join(r.logs, log))
	if err != nil {
		return nil, err
	}
	// stderr goes through exec's own copy into an io.Pipe, not a
	// StderrPipe read before Wait, so that a cancelled Wait ends after
	// cancelGrace even if a child of the server still holds stderr.
	pr, pw := io.Pipe()
	cmd := commandContext(r.ctx, argv[0], argv[1:]...)
	cmd.Env, cmd.Stdout, cmd.Stderr = r.env, logf, pw
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	s := &server{cmd: cmd, done: make(chan error, 1)}
	found := make(chan string, 1)
	if addrOf == nil {
		close(found)
	}
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(pr)
		sent := false
		for sc.Scan() {
			fmt.Fprintln(logf, sc.Text())
			if addrOf == nil {
				continue
			}
			if a := addrOf(sc.Text()); a != "" && !sent {
				found <- a
				sent = true
			}
		}
		_, _ = io.Copy(logf, pr) // the rest after a line too long to scan
	}()
	go func() {
		err := cmd.Wait()
		pw.Close()
		<-scanned
		logf.Close()
		s.done <- err
	}()
	select {
	case s.addr = <-found:
		return s, nil
	case <-time.After(15 * time.Second):
		s.stop()
		return nil, fmt.Errorf("%s: no listening address after 15 s (%s)", argv[0], filepath.Join(r.logs, log))
	}
}

// serveAddr reads tender serve's "serving" log line (JSON) for its address.
func serveAddr(line string) string {
	var m struct{ Msg, Addr string }
	if json.Unmarshal([]byte(line), &m) == nil && m.Msg == "serving" {
		return m.Addr
	}
	return ""
}

// freePort returns a loopback address with a port free at the time of the
// call, for bin/bench/httpecho, which does not report the port it got.
func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// waitListening waits until addr accepts connections.
func waitListening(addr string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nothing listens on %s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// wrkArgs are the load of the real-KVM issue: 2 threads, 64 connections,
// the 64-byte POST of tests/fixtures/wrk-post.lua.
func wrkArgs(d time.Duration, url string) []string {
	return []string{"-t2", "-c64", "-d" + d.String(), "--latency", "-s", filepath.Join("tests", "fixtures", "wrk-post.lua"), url}
}

// childServer names the net/http echo that passes each body through a child
// process (httpecho -child): the floor of the process backend's serve.
const childServer = "net/http+child"

// serveLoads measures a plain net/http echo, the same passing each body
// through a child process, and tender serve of fn_echo on each backend under
// wrk. The servers run side by side: each gets a warm-up of one second
// (instances boot), then wrk measures them in turn, in rounds of about a
// second that take d in all for each server, the first server of a round
// moving by one each round, so that drift on a shared machine hits every
// server alike (one window per server, one after the other, moved the serve
// ratio by 0.2 between reports). Figures go to "wrk net/http", "wrk
// net/http+child" and "wrk BACKEND" (combineRounds).
func (r *runner) serveLoads(f *figures, backends []string, d time.Duration) {
	if _, err := exec.LookPath("wrk"); err != nil {
		f.runError("wrk", errNoWrk)
		return
	}
	names := append([]string{"net/http", childServer}, backends...)
	echo := func(log string, args ...string) func() (*server, error) {
		return func() (*server, error) {
			addr, err := freePort()
			if err != nil {
				return nil, err
			}
			s, err := r.startServer(log, append([]string{filepath.Join("bin", "bench", "httpecho"), "-listen", addr}, args...), nil)
			if err != nil {
				return nil, err
			}
			s.addr = addr
			return s, nil
		}
	}
	starts := []func() (*server, error){echo("httpecho.log"), echo("httpecho-child.log", "-child", filepath.Join("bin", "bench", "pipe_echo"))}
	for _, be := range backends {
		starts = append(starts, func() (*server, error) {
			return r.startServer("serve-"+be+".log", []string{filepath.Join("bin", "tender-serve"), "-backend", be,
				"-listen", "127.0.0.1:0", filepath.Join("bin", "guest", "fn_echo.elf")}, serveAddr)
		})
	}
	fail := func(i int, why string) {
		src := "wrk " + names[i]
		f.failed[src] = why
		r.benchFailures = append(r.benchFailures, src+": "+why)
	}
	// wrk against server i for t; a nil result, its failure recorded.
	urls := make([]string, len(names))
	load := func(i int, log string, t time.Duration) *result {
		out, err := r.command(log, ".", "wrk", wrkArgs(t, urls[i])...)
		if err != nil {
			fail(i, fmt.Sprintf("wrk: %v: %s", err, lastLine(out)))
			return nil
		}
		res, err := parseWrk(out)
		if err != nil {
			fail(i, err.Error())
			return nil
		}
		if bad := res.Metrics["non-2xx"] + res.Metrics["socket-errors"]; bad > 0 {
			fail(i, fmt.Sprintf("wrk: %.0f of %d requests not answered with 2xx (%s)", bad, res.N, filepath.Join(r.logs, log)))
			return nil
		}
		return &res
	}
	live := make([]bool, len(names))
	for i, start := range starts {
		if r.ctx.Err() != nil { // interrupted: start no more servers
			return
		}
		s, err := start()
		if err == nil {
			err = waitListening(s.addr)
			defer s.stop()
		}
		if err != nil {
			fail(i, "server did not start: "+err.Error())
			continue
		}
		urls[i] = "http://" + s.addr + "/invoke"
		live[i] = load(i, "wrk-warmup-"+logName(names[i])+".txt", time.Second) != nil
	}
	rounds := max(1, int(d/time.Second))
	per := d / time.Duration(rounds)
	measured := make([][]*result, rounds)
	for k := range rounds {
		measured[k] = make([]*result, len(names))
		for j := range names {
			i := (j + k) % len(names)
			if !live[i] || r.ctx.Err() != nil {
				continue
			}
			res := load(i, fmt.Sprintf("wrk-%s-%d.txt", logName(names[i]), k+1), per)
			if res == nil {
				live[i] = false
				continue
			}
			measured[k][i] = res
		}
	}
	for i, res := range combineRounds(measured, live) {
		if res != nil {
			f.put("wrk "+names[i], *res)
			r.say("  wrk %s: %.0f req/s", names[i], res.Metrics["req/s"])
		}
	}
}

func logName(server string) string { return strings.ReplaceAll(server, "/", "-") }

// combineRounds merges the rounds of serveLoads (rounds[k][i]: round k of
// server i; server 0 the baseline) for each server that is live (measured
// in every round): requests/s and latencies are the medians of its rounds,
// requests their sum, and x-baseline the median of its rounds' requests/s
// over the baseline's in the same round.
func combineRounds(rounds [][]*result, live []bool) []*result {
	out := make([]*result, len(live))
	for i := range live {
		if !live[i] || len(rounds) == 0 {
			continue
		}
		byUnit := map[string][]float64{}
		var units []string
		var ratios []float64
		res := result{}
		for _, rs := range rounds {
			r := rs[i]
			if r == nil {
				break
			}
			res.N += r.N
			for _, u := range r.Units {
				if _, ok := byUnit[u]; !ok {
					units = append(units, u)
				}
				byUnit[u] = append(byUnit[u], r.Metrics[u])
			}
			if b := rs[0]; i > 0 && b != nil && b.Metrics["req/s"] > 0 {
				ratios = append(ratios, r.Metrics["req/s"]/b.Metrics["req/s"])
			}
		}
		if len(byUnit["req/s"]) != len(rounds) {
			continue
		}
		for _, u := range units {
			if u == "requests" || u == "non-2xx" || u == "socket-errors" {
				res.add(u, sum(byUnit[u]))
			} else {
				res.add(u, medianOf(byUnit[u]))
			}
		}
		if len(ratios) == len(rounds) {
			res.add("x-baseline", medianOf(ratios))
		}
		out[i] = &res
	}
	return out
}

func sum(v []float64) float64 {
	var t float64
	for _, x := range v {
		t += x
	}
	return t
}

// medianOf returns the median of v (the upper one of an even count).
func medianOf(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}
