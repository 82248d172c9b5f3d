package tests

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tendervm/tender/internal/proctest"

	"github.com/tendervm/tender/monitor"
	"github.com/tendervm/tender/monitor/process"
)

// The CLI confines itself once set up (package confine). These tests check
// that it does, on every thread, and that guests and servers still work
// under the filter; the other CLI tests run confined too.

// threadField returns the named field of /proc/PID/task/*/status, by thread.
func threadField(t *testing.T, pid int, field string) map[string]string {
	t.Helper()
	got, err := proctest.ThreadField(pid, field)
	require.NoError(t, err)
	return got
}

// assertConfined checks every thread of pid: Seccomp 2 (filter) and
// NoNewPrivs 1 when confined, 0 and 0 when not.
func assertConfined(t *testing.T, pid int, confined bool) {
	t.Helper()
	mode, nnp := "0", "0"
	if confined {
		mode, nnp = "2", "1"
	}
	seccomp := threadField(t, pid, "Seccomp")
	assert.Greater(t, len(seccomp), 1, "a Go process has several threads")
	for tid, v := range seccomp {
		assert.Equal(t, mode, v, "Seccomp of thread %s of %d", tid, pid)
	}
	for tid, v := range threadField(t, pid, "NoNewPrivs") {
		assert.Equal(t, nnp, v, "NoNewPrivs of thread %s of %d", tid, pid)
	}
}

// waitOutput waits until out holds want.
func waitOutput(t *testing.T, out *lockedBuffer, want string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(out.String(), want) {
		require.True(t, time.Now().Before(deadline), "no %q in %q", want, out.String())
		time.Sleep(5 * time.Millisecond)
	}
}

// TestCLIRunConfined checks every thread of a running `tender run` once the
// guest runs (it has printed), and that -no-seccomp leaves them alone.
func TestCLIRunConfined(t *testing.T) {
	for _, b := range backends(t) {
		for _, confined := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/confined=%v", b, confined), func(t *testing.T) {
				args := []string{"run", "-backend=" + string(b)}
				if !confined {
					args = append(args, "-no-seccomp")
				}
				args = append(args, guestPath("spin"))
				cmd := exec.Command(filepath.Join(root, "bin", "tender"), args...)
				var out lockedBuffer
				cmd.Stdout, cmd.Stderr = &out, &out
				require.NoError(t, cmd.Start())
				defer cmd.Process.Kill()
				waitOutput(t, &out, "spin: looping forever")
				assertConfined(t, cmd.Process.Pid, confined)
				require.NoError(t, cmd.Process.Signal(os.Interrupt))
				var ee *exec.ExitError
				require.ErrorAs(t, cmd.Wait(), &ee)
				assert.Equal(t, monitor.ExitTimeout, ee.ExitCode(), "%s", out.String())
			})
		}
	}
}

// TestCLIServeConfined checks every thread of `tender serve` once it serves,
// with invocations (cold and fresh instances start under the filter) and a metrics
// scrape, and that it drains and exits 0 on SIGTERM.
func TestCLIServeConfined(t *testing.T) {
	for _, b := range backends(t) {
		// fresh-unwarmed boots its instances under the filter, which a
		// guest process inherits: its first reset's seal must pass it.
		for _, mode := range []string{"cold", "warm", "fresh", "fresh-unwarmed"} {
			if strings.HasPrefix(mode, "fresh") && b == monitor.BackendProcess && process.CanTrack() != nil {
				continue // the process backend refuses fresh instances before Linux 6.7
			}
			for _, confined := range []bool{true, false} {
				t.Run(fmt.Sprintf("%s/%s/confined=%v", b, mode, confined), func(t *testing.T) {
					// No drain delay: what is checked is the confinement, and
					// that SIGTERM still ends the server with 0.
					args := []string{"serve", "-backend=" + string(b), "-mode=" + strings.TrimSuffix(mode, "-unwarmed"), "-listen=127.0.0.1:0", "-drain-delay=0"}
					if !confined {
						args = append(args, "-no-seccomp")
					}
					switch mode {
					case "warm":
						args = append(args, "-prewarm=1")
					case "fresh":
						// The second instance takes the first's
						// snapshot over under the filter.
						args = append(args, "-max-instances=2", "-prewarm=2")
					case "fresh-unwarmed":
						args = append(args, "-prewarm=0")
					}
					args = append(args, guestPath("fn_upper"))
					cmd := exec.Command(filepath.Join(root, "bin", "tender"), args...)
					logs, err := cmd.StderrPipe()
					require.NoError(t, err)
					require.NoError(t, cmd.Start())
					defer cmd.Process.Kill()
					lines := bufio.NewScanner(logs)
					var addr string
					var seen []string
					for addr == "" && lines.Scan() {
						var l struct{ Msg, Addr string }
						if json.Unmarshal(lines.Bytes(), &l) == nil && l.Msg == "serving" {
							addr = l.Addr
						}
						seen = append(seen, lines.Text())
					}
					require.NotEmpty(t, addr, "no serving line:\n%s", strings.Join(seen, "\n"))
					rest := make(chan string, 1)
					go func() {
						b, _ := io.ReadAll(logs)
						rest <- string(b)
					}()
					// A server that dies (its seccomp filter killed it) says
					// why in its log.
					alive := func(err error) {
						t.Helper()
						if err != nil {
							cmd.Process.Kill()
							t.Fatalf("%v; the server's log:\n%s", err, <-rest)
						}
					}
					for i := range 3 {
						resp, err := http.Post("http://"+addr+"/invoke", "text/plain", strings.NewReader(fmt.Sprintf("call %d", i)))
						alive(err)
						body, _ := io.ReadAll(resp.Body)
						resp.Body.Close()
						assert.Equal(t, http.StatusOK, resp.StatusCode)
						assert.Equal(t, fmt.Sprintf("CALL %d", i), string(body))
					}
					resp, err := http.Get("http://" + addr + "/metrics")
					alive(err)
					metrics, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					assert.Equal(t, http.StatusOK, resp.StatusCode)
					assert.Contains(t, string(metrics), "process_open_fds")
					assertConfined(t, cmd.Process.Pid, confined)
					require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
					err = cmd.Wait()
					assert.NoError(t, err, "serve exits 0 after draining; log:\n%s", <-rest)
				})
			}
		}
	}
}

// TestCLIConfinedOutcomes runs guests that end every way through the
// confined CLI: each outcome keeps its exit code, and nothing trips the
// filter on the way out.
func TestCLIConfinedOutcomes(t *testing.T) {
	cases := []struct {
		args   []string
		code   int
		stderr string
	}{
		{[]string{"sha256", "1"}, 0, ""},
		{[]string{"fpu"}, 0, ""},
		{[]string{"exit", "239"}, 239, ""},
		{[]string{"exit", "240"}, monitor.ExitProtocol, "status 240 above 239"},
		{[]string{"overlong"}, monitor.ExitProtocol, "exceeds 65536"},
		{[]string{"unknownhc"}, monitor.ExitProtocol, "unknown hypercall 31"},
		{[]string{"badport"}, monitor.ExitProtocol, "not a hypercall"},
		{[]string{"writecode"}, monitor.ExitCrashed, "#PF page fault"},
		{[]string{"divzero"}, monitor.ExitCrashed, "#DE divide error"},
	}
	for _, b := range backends(t) {
		for _, c := range cases {
			t.Run(string(b)+"/"+strings.Join(c.args, "_"), func(t *testing.T) {
				args := append([]string{"run", "-backend=" + string(b), "-stats", guestPath(c.args[0])}, c.args[1:]...)
				code, _, stderr := tender(t, args...)
				assert.Equal(t, c.code, code, "stderr: %s", stderr)
				assert.Contains(t, stderr, c.stderr)
				assert.Contains(t, stderr, `"total_us"`, "-stats after the run")
				assert.NotContains(t, stderr, "seccomp")
			})
		}
	}
}

// TestCLIGuestHostCall: a guest's own system call is reported as such, also
// when the guest process started under the monitor's filter (a pool's
// instances) and the number is one that filter forbids (socket, 41), which
// then stops the call itself.
func TestCLIGuestHostCall(t *testing.T) {
	for _, nr := range []string{"39", "41"} {
		for _, cmdName := range []string{"run", "invoke"} {
			cmd := exec.CommandContext(context.Background(), filepath.Join(root, "bin", "tender"), cmdName, "-backend=process", guestPath("hostcall"), nr)
			cmd.Stdin = strings.NewReader("x")
			var stderr lockedBuffer
			cmd.Stderr = &stderr
			var ee *exec.ExitError
			require.ErrorAs(t, cmd.Run(), &ee)
			assert.Equal(t, monitor.ExitCrashed, ee.ExitCode(), "%s %s: %s", cmdName, nr, stderr.String())
			assert.Regexp(t, "guest attempted (a )?host system call", stderr.String(), "%s %s", cmdName, nr)
		}
	}
}

// TestReady checks the hook tender run confines itself from: it runs once
// per run, before the guest's first instruction is served, on the thread
// that then serves the vCPU; its error ends the run before the guest runs.
func TestReady(t *testing.T) {
	for _, b := range backends(t) {
		h := newHost(t, b)
		t.Run(string(b), func(t *testing.T) {
			var out lockedBuffer
			calls := 0
			printed := ""
			cfg := monitor.Config{ELF: readGuest(t, "hello"), Console: &out, Ready: func() error {
				calls++
				printed = out.String()
				return nil
			}}
			vm, err := h.New(cfg)
			require.NoError(t, err)
			defer vm.Close()
			res, err := vm.Run(context.Background())
			require.NoError(t, err)
			assert.Equal(t, 0, res.Status)
			assert.Equal(t, 1, calls)
			assert.Empty(t, printed, "Ready runs before the guest's first hypercall")
			assert.Contains(t, out.String(), "hello")

			refused := errors.New("not today")
			var out2 lockedBuffer
			cfg.Console = &out2
			cfg.Ready = func() error { return refused }
			vm2, err := h.New(cfg)
			require.NoError(t, err)
			defer vm2.Close()
			_, err = vm2.Run(context.Background())
			require.ErrorIs(t, err, refused)
			assert.Empty(t, out2.String(), "the guest never ran")

			pool, err := h.NewPool(monitor.PoolConfig{Guest: monitor.Config{ELF: readGuest(t, "fn_upper"), Ready: func() error { return refused }}, Mode: monitor.Cold})
			require.NoError(t, err)
			defer pool.Close()
			_, err = pool.Invoke(context.Background(), monitor.Request{Body: []byte("x")})
			require.ErrorIs(t, err, refused, "a pool instance that is not ready fails its call")
		})
	}
}

// TestCLIConfinedStart starts many short confined `tender invoke` processes,
// two at a time: the filter goes on right after the host opens, and
// nothing the host still does in the background (reading KVM's supported
// CPUID) may meet it. One start in about 20 died of that ("forbidden
// system call 16") before NewHost's background work was waited for.
func TestCLIConfinedStart(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(string(b), func(t *testing.T) {
			var wg sync.WaitGroup
			var mu sync.Mutex
			var failed []string
			for w := range 2 {
				wg.Go(func() {
					for i := range 50 {
						cmd := exec.Command(filepath.Join(root, "bin", "tender"), "invoke", "-backend="+string(b), "-mode=cold", guestPath("fn_echo"))
						cmd.Stdin = strings.NewReader("hello")
						out, err := cmd.CombinedOutput()
						if err != nil || string(out) != "hello" {
							mu.Lock()
							failed = append(failed, fmt.Sprintf("worker %d run %d: %v: %q", w, i, err, out))
							mu.Unlock()
						}
					}
				})
			}
			wg.Wait()
			assert.Empty(t, failed)
		})
	}
}
