package bench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/tendervm/tender/monitor"
)

// poolRunner invokes the echo function through a monitor.Pool in this
// process.
type poolRunner struct {
	e       *env
	backend monitor.Backend
	mode    monitor.Mode
	elf     []byte
	host    *monitor.Host
	pool    *monitor.Pool
}

func (e *env) poolSetup(b monitor.Backend, mode monitor.Mode) func(context.Context) (runner, error) {
	return func(ctx context.Context) (runner, error) {
		if err := needFile(e.guestEcho()); err != nil {
			return nil, err
		}
		elf, err := os.ReadFile(e.guestEcho())
		if err != nil {
			return nil, err
		}
		host, err := monitor.NewHost(monitor.HostConfig{Backend: b})
		if err != nil {
			return nil, unavailable("%v", err)
		}
		r := &poolRunner{e: e, backend: b, mode: mode, elf: elf, host: host}
		n := e.cfg.Concurrency
		r.pool, err = r.newPool(mode, n)
		if err != nil {
			host.Close()
			return nil, err
		}
		if mode != monitor.Cold {
			if err := r.pool.Prewarm(ctx, n); err != nil {
				r.close()
				return nil, fmt.Errorf("prewarming %d instances: %w", n, err)
			}
		}
		return r, nil
	}
}

func (r *poolRunner) newPool(mode monitor.Mode, n int) (*monitor.Pool, error) {
	return r.host.NewPool(monitor.PoolConfig{
		Guest:        monitor.Config{ELF: r.elf, Name: "fn_echo"},
		Mode:         mode,
		MaxInstances: n,
		IdleTimeout:  -1,
		Timeout:      requestTimeout,
	})
}

func (r *poolRunner) enter() error { return nil }

// timesRequests: the pool stops each request at its Timeout.
func (r *poolRunner) timesRequests() {}

func (r *poolRunner) once(ctx context.Context) error {
	rep, err := r.pool.Invoke(ctx, monitor.Request{Body: r.e.cfg.Payload})
	if err != nil {
		return err
	}
	if rep.Status != 0 || !bytes.Equal(rep.Body, r.e.cfg.Payload) {
		return fmt.Errorf("reply %q status %d, want %q status 0", trim(rep.Body), rep.Status, r.e.cfg.Payload)
	}
	return nil
}

// memory boots MemInstances warm (fresh for the fresh row: each one has
// taken its snapshot) instances in a pool of their own and
// divides the growth of the proportional set size (PSS: shared pages split
// between their users, so guest memory shared by monitor and guest process is
// counted once) of this process and its children by their number. A cold
// instance is the same VM, alive only for its request: the figure is its
// cost while it serves.
func (r *poolRunner) memory(ctx context.Context) (float64, string, error) {
	k := r.e.cfg.MemInstances
	mode := monitor.Warm
	if r.mode == monitor.Fresh {
		mode = monitor.Fresh
	}
	pool, err := r.newPool(mode, k)
	if err != nil {
		return 0, "", err
	}
	defer pool.Close()
	before, err := pssKiB()
	if err != nil {
		return 0, "", err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := pool.Prewarm(ctx, k); err != nil {
		return 0, "", err
	}
	after, err := pssKiB()
	if err != nil {
		return 0, "", err
	}
	live := pool.Stats().Live
	if live <= 0 {
		return 0, "", fmt.Errorf("no instance booted")
	}
	what := "tender process"
	if r.backend == monitor.BackendProcess {
		what = "tender process plus the guest processes"
	}
	method := fmt.Sprintf("PSS growth of the %s with %d idle %s instances booted, divided by %d", what, live, mode, live)
	if r.mode == monitor.Cold {
		method += " (a cold VM is the same instance, alive for one request)"
	}
	return float64(after-before) / float64(live), method, nil
}

func (r *poolRunner) close() error {
	err := r.pool.Close()
	if cerr := r.host.Close(); err == nil {
		err = cerr
	}
	return err
}

// pssKiB returns the proportional set size of this process and of its
// children (those of every thread: the process backend's guest processes are
// children of its spawner thread), after returning free Go heap to the system.
func pssKiB() (int64, error) {
	runtime.GC()
	debug.FreeOSMemory()
	self := os.Getpid()
	total, err := readPSS(self)
	if err != nil {
		return 0, err
	}
	for _, pid := range ChildPIDs(self) {
		if kib, err := readPSS(pid); err == nil { // a child may just have gone
			total += kib
		}
	}
	return total, nil
}

// readPSS reads the Pss line of /proc/PID/smaps_rollup, in KiB.
func readPSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "Pss:" {
			return strconv.ParseInt(f[1], 10, 64)
		}
	}
	return 0, fmt.Errorf("/proc/%d/smaps_rollup: no Pss line", pid)
}

// ChildPIDs lists the children of every thread of process pid: with the
// process backend, the guest processes, children of the spawner thread.
func ChildPIDs(pid int) []int {
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	var pids []int
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", pid, t.Name()))
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(f); err == nil {
				pids = append(pids, n)
			}
		}
	}
	return pids
}
