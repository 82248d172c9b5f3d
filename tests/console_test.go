package tests

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"golang.org/x/sys/unix"

	"github.com/tendervm/tender/monitor"
	"github.com/tendervm/tender/monitor/process"
)

// hangCheck bounds how long a stopped guest may take to come back. It is a
// check against hanging, not a performance bound: a stop takes milliseconds.
const hangCheck = 10 * time.Second

// stalledConsole is a console whose Write blocks until unblock breaks it: a
// pipe nobody reads.
func stalledConsole() (console io.Writer, unblock func()) {
	pr, pw := io.Pipe()
	return pw, func() { pr.CloseWithError(errors.New("test over")) }
}

// within runs f on a goroutine and fails the test if it has not returned
// within hangCheck.
func within(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(hangCheck):
		t.Fatalf("%s: still running after %v", what, hangCheck)
	}
}

// TestConsoleStalledRun stops a guest that floods a console nobody reads: the
// deadline and a cancellation stop it with a StoppedError, and what it wrote
// but the console never took is counted as dropped.
func TestConsoleStalledRun(t *testing.T) {
	for _, b := range backends(t) {
		h := newHost(t, b)
		for _, cancelIt := range []bool{false, true} {
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			want := context.DeadlineExceeded
			if cancelIt {
				ctx, cancel = context.WithCancel(context.Background())
				time.AfterFunc(200*time.Millisecond, cancel)
				want = context.Canceled
			}
			console, unblock := stalledConsole()
			t.Cleanup(unblock)
			vm, err := h.New(monitor.Config{ELF: readGuest(t, "flood"), Console: console})
			require.NoError(t, err)
			var res monitor.Result
			within(t, string(b)+" run", func() { res, err = vm.Run(ctx) })
			cancel()
			se, ok := as[*monitor.StoppedError](err)
			require.True(t, ok, "%s: want a StoppedError, got %v", b, err)
			assert.ErrorIs(t, se, want, b)
			assert.Positive(t, res.Stats.ConsoleBytes, b)
			assert.Positive(t, res.Stats.ConsoleDropped, b)
			assert.LessOrEqual(t, res.Stats.ConsoleDropped, res.Stats.ConsoleBytes, b)
			within(t, string(b)+" close", func() { vm.Close() })
		}
	}
}

// TestConsoleStalledPool invokes a function that floods a console nobody
// reads, in both modes: the invocation fails at its deadline with a
// StoppedError, and the pool still closes.
func TestConsoleStalledPool(t *testing.T) {
	for _, b := range backends(t) {
		h := newHost(t, b)
		for _, mode := range []monitor.Mode{monitor.Cold, monitor.Warm} {
			console, unblock := stalledConsole()
			p := newPool(t, h, "fn_flood", monitor.PoolConfig{Mode: mode, Guest: monitor.Config{Console: console}})
			t.Cleanup(unblock) // before the pool's Close, which would wait for it
			var err error
			within(t, string(b)+" "+string(mode)+" invoke", func() {
				_, err = p.Invoke(context.Background(), monitor.Request{Body: []byte("flood"), Deadline: time.Now().Add(200 * time.Millisecond)})
			})
			se, ok := as[*monitor.StoppedError](err)
			require.True(t, ok, "%s %s: want a StoppedError, got %v", b, mode, err)
			assert.ErrorIs(t, se, context.DeadlineExceeded)
			within(t, string(b)+" "+string(mode)+" close", func() { p.Close() })
		}
	}
}

// TestConsoleDelivered checks that a function's console output reaches the
// console before its reply does, in both modes.
func TestConsoleDelivered(t *testing.T) {
	for _, b := range backends(t) {
		h := newHost(t, b)
		for _, mode := range []monitor.Mode{monitor.Cold, monitor.Warm} {
			var out lockedBuffer
			p := newPool(t, h, "fn_flood", monitor.PoolConfig{Mode: mode, Guest: monitor.Config{Console: &out}})
			for i := range 3 {
				rep, err := p.Invoke(context.Background(), monitor.Request{Body: []byte("hi")})
				require.NoError(t, err, "%s %s", b, mode)
				assert.Equal(t, "hi", string(rep.Body))
				assert.Equal(t, i+1, strings.Count(out.String(), "fn_flood: request"), "%s %s: %q", b, mode, out.String())
			}
		}
	}
}

// slowWriter is a console that takes 50 ms per Write.
type slowWriter struct{ lockedBuffer }

func (s *slowWriter) Write(p []byte) (int, error) {
	time.Sleep(50 * time.Millisecond)
	return s.lockedBuffer.Write(p)
}

// TestConsoleDeliveredBeforeFailure checks that what a function guest wrote
// before it ended reaches a slow console before Invoke returns, also when
// it ended before taking its first request.
func TestConsoleDeliveredBeforeFailure(t *testing.T) {
	for _, b := range backends(t) {
		h := newHost(t, b)
		for _, mode := range []monitor.Mode{monitor.Cold, monitor.Warm} {
			var out slowWriter
			p := newPool(t, h, "exit", monitor.PoolConfig{Mode: mode, Guest: monitor.Config{Args: []string{"x"}, Console: &out}})
			_, err := p.Invoke(context.Background(), monitor.Request{Body: []byte("hi")})
			pe, ok := as[*monitor.ProtocolError](err)
			require.True(t, ok, "%s %s: want a ProtocolError, got %v", b, mode, err)
			assert.Contains(t, pe.Error(), "exited with status 2 before taking a request")
			assert.Equal(t, "usage: exit [STATUS]\n", out.String(), "%s %s", b, mode)
		}
	}
}

// stalledPipe returns the write end of a pipe whose read end stays open, and
// unread, until the test ends.
func stalledPipe(t *testing.T) *os.File {
	r, w, err := os.Pipe()
	require.NoError(t, err)
	t.Cleanup(func() { r.Close(); w.Close() })
	return w
}

// waitBlockedWrite waits until a thread of process pid is blocked in a
// write(2) to its file descriptor fd, as on a pipe nobody reads once full.
// Filling a pipe a line per hypercall takes ~0.5 s on KVM here and seconds
// under emulated KVM (make test-kvm-emulated): the bound only catches hangs.
func waitBlockedWrite(t *testing.T, pid, fd int) {
	t.Helper()
	want := fmt.Sprintf("%d 0x%x ", unix.SYS_WRITE, fd) // syscall number, first argument
	require.Eventually(t, func() bool {
		files, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/syscall", pid))
		for _, f := range files {
			if b, err := os.ReadFile(f); err == nil && strings.HasPrefix(string(b), want) {
				return true
			}
		}
		return false
	}, serveHangCheck, time.Millisecond, "no thread of %d blocked writing to fd %d", pid, fd)
}

// startTender starts bin/tender with the given standard files.
func startTender(t *testing.T, stdin io.Reader, stdout, stderr io.Writer, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(filepath.Join(root, "bin", "tender"), args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { cmd.Process.Kill() })
	return cmd
}

// exitOf waits for cmd within hangCheck and returns its exit status, or -1
// if it was killed by a signal.
func exitOf(t *testing.T, cmd *exec.Cmd) int {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				t.Errorf("%v: killed by %v", cmd.Args, ws.Signal())
				return -1
			}
			return ee.ExitCode()
		}
		require.NoError(t, err)
		return 0
	case <-time.After(hangCheck):
		cmd.Process.Kill()
		t.Fatalf("%v: still running after %v", cmd.Args, hangCheck)
		return -1
	}
}

// TestCLIStalledStdout runs a flooding guest with stdout on a pipe nobody
// reads: -timeout still ends it with 243, and so does SIGTERM.
func TestCLIStalledStdout(t *testing.T) {
	// It only waits: see "Parallel tests" in main_test.go.
	t.Parallel()
	for _, b := range backends(t) {
		var stderr lockedBuffer
		cmd := startTender(t, nil, stalledPipe(t), &stderr, "run", "-backend="+string(b), "-timeout=1s", guestPath("flood"))
		assert.Equal(t, monitor.ExitTimeout, exitOf(t, cmd), "%s: %s", b, stderr.String())
		assert.Contains(t, stderr.String(), "timeout", b)

		// SIGTERM once the guest is held on the full pipe.
		stderr = lockedBuffer{}
		cmd = startTender(t, nil, stalledPipe(t), &stderr, "run", "-backend="+string(b), guestPath("flood"))
		waitBlockedWrite(t, cmd.Process.Pid, 1)
		require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
		assert.Equal(t, monitor.ExitTimeout, exitOf(t, cmd), "%s: %s", b, stderr.String())
		assert.Contains(t, stderr.String(), "guest stopped", b)
	}
}

// TestCLIInvokeStalled invokes functions with stderr, the console, on a pipe
// nobody reads: the invocation's deadline ends a flooding one with 243; and
// with stdout on such a pipe: SIGTERM ends the wait to write the reply.
func TestCLIInvokeStalled(t *testing.T) {
	// It only waits: see "Parallel tests" in main_test.go.
	t.Parallel()
	for _, b := range backends(t) {
		var stdout lockedBuffer
		cmd := startTender(t, strings.NewReader("flood"), &stdout, stalledPipe(t), "invoke", "-backend="+string(b), "-timeout=1s", guestPath("fn_flood"))
		assert.Equal(t, monitor.ExitTimeout, exitOf(t, cmd), b)
		assert.Empty(t, stdout.String(), b)

		// A reply larger than the pipe holds.
		var stderr lockedBuffer
		body := strings.Repeat("x", 512<<10)
		// SIGTERM once the reply has filled the pipe: tender is held
		// writing the rest.
		cmd = startTender(t, strings.NewReader(body), stalledPipe(t), &stderr, "invoke", "-backend="+string(b), guestPath("fn_echo"))
		waitBlockedWrite(t, cmd.Process.Pid, 1)
		require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
		assert.Equal(t, monitor.ExitTimeout, exitOf(t, cmd), "%s: %s", b, stderr.String())
		assert.Contains(t, stderr.String(), "interrupted while writing the reply", b)
	}
}

// TestConsoleWriteFails gives a guest a console whose every Write fails: the
// guest runs to its own outcome, and all its output counts as dropped.
func TestConsoleWriteFails(t *testing.T) {
	for _, b := range backends(t) {
		h := newHost(t, b)
		vm, err := h.New(monitor.Config{ELF: readGuest(t, "exit"), Args: []string{"x"}, Console: failingWriter{}})
		require.NoError(t, err)
		res, err := vm.Run(context.Background())
		vm.Close()
		require.NoError(t, err, b)
		assert.Equal(t, 2, res.Status, b)
		assert.Positive(t, res.Stats.ConsoleBytes, b)
		assert.Equal(t, res.Stats.ConsoleBytes, res.Stats.ConsoleDropped, b)
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("console gone") }

// TestCLIClosedStdout runs guests with stdout on a pipe whose reader has gone
// (| head) and on a full disk: tender is not killed by SIGPIPE, and the run
// ends with its console's failure, exit 255 (Config.ConsoleRequired): a
// guest still writing is stopped, not left to run on unseen, and one that
// ended has its lost output reported rather than a status of 0.
func TestCLIClosedStdout(t *testing.T) {
	for _, b := range backends(t) {
		for _, guest := range []string{"exit x", "flood"} {
			r, w, err := os.Pipe()
			require.NoError(t, err)
			r.Close()
			var stderr lockedBuffer
			cmd := startTender(t, nil, w, &stderr, append([]string{"run", "-backend=" + string(b)}, guestArgs(guest)...)...)
			w.Close()
			assert.Equal(t, monitor.ExitMonitor, exitOf(t, cmd), "%s %s: %s", b, guest, stderr.String())
			assert.True(t, strings.HasPrefix(stderr.String(), "tender: console: write /dev/stdout: broken pipe"), "%s %s: %q", b, guest, stderr.String())
			if guest == "flood" {
				assert.Equal(t, "tender: console: write /dev/stdout: broken pipe (guest stopped)\n", stderr.String(), b)
			}
		}

		// A reader that goes after some output, as head's does.
		var stderr lockedBuffer
		cmd := exec.Command(filepath.Join(root, "bin", "tender"), "run", "-backend="+string(b), guestPath("flood"))
		out, err := cmd.StdoutPipe()
		require.NoError(t, err)
		cmd.Stderr = &stderr
		require.NoError(t, cmd.Start())
		t.Cleanup(func() { cmd.Process.Kill() })
		_, err = io.ReadFull(out, make([]byte, 100))
		require.NoError(t, err)
		out.Close()
		assert.Equal(t, monitor.ExitMonitor, exitOf(t, cmd), "%s: %s", b, stderr.String())
		assert.Equal(t, "tender: console: write /dev/stdout: broken pipe (guest stopped)\n", stderr.String(), b)

		full, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
		require.NoError(t, err)
		stderr = lockedBuffer{}
		cmd = startTender(t, nil, full, &stderr, "run", "-backend="+string(b), guestPath("hello"))
		full.Close()
		assert.Equal(t, monitor.ExitMonitor, exitOf(t, cmd), "%s: %s", b, stderr.String())
		assert.True(t, strings.HasPrefix(stderr.String(), "tender: console: write /dev/stdout: no space left on device"), "%s: %q", b, stderr.String())
	}
}

// guestArgs splits "NAME ARGS..." into the guest's path and its arguments.
func guestArgs(s string) []string {
	f := strings.Fields(s)
	return append([]string{guestPath(f[0])}, f[1:]...)
}

// TestServeStalledOutput runs `tender serve` with its stdout (guest console)
// and stderr (its log, a line per request) on pipes nobody reads: requests
// still get their answers, faults and deadlines included, and SIGTERM still
// ends the server.
func TestServeStalledOutput(t *testing.T) {
	// It only waits: see "Parallel tests" in main_test.go.
	t.Parallel()
	for _, b := range backends(t) {
		t.Run(string(b), func(t *testing.T) {
			stdout, stderr := stalledPipe(t), stalledPipe(t)
			for _, f := range []*os.File{stdout, stderr} {
				_, err := unix.FcntlInt(f.Fd(), unix.F_SETPIPE_SZ, 4096)
				require.NoError(t, err)
			}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(t, err)
			addr := ln.Addr().String()
			ln.Close()
			cmd := startTender(t, nil, stdout, stderr, "serve", "-backend="+string(b), "-listen="+addr,
				"-log-level=debug", "-timeout=1s", "-drain-delay=100ms", guestPath("fn_mixed"))
			url := "http://" + addr
			within(t, "serve start", func() {
				for {
					if resp, err := http.Get(url + "/healthz"); err == nil {
						resp.Body.Close()
						return
					}
					time.Sleep(10 * time.Millisecond)
				}
			})
			// post sends body; timeout, when not "", is its Tender-Timeout.
			post := func(body, timeout string) int {
				req, err := http.NewRequest(http.MethodPost, url+"/invoke", strings.NewReader(body))
				require.NoError(t, err)
				req.Header.Set("Content-Type", "text/plain")
				if timeout != "" {
					req.Header.Set("Tender-Timeout", timeout)
				}
				resp, err := http.DefaultClient.Do(req)
				require.NoError(t, err)
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				return resp.StatusCode
			}
			line := "print " + strings.Repeat("x", 2000) + "\n"
			within(t, "requests with stalled output", func() {
				for range 40 { // far more than the pipes hold
					assert.Equal(t, http.StatusOK, post(line, ""))
				}
				assert.Equal(t, http.StatusBadGateway, post("fault", ""))
				// A deadline of the request's own, shorter than -timeout.
				assert.Equal(t, http.StatusGatewayTimeout, post("spin", "200ms"))
				assert.Equal(t, http.StatusOK, post("still here", ""))
			})
			require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
			assert.Equal(t, 0, exitOf(t, cmd), "SIGTERM ends the server")
		})
	}
}

// TestConsoleLimitPerCall: a pooled function's console limit counts per
// call, so a warm instance printing a little on every request outlives the
// limit's worth of requests; one request over the limit still fails, and
// the instance's next request gets a fresh allowance.
func TestConsoleLimitPerCall(t *testing.T) {
	const limit = 100 // fn_flood prints ~35 bytes per plain request
	for _, b := range backends(t) {
		h := newHost(t, b)
		for _, mode := range []monitor.Mode{monitor.Warm, monitor.Fresh} {
			if mode == monitor.Fresh && b == monitor.BackendProcess && process.CanTrack() != nil {
				continue
			}
			var out lockedBuffer
			p := newPool(t, h, "fn_flood", monitor.PoolConfig{Mode: mode, MaxInstances: 1,
				Guest: monitor.Config{Console: &out, ConsoleLimit: limit}})
			for i := range 10 {
				_, err := p.Invoke(context.Background(), monitor.Request{Body: []byte("hi")})
				require.NoError(t, err, "%s %s: request %d of a few dozen console bytes each", b, mode, i)
			}
			_, err := p.Invoke(context.Background(), monitor.Request{Body: []byte("flood")})
			pe, ok := as[*monitor.ProtocolError](err)
			require.True(t, ok, "%s %s: a flooding request ends at the limit; got %v", b, mode, err)
			assert.Contains(t, pe.Reason, "console output limit")
			_, err = p.Invoke(context.Background(), monitor.Request{Body: []byte("hi")})
			assert.NoError(t, err, "%s %s: the next request", b, mode)
		}
	}
}

// fullPipe returns the write end of a pipe that nobody reads and whose
// buffer is already full: a write to it blocks.
func fullPipe(t *testing.T) *os.File {
	t.Helper()
	r, w, err := os.Pipe()
	require.NoError(t, err)
	t.Cleanup(func() { r.Close(); w.Close() })
	fd := int(w.Fd())
	require.NoError(t, syscall.SetNonblock(fd, true))
	chunk := make([]byte, 4096)
	for {
		if _, err := syscall.Write(fd, chunk); err == syscall.EAGAIN {
			break
		} else {
			require.NoError(t, err)
		}
	}
	require.NoError(t, syscall.SetNonblock(fd, false))
	return w
}

// TestCLIRunStalledStderr: tender run gives its own error report at most
// 0.5 s on a stderr nobody reads, then drops it and exits with the guest's
// outcome (docs/abi.md, "The console").
func TestCLIRunStalledStderr(t *testing.T) {
	// It only waits: see "Parallel tests" in main_test.go.
	t.Parallel()
	for _, b := range backends(t) {
		var stdout lockedBuffer
		cmd := startTender(t, nil, &stdout, fullPipe(t), "run", "-backend="+string(b), guestPath("abort"))
		assert.Equal(t, monitor.ExitAborted, exitOf(t, cmd), "%s: the abort's report could not be written, its exit code stands", b)
	}
}
