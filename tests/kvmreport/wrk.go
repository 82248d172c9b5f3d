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

// serveLoads measures a plain net/http echo and tender serve of fn_echo on
// each backend under wrk, one after the other: a warm-up of one second
// (instances boot), then d. Figures go to "wrk net/http" and "wrk BACKEND".
func (r *runner) serveLoads(f *figures, backends []string, d time.Duration) {
	if _, err := exec.LookPath("wrk"); err != nil {
		f.runError("wrk", errNoWrk)
		return
	}
	measure := func(name string, start func() (*server, error)) {
		if r.ctx.Err() != nil { // interrupted: start no more servers
			return
		}
		src := "wrk " + name
		s, err := start()
		if err == nil {
			err = waitListening(s.addr)
			defer s.stop()
		}
		if err != nil {
			f.failed[src] = "server did not start: " + err.Error()
			r.benchFailures = append(r.benchFailures, src+": "+f.failed[src])
			return
		}
		url := "http://" + s.addr + "/invoke"
		log := "wrk-" + strings.ReplaceAll(name, "/", "-") + ".txt"
		if _, err := r.command("warmup-"+log, ".", "wrk", wrkArgs(time.Second, url)...); err != nil {
			f.failed[src] = "wrk warm-up: " + err.Error()
			return
		}
		out, err := r.command(log, ".", "wrk", wrkArgs(d, url)...)
		if err != nil {
			f.failed[src] = fmt.Sprintf("wrk: %v: %s", err, lastLine(out))
			return
		}
		res, err := parseWrk(out)
		if err != nil {
			f.failed[src] = err.Error()
			return
		}
		if bad := res.Metrics["non-2xx"] + res.Metrics["socket-errors"]; bad > 0 {
			f.failed[src] = fmt.Sprintf("wrk: %.0f of %d requests not answered with 2xx (%s)", bad, res.N, filepath.Join(r.logs, log))
			return
		}
		f.put(src, res)
		r.say("  wrk %s: %.0f req/s", name, res.Metrics["req/s"])
	}
	measure("net/http", func() (*server, error) {
		addr, err := freePort()
		if err != nil {
			return nil, err
		}
		s, err := r.startServer("httpecho.log", []string{filepath.Join("bin", "bench", "httpecho"), "-listen", addr}, nil)
		if err != nil {
			return nil, err
		}
		s.addr = addr
		return s, nil
	})
	for _, be := range backends {
		measure(be, func() (*server, error) {
			return r.startServer("serve-"+be+".log", []string{filepath.Join("bin", "tender-serve"), "-backend", be,
				"-listen", "127.0.0.1:0", filepath.Join("bin", "guest", "fn_echo.elf")}, serveAddr)
		})
	}
}
