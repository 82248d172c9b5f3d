package tests

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tendervm/tender/monitor"
	"github.com/tendervm/tender/monitor/netdev"
)

// startRun runs vm on a goroutine; the channel gets Run's error.
func startRun(vm *monitor.VM) <-chan error {
	errc := make(chan error, 1)
	go func() {
		_, err := vm.Run(context.Background())
		errc <- err
	}()
	return errc
}

// waitErr waits for errc within hangCheck.
func waitErr(t *testing.T, what string, errc <-chan error) error {
	t.Helper()
	select {
	case err := <-errc:
		return err
	case <-time.After(hangCheck):
		t.Fatalf("%s: still running after %v", what, hangCheck)
		return nil
	}
}

// TestHostCloseStopsRuns: Host.Close stops the guests still running on both
// backends (a spin that no context bounds, a flood waiting for a console
// nobody reads), each Run says why, and nothing more is created from the
// host; Close may be called again, concurrently.
func TestHostCloseStopsRuns(t *testing.T) {
	for _, b := range backends(t) {
		h, err := monitor.NewHost(monitor.HostConfig{Backend: b})
		require.NoError(t, err)
		var runs []<-chan error
		for range 3 {
			vm, err := h.New(monitor.Config{ELF: readGuest(t, "spin")})
			require.NoError(t, err)
			defer vm.Close()
			runs = append(runs, startRun(vm))
		}
		// One waits for a console nobody reads, not in the guest.
		console, unblock := stalledConsole()
		defer unblock()
		vm, err := h.New(monitor.Config{ELF: readGuest(t, "flood"), Console: console})
		require.NoError(t, err)
		defer vm.Close()
		runs = append(runs, startRun(vm))
		time.Sleep(50 * time.Millisecond) // the guests spin
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() { assert.NoError(t, h.Close(), b) })
		}
		wg.Wait()
		for _, errc := range runs {
			err := waitErr(t, string(b)+" run", errc)
			assert.ErrorIs(t, err, monitor.ErrHostClosed, b)
			_, ok := as[*monitor.StoppedError](err)
			assert.True(t, ok, "%s: %v", b, err)
		}
		_, err = h.New(monitor.Config{ELF: readGuest(t, "hello")})
		assert.ErrorIs(t, err, monitor.ErrHostClosed, b)
		_, err = h.NewPool(monitor.PoolConfig{Guest: monitor.Config{ELF: readGuest(t, "fn_echo")}})
		assert.ErrorIs(t, err, monitor.ErrHostClosed, b)
	}
}

// TestHostClosePool: a pool of a closed host answers no more: its parked
// instance was stopped, and no new one boots.
func TestHostClosePool(t *testing.T) {
	for _, b := range backends(t) {
		h, err := monitor.NewHost(monitor.HostConfig{Backend: b})
		require.NoError(t, err)
		p, err := h.NewPool(monitor.PoolConfig{Guest: monitor.Config{ELF: readGuest(t, "fn_echo")}, MaxInstances: 1})
		require.NoError(t, err)
		rep, err := p.Invoke(context.Background(), monitor.Request{Body: []byte("hi")})
		require.NoError(t, err, b)
		require.Equal(t, "hi", string(rep.Body))
		require.NoError(t, h.Close())
		for range 2 {
			_, err = p.Invoke(context.Background(), monitor.Request{Body: []byte("hi")})
			assert.ErrorIs(t, err, monitor.ErrHostClosed, b)
		}
		assert.NoError(t, p.Close())
	}
}

// TestPoolClosePrewarm: Close stops a Prewarm whose guest never reaches
// fn_next, though its caller's context never ends; the pool's Timeout
// bounds such a boot too.
func TestPoolClosePrewarm(t *testing.T) {
	for _, b := range backends(t) {
		h := newHost(t, b)
		p, err := h.NewPool(monitor.PoolConfig{Guest: monitor.Config{ELF: readGuest(t, "spin")}, Timeout: time.Minute})
		require.NoError(t, err)
		errc := make(chan error, 1)
		go func() { errc <- p.Prewarm(context.Background(), 1) }()
		require.Eventually(t, func() bool { return p.Stats().Live == 1 }, hangCheck, time.Millisecond)
		closed := make(chan error, 1)
		go func() { closed <- p.Close() }()
		assert.NoError(t, waitErr(t, string(b)+" Close", closed))
		err = waitErr(t, string(b)+" Prewarm", errc)
		assert.ErrorIs(t, err, monitor.ErrClosed, b)
		_, ok := as[*monitor.StoppedError](err)
		assert.True(t, ok, "%s: %v", b, err)

		p, err = h.NewPool(monitor.PoolConfig{Guest: monitor.Config{ELF: readGuest(t, "spin")}, Timeout: 100 * time.Millisecond})
		require.NoError(t, err)
		err = p.Prewarm(context.Background(), 1)
		assert.ErrorIs(t, err, context.DeadlineExceeded, b)
		assert.NoError(t, p.Close())
	}
}

// TestVMCloseDuringRun: Close stops the Run under way and waits for it
// before it unmaps the guest's memory (make test-race sees a race if not);
// Run after Close says the VM is closed.
func TestVMCloseDuringRun(t *testing.T) {
	for _, b := range backends(t) {
		h := newHost(t, b)
		entering := make(chan struct{})
		vm, err := h.New(monitor.Config{ELF: readGuest(t, "spin"), Ready: func() error { close(entering); return nil }})
		require.NoError(t, err)
		errc := startRun(vm)
		<-entering // the run has claimed the VM
		closed := make(chan error, 1)
		go func() { closed <- vm.Close() }()
		assert.NoError(t, waitErr(t, string(b)+" Close", closed))
		// Stopped by Close, not failed by memory unmapped under it (a
		// triple fault, a #GP, a protocol error).
		err = waitErr(t, string(b)+" Run", errc)
		assert.ErrorIs(t, err, monitor.ErrVMClosed, b)
		_, ok := as[*monitor.StoppedError](err)
		assert.True(t, ok, "%s: %v", b, err)

		vm, err = h.New(monitor.Config{ELF: readGuest(t, "hello")})
		require.NoError(t, err)
		require.NoError(t, vm.Close())
		_, err = vm.Run(context.Background())
		assert.ErrorIs(t, err, monitor.ErrVMClosed, b)
	}
}

// TestPoolCallerGone: an invocation whose context is already done boots
// nothing; the pool keeps the guest's ELF, so its caller may reuse its
// buffer; and a guest with a device needs a pool of one instance.
func TestPoolCallerGone(t *testing.T) {
	for _, b := range backends(t) {
		h := newHost(t, b)
		elf := readGuest(t, "fn_echo")
		buf := append([]byte(nil), elf...)
		p, err := h.NewPool(monitor.PoolConfig{Guest: monitor.Config{ELF: buf}, Mode: monitor.Cold})
		require.NoError(t, err)
		clear(buf)
		ctx, cancel := context.WithCancelCause(context.Background())
		cancel(errors.New("client gone"))
		for range 5 {
			_, err := p.Invoke(ctx, monitor.Request{Body: []byte("x")})
			assert.ErrorIs(t, err, context.Canceled, b)
			assert.ErrorContains(t, err, "client gone", b)
		}
		assert.Zero(t, p.Stats().Started, "%s: booted for callers already gone", b)
		rep, err := p.Invoke(context.Background(), monitor.Request{Body: []byte("still here")})
		require.NoError(t, err, b)
		assert.Equal(t, "still here", string(rep.Body), b)
		require.NoError(t, p.Close())

		wp, err := h.NewPool(monitor.PoolConfig{Guest: monitor.Config{ELF: elf}})
		require.NoError(t, err)
		assert.ErrorIs(t, wp.Prewarm(ctx, 1), context.Canceled, b)
		require.NoError(t, wp.Close())

		dev, ep, err := netdev.NewPipe()
		require.NoError(t, err)
		defer dev.Close()
		defer ep.Close()
		cfg := monitor.Config{ELF: readGuest(t, "net_udpfn"), Net: map[string]netdev.Device{"net0": dev}}
		_, err = h.NewPool(monitor.PoolConfig{Guest: cfg, MaxInstances: 2})
		assert.ErrorContains(t, err, "would share its devices", b)
		dp, err := h.NewPool(monitor.PoolConfig{Guest: cfg, MaxInstances: 1})
		require.NoError(t, err, b)
		require.NoError(t, dp.Close())
	}
}
