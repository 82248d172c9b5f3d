package tests

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tendervm/tender/monitor"
	"github.com/tendervm/tender/monitor/vcpu"
)

// expectedSHA computes what the sha256 guest must print for n MiB: the digest
// of bytes i%251.
func expectedSHA(n int) string {
	h := sha256.New()
	buf := make([]byte, 1<<20)
	var off int
	for range n {
		for i := range buf {
			buf[i] = byte((off + i) % 251)
		}
		off += len(buf)
		h.Write(buf)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// TestGuests boots every example and hostile guest and checks its output,
// status and typed error.
func TestGuests(t *testing.T) {
	type check func(t *testing.T, res monitor.Result, err error, out string)
	exitsWith := func(status int, output string) check {
		return func(t *testing.T, res monitor.Result, err error, out string) {
			require.NoError(t, err)
			assert.Equal(t, status, res.Status)
			assert.Contains(t, out, output)
		}
	}
	faults := func(vector uint8, cr2 *uint64) check {
		return func(t *testing.T, res monitor.Result, err error, out string) {
			fe, ok := as[*monitor.FaultError](err)
			require.True(t, ok, "want a FaultError, got %v", err)
			assert.Equal(t, vector, fe.Vector, "vector: %v", err)
			assert.GreaterOrEqual(t, fe.RIP, uint64(0x100000), "fault RIP inside the image")
			if cr2 != nil {
				assert.Equal(t, *cr2, fe.CR2)
			}
			assert.NotEmpty(t, out, "the guest printed before faulting")
			assert.Equal(t, monitor.ExitCrashed, monitor.ExitCode(res.Status, err))
		}
	}
	protocol := func(reason string) check {
		return func(t *testing.T, res monitor.Result, err error, out string) {
			pe, ok := as[*monitor.ProtocolError](err)
			require.True(t, ok, "want a ProtocolError, got %v", err)
			assert.Contains(t, pe.Error(), reason)
			assert.Equal(t, monitor.ExitProtocol, monitor.ExitCode(res.Status, err))
		}
	}
	zero := uint64(0)
	cases := []struct {
		guest string
		args  []string
		check check
	}{
		{"hello", nil, exitsWith(0, "hello")},
		{"exit", []string{"7"}, exitsWith(7, "")},
		{"exit", []string{"0"}, exitsWith(0, "")},
		{"exit", []string{"239"}, exitsWith(239, "")},
		{"exit", []string{"240"}, protocol("status 240 above 239")},
		{"exit", []string{"x"}, exitsWith(2, "usage")},
		{"sha256", []string{"1"}, exitsWith(0, "sha256 1MiB "+expectedSHA(1))},
		{"fpu", nil, exitsWith(0, "fpu sse=42 avx=84")},
		{"abort", nil, func(t *testing.T, res monitor.Result, err error, out string) {
			ae, ok := as[*monitor.AbortError](err)
			require.True(t, ok, "want an AbortError, got %v", err)
			assert.Equal(t, "deliberate abort from guest", ae.Message)
			assert.Equal(t, monitor.ExitAborted, monitor.ExitCode(res.Status, err))
		}},
		{"wildptr", nil, protocol("console_write: buffer")},
		{"overlong", nil, protocol("length 1099511627776 exceeds 65536")},
		{"unknownhc", nil, protocol("unknown hypercall 31")},
		{"badport", nil, protocol("out on port 0x80 is not a hypercall")},
		// Port I/O to a hypercall port other than `outl %eax,%dx`; each
		// would exit with status 0 if it were served as a hypercall.
		{"portio", []string{"outsl"}, protocol("4-byte outs on port 0x503 is not a hypercall")},
		{"portio", []string{"repoutsl1"}, protocol("4-byte outs on port 0x503 is not a hypercall")},
		{"portio", []string{"repoutsl4"}, protocol("4-byte outs on port 0x503 is not a hypercall")},
		{"portio", []string{"outb"}, protocol("1-byte out on port 0x503 is not a hypercall")},
		{"portio", []string{"outw"}, protocol("2-byte out on port 0x503 is not a hypercall")},
		{"portio", []string{"inl"}, protocol("4-byte in on port 0x503 is not a hypercall")},
		{"syscall", nil, func(t *testing.T, res monitor.Result, err error, out string) {
			ce, ok := as[*monitor.CrashError](err)
			require.True(t, ok, "want a CrashError, got %v", err)
			assert.Equal(t, vcpu.ExitSyscall, ce.Kind, "%v", err)
			assert.Contains(t, ce.Error(), "system call 39")
			assert.GreaterOrEqual(t, ce.RIP, uint64(0x100000), "syscall RIP inside the image")
			assert.NotContains(t, out, "returned", "the guest went on after the syscall")
			assert.Equal(t, monitor.ExitCrashed, monitor.ExitCode(res.Status, err))
		}},
		{"nullderef", nil, faults(14, &zero)},
		{"writecode", nil, faults(14, nil)},
		{"invalidop", nil, faults(6, nil)},
		{"divzero", nil, faults(0, nil)},
	}
	for _, b := range backends(t) {
		h := newHost(t, b)
		for _, c := range cases {
			name := fmt.Sprintf("%s/%s", b, strings.Join(append([]string{c.guest}, c.args...), "_"))
			t.Run(name, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				res, out, err := runGuest(ctx, t, h, monitor.Config{ELF: readGuest(t, c.guest), Name: c.guest, Args: c.args})
				c.check(t, res, err, out)
			})
		}
	}
}

// TestSyscallSameOnBothBackends checks that an attempted system call is
// reported at the same instruction by every backend, however the host
// raised it (#UD, or a fetch from LSTAR on kvm_pvm).
func TestSyscallSameOnBothBackends(t *testing.T) {
	var rips []uint64
	for _, b := range backends(t) {
		h := newHost(t, b)
		_, _, err := runGuest(context.Background(), t, h, monitor.Config{ELF: readGuest(t, "syscall")})
		ce, ok := as[*monitor.CrashError](err)
		require.True(t, ok, "%s: want a CrashError, got %v", b, err)
		require.Equal(t, vcpu.ExitSyscall, ce.Kind, "%s: %v", b, err)
		rips = append(rips, ce.RIP)
	}
	for _, rip := range rips[1:] {
		assert.Equal(t, rips[0], rip, "syscall RIP per backend: %#x", rips)
	}
}

// TestWriteCodeFaultAddress checks that the page fault of a write to the
// guest's own text names an address inside the text.
func TestWriteCodeFaultAddress(t *testing.T) {
	for _, b := range backends(t) {
		h := newHost(t, b)
		_, _, err := runGuest(context.Background(), t, h, monitor.Config{ELF: readGuest(t, "writecode")})
		fe, ok := as[*monitor.FaultError](err)
		require.True(t, ok, "%s: %v", b, err)
		assert.GreaterOrEqual(t, fe.CR2, uint64(0x100000), b)
		// Both backends report the hardware's error code: present, write,
		// user.
		require.True(t, fe.HasErrorCode, b)
		assert.EqualValues(t, 0x7, fe.ErrorCode&0x7, b)
	}
}

// TestTimeout stops a spinning guest by its deadline and reports a timeout.
func TestTimeout(t *testing.T) {
	for _, b := range backends(t) {
		h := newHost(t, b)
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		start := time.Now()
		res, _, err := runGuest(ctx, t, h, monitor.Config{ELF: readGuest(t, "spin")})
		cancel()
		se, ok := as[*monitor.StoppedError](err)
		require.True(t, ok, "%s: want a StoppedError, got %v", b, err)
		assert.ErrorIs(t, se, context.DeadlineExceeded)
		assert.Equal(t, monitor.ExitTimeout, monitor.ExitCode(res.Status, err))
		// A hang check, not a latency measurement: 1.5 s leaves room for a
		// busy 2-core host, yet catches a deadline that is not enforced.
		assert.Less(t, time.Since(start), 1500*time.Millisecond, b)
	}
}

// TestCancel stops a spinning guest when its context is cancelled.
func TestCancel(t *testing.T) {
	for _, b := range backends(t) {
		h := newHost(t, b)
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(50*time.Millisecond, cancel)
		start := time.Now()
		res, _, err := runGuest(ctx, t, h, monitor.Config{ELF: readGuest(t, "spin")})
		_, ok := as[*monitor.StoppedError](err)
		assert.True(t, ok, "%s: want a StoppedError, got %v", b, err)
		assert.ErrorIs(t, err, context.Canceled, b)
		assert.Equal(t, monitor.ExitTimeout, monitor.ExitCode(res.Status, err), b)
		assert.Less(t, time.Since(start), 1500*time.Millisecond, b)
	}
}

// TestConsoleFlood ends a guest that floods the console at the limit,
// delivering exactly the output up to it.
func TestConsoleFlood(t *testing.T) {
	const limit = 64 << 10
	for _, b := range backends(t) {
		h := newHost(t, b)
		res, out, err := runGuest(context.Background(), t, h, monitor.Config{ELF: readGuest(t, "flood"), ConsoleLimit: limit})
		pe, ok := as[*monitor.ProtocolError](err)
		require.True(t, ok, "%s: %v", b, err)
		assert.Contains(t, pe.Error(), "console output limit")
		assert.Len(t, out, limit)
		assert.EqualValues(t, limit, res.Stats.ConsoleBytes)
	}
}

// TestArguments passes a command line through and checks the guest's view.
func TestStats(t *testing.T) {
	for _, b := range backends(t) {
		h := newHost(t, b)
		res, _, err := runGuest(context.Background(), t, h, monitor.Config{ELF: readGuest(t, "hello")})
		require.NoError(t, err)
		s := res.Stats
		assert.GreaterOrEqual(t, s.ExitCounts()["hypercall"], uint64(2), "console write and exit")
		assert.EqualValues(t, 1, s.HypercallCounts()["exit"])
		assert.Positive(t, s.FirstHypercall)
		assert.Positive(t, s.GuestTime)
		assert.GreaterOrEqual(t, s.Total, s.FirstHypercall)
		assert.Positive(t, s.ConsoleBytes)
	}
}

// TestStatsPhases checks that a run times the phases of its start that its
// backend has, and that Setup covers those timed inside it.
func TestStatsPhases(t *testing.T) {
	for _, b := range backends(t) {
		h := newHost(t, b)
		ready := false
		res, _, err := runGuest(context.Background(), t, h, monitor.Config{ELF: readGuest(t, "hello"),
			Ready: func() error { ready = true; return nil }})
		require.NoError(t, err)
		require.True(t, ready)
		s, p := res.Stats, res.Stats.Phases
		for name, d := range map[string]time.Duration{"Load": p.Load, "VM": p.VM, "Clock": p.Clock, "Ready": p.Ready, "FirstExit": p.FirstExit} {
			assert.Positive(t, d, "%s: %s", b, name)
		}
		if b == monitor.BackendKVM {
			assert.Positive(t, p.Tables, "Tables")
			assert.Positive(t, p.VCPU, "VCPU")
			assert.Positive(t, p.State, "State")
		} else {
			assert.Zero(t, p.Tables+p.VCPU+p.State, "%s has no page tables or vCPU state of its own", b)
		}
		assert.GreaterOrEqual(t, s.Setup, p.Tables+p.VM+p.VCPU+p.State, b)
		if b == monitor.BackendProcess {
			assert.LessOrEqual(t, p.Clock, p.VM, "the clock is written while the process starts")
		}
		assert.LessOrEqual(t, p.FirstExit, s.GuestTime, b)
	}
}

// TestMisbehavingNeighbours runs hostile guests concurrently with good ones
// in one process: every good guest still succeeds.
func TestMisbehavingNeighbours(t *testing.T) {
	for _, b := range backends(t) {
		h := newHost(t, b)
		// Each hostile guest ends the way it does alone: a monitor failure
		// (ExitMonitor) under load would be a bug, not a guest's fault.
		hostile := []string{"nullderef", "wildptr", "invalidop", "divzero", "writecode", "badport", "abort"}
		want := map[string]int{
			"nullderef": monitor.ExitCrashed, "wildptr": monitor.ExitProtocol, "invalidop": monitor.ExitCrashed,
			"divzero": monitor.ExitCrashed, "writecode": monitor.ExitCrashed, "badport": monitor.ExitProtocol,
			"abort": monitor.ExitAborted,
		}
		errs := make(chan error, 64)
		for i := range 32 {
			name := "hello"
			if i%2 == 1 {
				name = hostile[i/2%len(hostile)]
			}
			go func() {
				res, out, err := runGuest(context.Background(), t, h, monitor.Config{ELF: readGuest(t, name)})
				switch {
				case name == "hello" && (err != nil || res.Status != 0 || !strings.Contains(out, "hello")):
					errs <- fmt.Errorf("hello beside hostile guests: status %d, %v, %q", res.Status, err, out)
				case name != "hello" && monitor.ExitCode(res.Status, err) != want[name]:
					errs <- fmt.Errorf("%s: exit code %d, want %d: %v", name, monitor.ExitCode(res.Status, err), want[name], err)
				default:
					errs <- nil
				}
			}()
		}
		for range 32 {
			assert.NoError(t, <-errs, b)
		}
	}
}
