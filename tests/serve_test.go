package tests

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// serveHangCheck bounds waits for things that must happen; it only catches hangs.
const serveHangCheck = 30 * time.Second

// server is a running bin/tender-serve with its output collected.
type server struct {
	cmd     *exec.Cmd
	url     string
	info    map[string]any // the "serving" log line
	exited  chan struct{}  // closed once the process is reaped and its streams read
	exitErr error          // cmd.Wait's, once exited is closed

	stdout, stderr lockedBuffer
}

// startServe starts bin/tender-serve with args, under an open-file limit
// when nofile > 0, and waits for its "serving" line. The server is killed
// at the end of the test if still running.
func startServe(t *testing.T, nofile int, args ...string) *server {
	t.Helper()
	return startServeTo(t, nil, nofile, args...)
}

// startServeTo is startServe with the server's stdout going to stdout
// instead of the server's buffer, when not nil.
func startServeTo(t *testing.T, stdout *os.File, nofile int, args ...string) *server {
	t.Helper()
	bin := filepath.Join(root, "bin", "tender-serve")
	var cmd *exec.Cmd
	if nofile > 0 {
		// dash's ulimit sets the hard limit too, so Go's start-up raise
		// of the soft limit cannot undo it.
		cmd = exec.Command("/bin/sh", append([]string{"-c", fmt.Sprintf(`ulimit -n %d && exec "$0" "$@"`, nofile), bin}, args...)...)
	} else {
		cmd = exec.Command(bin, args...)
	}
	s := &server{cmd: cmd, exited: make(chan struct{})}
	cmd.Stdout = &s.stdout
	if stdout != nil {
		cmd.Stdout = stdout
	}
	logs, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		select {
		case <-s.exited:
		default:
			cmd.Process.Kill()
			<-s.exited
		}
	})
	lines := bufio.NewReader(logs)
	for s.info == nil {
		line, err := lines.ReadBytes('\n')
		s.stderr.Write(line)
		if err != nil {
			s.exitErr = cmd.Wait()
			close(s.exited)
			t.Fatalf("tender-serve %v ended before serving: %v; stderr:\n%s", args, err, s.stderr.String())
		}
		var l map[string]any
		if json.Unmarshal(line, &l) == nil && l["msg"] == "serving" {
			s.info = l
		}
	}
	s.url = "http://" + s.info["addr"].(string)
	go func() {
		io.Copy(&s.stderr, lines)
		s.exitErr = cmd.Wait()
		close(s.exited)
	}()
	return s
}

// stop sends SIGTERM and checks for a clean exit.
func (s *server) stop(t *testing.T) {
	t.Helper()
	require.NoError(t, s.cmd.Process.Signal(syscall.SIGTERM))
	s.wait(t)
}

// wait checks that the server exits 0 within serveHangCheck.
func (s *server) wait(t *testing.T) {
	t.Helper()
	select {
	case <-s.exited:
		assert.NoError(t, s.exitErr, "tender-serve exits 0 after SIGTERM; stderr:\n%s", s.logs())
	case <-time.After(serveHangCheck):
		t.Fatal("tender-serve did not stop after SIGTERM")
	}
}

func (s *server) logs() string    { return s.stderr.String() }
func (s *server) console() string { return s.stdout.String() }

// TestServeSlowClients reproduces a slow-client attack on tender-serve with
// a low open-file limit: more clients than it may have connections declare a
// large body and send a byte every half second. /healthz must still be
// answered while they hold their connections, accept must never fail with
// EMFILE, the slow clients must be cut off (408) after -body-timeout, and an
// invocation then succeeds.
func TestServeSlowClients(t *testing.T) {
	// It only waits: see "Parallel tests" in main_test.go.
	t.Parallel()
	const (
		nofile = 128
		slow   = 200
	)
	for _, b := range backends(t) {
		t.Run(string(b), func(t *testing.T) {
			// The slow clients connect and /healthz is answered within
			// some tens of milliseconds, far inside -body-timeout; the
			// drain delay is not what is tested here.
			s := startServe(t, nofile, "-backend="+string(b), "-listen=127.0.0.1:0", "-max-instances=2",
				"-body-timeout=1s", "-drain-delay=0", guestPath("fn_echo"))
			maxConns, _ := s.info["max_conns"].(float64)
			require.True(t, maxConns > 0 && maxConns < nofile-40, "max_conns %v derived from the limit of %d", s.info["max_conns"], nofile)
			addr := strings.TrimPrefix(s.url, "http://")

			var (
				timedOut atomic.Int64 // 408s
				refused  atomic.Int64 // 503s or closed at once
				wrong    atomic.Int64
				wg       sync.WaitGroup
				stop     = make(chan struct{})
			)
			defer wg.Wait() // after the connections close, should the test fail early
			defer close(stop)
			for range slow {
				c, err := net.Dial("tcp", addr)
				require.NoError(t, err)
				defer c.Close()
				_, err = io.WriteString(c, "POST /invoke HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n")
				require.NoError(t, err)
				go func() {
					tick := time.NewTicker(500 * time.Millisecond)
					defer tick.Stop()
					for {
						select {
						case <-stop:
							return
						case <-tick.C:
							if _, err := c.Write([]byte{'x'}); err != nil {
								return
							}
						}
					}
				}()
				wg.Go(func() {
					c.SetReadDeadline(time.Now().Add(serveHangCheck))
					resp, err := http.ReadResponse(bufio.NewReader(c), nil)
					switch {
					case err == nil && resp.StatusCode == http.StatusRequestTimeout && resp.Header.Get("Tender-Error") == "body_timeout":
						timedOut.Add(1)
					case err == nil && resp.StatusCode == http.StatusServiceUnavailable,
						err != nil && (errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF)):
						refused.Add(1)
					default:
						wrong.Add(1)
						t.Errorf("slow client: %v %v", resp, err)
					}
				})
			}

			// The health check is answered while the slow clients still
			// hold the connections: none of them has had its 408 yet.
			client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: serveHangCheck}
			resp, err := client.Get(s.url + "/healthz")
			require.NoError(t, err, "/healthz under the slow clients")
			resp.Body.Close()
			assert.Equal(t, http.StatusOK, resp.StatusCode)
			assert.Zero(t, timedOut.Load(), "slow clients cut before /healthz was answered")

			// An invocation: refused cleanly (503) while every connection is
			// taken, served once the slow ones are cut off.
			deadline := time.Now().Add(serveHangCheck)
			for {
				resp, err := client.Post(s.url+"/invoke", "application/octet-stream", strings.NewReader("ping"))
				require.NoError(t, err, "/invoke under the slow clients")
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					assert.Equal(t, "ping", string(body))
					break
				}
				require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "%s", body)
				require.True(t, time.Now().Before(deadline), "/invoke still refused after %v", serveHangCheck)
				time.Sleep(100 * time.Millisecond)
			}

			wg.Wait()
			t.Logf("%s: max_conns %v; of %d slow clients %d cut off with 408, %d refused over the limit", b, maxConns, slow, timedOut.Load(), refused.Load())
			assert.NotZero(t, timedOut.Load(), "no slow client was cut off by the body timeout")
			assert.Zero(t, wrong.Load())
			s.stop(t)
			assert.NotContains(t, s.logs(), "too many open files")
		})
	}
}

// TestServeDrain sends SIGTERM to tender-serve while keep-alive clients
// invoke it in a loop and a load balancer polls /healthz, stopping the
// clients once it reads "draining". Every request sent must be answered:
// none may meet a reset or EOF.
func TestServeDrain(t *testing.T) {
	const clients = 16
	for _, b := range backends(t) {
		t.Run(string(b), func(t *testing.T) {
			// The drain delay must outlast a probe of the load balancer
			// (every 20 ms) and the clients' noticing it: with none, requests
			// fail; a few tens of milliseconds already suffice.
			s := startServe(t, 0, "-backend="+string(b), "-listen=127.0.0.1:0", "-max-instances=2",
				"-drain-delay=500ms", guestPath("fn_echo"))
			var (
				routed   atomic.Bool // the load balancer still sends work here
				draining atomic.Bool // /healthz said so
				sent     atomic.Int64
				closed   atomic.Int64 // replies with Connection: close
				failed   atomic.Int64
				wg       sync.WaitGroup
			)
			routed.Store(true)
			defer wg.Wait()
			defer routed.Store(false)
			for i := range clients {
				// Each client has a keep-alive transport of its own: it dials
				// only for a request it then sends on the connection. A
				// shared one dials ahead and may leave a connection that
				// never carries a request, which net/http's Shutdown waits
				// 5 s for before taking it for idle.
				tr := &http.Transport{}
				defer tr.CloseIdleConnections()
				client := &http.Client{Transport: tr, Timeout: serveHangCheck}
				wg.Go(func() {
					for n := 0; routed.Load(); n++ {
						body := fmt.Sprintf("client %d request %d", i, n)
						sent.Add(1)
						resp, err := client.Post(s.url+"/invoke", "application/octet-stream", strings.NewReader(body))
						if err != nil {
							if failed.Add(1) <= 5 {
								t.Errorf("request failed: %v", err)
							}
							continue
						}
						got, err := io.ReadAll(resp.Body)
						resp.Body.Close()
						if resp.Close {
							closed.Add(1)
						}
						switch {
						case err != nil:
							failed.Add(1)
							t.Errorf("reading a reply: %v", err)
						case resp.StatusCode == http.StatusOK && string(got) == body,
							resp.StatusCode == http.StatusServiceUnavailable:
						default:
							failed.Add(1)
							t.Errorf("%q: %d %q", body, resp.StatusCode, got)
						}
					}
				})
			}
			// The load balancer: a probe every 20 ms; it takes the server out
			// of rotation when told it is draining, or when it cannot reach it.
			lb := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: time.Second}
			wg.Go(func() {
				for routed.Load() {
					resp, err := lb.Get(s.url + "/healthz")
					if err != nil {
						routed.Store(false)
						return
					}
					text, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.StatusCode == http.StatusServiceUnavailable && string(text) == "draining\n" {
						draining.Store(true)
						routed.Store(false)
						return
					}
					time.Sleep(20 * time.Millisecond)
				}
			})
			for deadline := time.Now().Add(serveHangCheck); sent.Load() < 200; time.Sleep(10 * time.Millisecond) {
				require.True(t, time.Now().Before(deadline), "no load")
			}
			require.NoError(t, s.cmd.Process.Signal(syscall.SIGTERM))
			wg.Wait()
			t.Logf("%s: %d requests, %d replies with Connection: close, %d failed", b, sent.Load(), closed.Load(), failed.Load())
			assert.True(t, draining.Load(), "/healthz never said draining")
			assert.Zero(t, failed.Load(), "requests that got no reply")
			s.wait(t)
		})
	}
}

// TestServeConsoleApart runs a function whose console output imitates the
// server's JSON log and carries terminal escape sequences: the log stream
// (stderr) must hold only the server's own lines, and no raw control byte
// may reach either stream.
func TestServeConsoleApart(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(string(b), func(t *testing.T) {
			s := startServe(t, 0, "-backend="+string(b), "-listen=127.0.0.1:0", "-max-instances=1", "-log-level=debug",
				"-drain-delay=0", guestPath("fn_forge"))
			for _, body := range []string{"one", "two", "abort", "three"} {
				resp, err := http.Post(s.url+"/invoke", "application/octet-stream", strings.NewReader(body))
				require.NoError(t, err)
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				want := http.StatusOK
				if body == "abort" {
					want = http.StatusBadGateway
				}
				assert.Equal(t, want, resp.StatusCode, body)
			}
			s.stop(t)

			logs, console := s.logs(), s.console()
			ours := map[string]bool{"serving": true, "invocation": true, "invocation failed": true, "draining": true, "stopped": true}
			for _, line := range strings.Split(strings.TrimSuffix(logs, "\n"), "\n") {
				var l struct{ Msg string }
				if err := json.Unmarshal([]byte(line), &l); err != nil || !ours[l.Msg] {
					t.Errorf("a log line the server did not write: %q", line)
				}
			}
			assert.Contains(t, logs, `guest aborted: fn_forge\\n{\"level\":\"ERROR\"`, "the abort message, escaped")
			for name, text := range map[string]string{"stderr": logs, "stdout": console} {
				assert.False(t, strings.ContainsAny(text, "\x1b\r\a"), "a raw control byte on %s: %q", name, text)
			}
			assert.Contains(t, console, `fn_forge: {"time":"2026-01-01T00:00:00Z","level":"ERROR","msg":"forged by the guest"}`+"\n")
			assert.Contains(t, console, `fn_forge: \x1b[2J\x1b[31mred\x1b[0m\a`+"\n")
			for _, line := range strings.Split(strings.TrimSuffix(console, "\n"), "\n") {
				assert.True(t, strings.HasPrefix(line, "fn_forge: "), "console line %q", line)
			}
			assert.Equal(t, 3*3, strings.Count(console, "\n"), "three lines for each of three invocations")
		})
	}
}
