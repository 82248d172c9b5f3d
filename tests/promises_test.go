package tests

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tendervm/tender/hypercall"
	"github.com/tendervm/tender/monitor"
)

// Each test here pins one promise of docs/abi.md or the README that no other
// test caught when it was broken on purpose.

// TestFnNextRules breaks each rule of fn_next once, in both modes: every
// break fails its invocation with a protocol error naming the rule, and the
// pool serves the next invocation with a fresh instance.
func TestFnNextRules(t *testing.T) {
	cases := []struct{ rule, reason string }{
		{"flags", "unknown flags 0x3"},
		{"reply-first", "a reply without an outstanding request"},
		{"no-reply", "asked for a new request without replying to request"},
		{"reply-over", fmt.Sprintf("reply of %d bytes exceeds %d", hypercall.FnReplyMax+1, hypercall.FnReplyMax)},
		{"reply-outside", "reply body: guest range"},
		{"reqcap-small", fmt.Sprintf("request buffer of %d bytes, want at least %d", hypercall.FnRequestMax-1, hypercall.FnRequestMax)},
		{"reqbuf-outside", "request buffer: guest range"},
		{"exit-mid", "guest exited with status 0 during request"},
	}
	for _, b := range backends(t) {
		h := newHost(t, b)
		for _, mode := range []monitor.Mode{monitor.Cold, monitor.Warm} {
			for _, c := range cases {
				t.Run(fmt.Sprintf("%s/%s/%s", b, mode, c.rule), func(t *testing.T) {
					p := newPool(t, h, "fnrules", monitor.PoolConfig{Mode: mode, Guest: monitor.Config{Args: []string{c.rule}}})
					for range 2 {
						_, err := p.Invoke(context.Background(), monitor.Request{Body: []byte("x")})
						requireProtocol(t, err, "fn_next", c.reason)
					}
				})
			}
			// The limit itself is allowed: a reply of exactly 1 MiB.
			p := newPool(t, h, "fnrules", monitor.PoolConfig{Mode: mode, Guest: monitor.Config{Args: []string{"reply-max"}}})
			rep, err := p.Invoke(context.Background(), monitor.Request{Body: []byte("x")})
			require.NoError(t, err, "%s %s", b, mode)
			assert.Equal(t, bytes.Repeat([]byte("r"), hypercall.FnReplyMax), rep.Body)
		}
	}
}

// TestQueueLimit: with one instance and a queue of one, the second caller
// waits and is served, the third is refused at once.
func TestQueueLimit(t *testing.T) {
	for _, b := range backends(t) {
		h := newHost(t, b)
		p := newPool(t, h, "fn_spin", monitor.PoolConfig{MaxInstances: 1, QueueLimit: 1, Timeout: 30 * time.Second})
		ctx, cancel := context.WithCancel(context.Background())
		held := make(chan error, 1)
		go func() {
			_, err := p.Invoke(ctx, monitor.Request{Body: []byte("spin")})
			held <- err
		}()
		require.Eventually(t, func() bool { return p.Stats().Live == 1 }, 5*time.Second, time.Millisecond)
		queued := make(chan error, 1)
		go func() {
			rep, err := p.Invoke(context.Background(), monitor.Request{Body: []byte("queued")})
			if err == nil && string(rep.Body) != "queued" {
				err = fmt.Errorf("reply %q", rep.Body)
			}
			queued <- err
		}()
		require.Eventually(t, func() bool { return p.Stats().Queued == 1 }, 5*time.Second, time.Millisecond)
		_, err := p.Invoke(context.Background(), monitor.Request{Body: []byte("third")})
		require.ErrorIs(t, err, monitor.ErrSaturated, "%s: the third caller", b)
		cancel()
		assert.ErrorIs(t, <-held, context.Canceled)
		require.NoError(t, <-queued, "%s: the queued caller is served", b)
	}
}

// TestPoolCloseDrains: Close lets every invocation that entered before it
// finish, the ones queued for an instance included, and refuses new ones.
func TestPoolCloseDrains(t *testing.T) {
	for _, b := range backends(t) {
		h := newHost(t, b)
		p := newPool(t, h, "fn_spin", monitor.PoolConfig{MaxInstances: 2})
		// Two spinning invocations hold both instances until their
		// deadline, so the next callers queue.
		var wg sync.WaitGroup
		for range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := p.Invoke(context.Background(), monitor.Request{Body: []byte("spin"), Deadline: time.Now().Add(300 * time.Millisecond)})
				assert.ErrorIs(t, err, context.DeadlineExceeded)
			}()
		}
		require.Eventually(t, func() bool { return p.Stats().Live == 2 }, 5*time.Second, time.Millisecond)
		const n = 16
		errs := make(chan error, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				body := []byte(fmt.Sprint("caller ", i))
				rep, err := p.Invoke(context.Background(), monitor.Request{Body: body})
				if err == nil && !bytes.Equal(rep.Body, body) {
					err = fmt.Errorf("reply %q for %q", rep.Body, body)
				}
				errs <- err
			}()
		}
		require.Eventually(t, func() bool { return p.Stats().Queued == n }, 5*time.Second, time.Millisecond)
		require.NoError(t, p.Close())
		wg.Wait()
		close(errs)
		for err := range errs {
			assert.NoError(t, err, "%s: a caller queued before Close gets its answer", b)
		}
		assert.EqualValues(t, 0, p.Stats().Live)
		_, err := p.Invoke(context.Background(), monitor.Request{})
		assert.ErrorIs(t, err, monitor.ErrClosed)
	}
}

// TestConsoleLimits: the default limit is 16 MiB; a negative limit means
// none.
func TestConsoleLimits(t *testing.T) {
	for _, b := range backends(t) {
		h := newHost(t, b)
		var n countingWriter
		vm, err := h.New(monitor.Config{ELF: readGuest(t, "flood"), Args: []string{"65536"}, Console: &n})
		require.NoError(t, err)
		// 256 console writes reach the limit; the deadline is a hang check.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		res, err := vm.Run(ctx)
		cancel()
		vm.Close()
		requireProtocol(t, err, "console output limit of 16777216 bytes reached")
		assert.EqualValues(t, monitor.DefaultConsoleLimit, res.Stats.ConsoleBytes, b)
		assert.EqualValues(t, monitor.DefaultConsoleLimit, n.n.Load(), "%s: output up to the limit is delivered", b)

		// No limit: the flood goes past 16 MiB until its deadline.
		n.n.Store(0)
		vm, err = h.New(monitor.Config{ELF: readGuest(t, "flood"), Args: []string{"65536"}, Console: &n, ConsoleLimit: -1})
		require.NoError(t, err)
		ctx, cancel = context.WithCancel(context.Background())
		go func() {
			for n.n.Load() <= 2*monitor.DefaultConsoleLimit {
				time.Sleep(time.Millisecond)
			}
			cancel()
		}()
		res, err = vm.Run(ctx)
		vm.Close()
		_, ok := as[*monitor.StoppedError](err)
		require.True(t, ok, "%s: want a StoppedError, got %v", b, err)
		assert.Greater(t, res.Stats.ConsoleBytes, int64(2*monitor.DefaultConsoleLimit), b)
	}
}

// TestAbortTruncated: the monitor keeps the first 4096 bytes of an abort
// message.
func TestAbortTruncated(t *testing.T) {
	for _, b := range backends(t) {
		h := newHost(t, b)
		_, _, err := runGuest(context.Background(), t, h, monitor.Config{ELF: readGuest(t, "abort"), Args: []string{"long"}})
		ae, ok := as[*monitor.AbortError](err)
		require.True(t, ok, "%s: %v", b, err)
		assert.Equal(t, strings.Repeat("a", hypercall.AbortMsgMax), ae.Message, b)
	}
}

// TestCLIInterrupted: SIGINT stops `tender run` with exit 243, no TAP device
// or root needed.
func TestCLIInterrupted(t *testing.T) {
	for _, b := range backends(t) {
		cmd := exec.Command(filepath.Join(root, "bin", "tender"), "run", "-backend", string(b), guestPath("spin"))
		var out lockedBuffer
		cmd.Stdout, cmd.Stderr = &out, &out
		require.NoError(t, cmd.Start())
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(out.String(), "spin: looping forever") {
			if time.Now().After(deadline) {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("%s: the guest did not start: %q", b, out.String())
			}
			time.Sleep(2 * time.Millisecond)
		}
		require.NoError(t, cmd.Process.Signal(os.Interrupt))
		err := cmd.Wait()
		var ee *exec.ExitError
		require.True(t, errors.As(err, &ee), "%s: %v", b, err)
		assert.Equal(t, 243, ee.ExitCode(), "%s: the documented code: %s", b, out.String())
		assert.Contains(t, out.String(), "interrupt", b)
	}
}

// TestCLIKVMMissing: `tender run -backend kvm` where KVM cannot be used exits
// 255 and says how to run without it. Where the machine has KVM, the test
// hides it in a mount namespace of its own (root only).
func TestCLIKVMMissing(t *testing.T) {
	args := []string{"run", "-backend", "kvm", guestPath("hello")}
	var cmd *exec.Cmd
	switch _, err := os.Stat("/dev/kvm"); {
	case err != nil:
		cmd = exec.Command(filepath.Join(root, "bin", "tender"), args...)
	case os.Geteuid() == 0:
		empty := filepath.Join(t.TempDir(), "not-kvm")
		require.NoError(t, os.WriteFile(empty, nil, 0o600))
		script := `mount --bind "$1" /dev/kvm && shift && exec "$@"`
		cmd = exec.Command("unshare", append([]string{"-m", "--propagation", "private", "sh", "-c", script, "sh", empty, filepath.Join(root, "bin", "tender")}, args...)...)
	default:
		t.Skip("KVM is present and hiding it needs root")
	}
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	require.True(t, errors.As(err, &ee), "%v: %s", err, out)
	assert.Equal(t, 255, ee.ExitCode(), "the documented code: %s", out)
	assert.Contains(t, string(out), "KVM")
	assert.Contains(t, string(out), "-backend=process runs guests as confined processes")
}

// TestBootBound: a function whose guest never reaches fn_next (it spins from
// the start) cannot hold its caller: the invocation's deadline and context
// bind the boot of the instance started for it, and Prewarm's context binds
// a prewarm.
func TestBootBound(t *testing.T) {
	for _, b := range backends(t) {
		h := newHost(t, b)
		for _, mode := range []monitor.Mode{monitor.Cold, monitor.Warm} {
			p := newPool(t, h, "spin", monitor.PoolConfig{Mode: mode})
			within(t, fmt.Sprintf("%s %s deadline", b, mode), func() {
				_, err := p.Invoke(context.Background(), monitor.Request{Body: []byte("x"), Deadline: time.Now().Add(100 * time.Millisecond)})
				assert.ErrorIs(t, err, context.DeadlineExceeded)
				_, ok := as[*monitor.StoppedError](err)
				assert.True(t, ok, "%v", err)
			})
			within(t, fmt.Sprintf("%s %s cancel", b, mode), func() {
				ctx, cancel := context.WithCancel(context.Background())
				time.AfterFunc(100*time.Millisecond, cancel)
				_, err := p.Invoke(ctx, monitor.Request{Body: []byte("x")})
				assert.ErrorIs(t, err, context.Canceled)
			})
			require.Eventually(t, func() bool { return p.Stats().Live == 0 }, 5*time.Second, time.Millisecond, "the stopped instances are gone")
		}
		p := newPool(t, h, "spin", monitor.PoolConfig{Mode: monitor.Warm})
		within(t, fmt.Sprintf("%s prewarm", b), func() {
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			assert.ErrorIs(t, p.Prewarm(ctx, 2), context.DeadlineExceeded)
		})
		require.Eventually(t, func() bool { return p.Stats().Live == 0 }, 5*time.Second, time.Millisecond)
		// A function that boots normally still works on the same host.
		echo := newPool(t, h, "fn_echo", monitor.PoolConfig{})
		require.NoError(t, echo.Prewarm(context.Background(), 2))
		rep, err := echo.Invoke(context.Background(), monitor.Request{Body: []byte("ok"), Deadline: time.Now().Add(5 * time.Second)})
		require.NoError(t, err)
		assert.Equal(t, "ok", string(rep.Body))
	}
}
