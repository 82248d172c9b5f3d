// Package tests boots the example and hostile guests in real virtual machines
// (and, where the host allows, as confined processes) and checks what they
// print, how they end, and that the monitor is unharmed.
package tests

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tendervm/tender/monitor"
	"github.com/tendervm/tender/monitor/kvm"
)

// root is the repository root, where `make` puts bin/.
var root = func() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(file))
}()

// TestMain builds the monitor and every guest once, so that `go test ./...`
// works on a fresh checkout as well as under `make test`.
func TestMain(m *testing.M) {
	cmd := exec.Command("make", "-s", "-C", root, "all")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "tests: `make all` failed; the integration tests need the guests:", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// Parallel tests: a few tests that spend their time waiting (for a body
// timeout, a full pipe, a deadline, the bounded waits of tender's own
// messages) and share nothing with others but the machine call t.Parallel.
// They run after every other test of the package, two at a time on a
// 2-CPU machine (go test's -parallel defaults to GOMAXPROCS). None of them
// has a time bound that a busy CPU could break (each is a hang check, or
// tens of times what it bounds), listens on a fixed port, uses TAP devices
// or network namespaces, or counts the test process's own descriptors,
// goroutines or memory; a test that does must not be parallel.

func guestPath(name string) string { return filepath.Join(root, "bin", "guest", name+".elf") }

func readGuest(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(guestPath(name))
	require.NoError(t, err)
	return b
}

// kvmAvailable reports whether KVM can be used here, and why not.
func kvmAvailable() (bool, error) {
	sys, err := kvm.Open("")
	if err != nil {
		return false, err
	}
	sys.Close()
	return true, nil
}

// backends lists the backends to run guests with: KVM where it works (and it
// must where TENDER_REQUIRE_KVM=1), and the process backend everywhere.
func backends(t *testing.T) []monitor.Backend {
	t.Helper()
	bs := []monitor.Backend{monitor.BackendProcess}
	if ok, err := kvmAvailable(); ok {
		bs = append([]monitor.Backend{monitor.BackendKVM}, bs...)
	} else if os.Getenv("TENDER_REQUIRE_KVM") == "1" {
		t.Fatalf("TENDER_REQUIRE_KVM=1 but KVM is unusable: %v", err)
	} else {
		t.Logf("KVM tests skipped: %v (set TENDER_REQUIRE_KVM=1 to make this a failure)", err)
	}
	return bs
}

func newHost(t testing.TB, b monitor.Backend) *monitor.Host {
	t.Helper()
	h, err := monitor.NewHost(monitor.HostConfig{Backend: b})
	require.NoError(t, err)
	t.Cleanup(func() { h.Close() })
	return h
}

// runGuest boots one guest and returns its result, console output and error
// (from New or Run). It is safe to call from any goroutine.
func runGuest(ctx context.Context, t testing.TB, h *monitor.Host, cfg monitor.Config) (monitor.Result, string, error) {
	t.Helper()
	var out lockedBuffer
	cfg.Console = &out
	vm, err := h.New(cfg)
	if err != nil {
		return monitor.Result{}, "", err
	}
	defer vm.Close()
	res, err := vm.Run(ctx)
	return res, out.String(), err
}

func as[T error](err error) (T, bool) {
	var target T
	ok := errors.As(err, &target)
	return target, ok
}
