package tests

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tendervm/tender/monitor"
	"github.com/tendervm/tender/monitor/vcpu"
)

// Guests that attack the process backend's stub, which shares the guest
// process: its page is readable and executable there, its signal stack
// writable, and rt_sigreturn from its restorer passes the guest's filter.

// TestFreshRegisterLeak: fn_regleak tries every way it has to hand a fresh
// request's registers to the next one: a forged exception report, an
// RFLAGS bit rt_sigreturn does not restore (ID), the ES selector, and a
// signal stack of its own; and a forged report with the trap flag set,
// which makes the next reset single-step in the stub and fail there: that
// next call goes to another instance (errLostInReset) instead of failing.
// Every reply must be the first one, the state of the snapshot. On the
// process backend each of them used to get through: the reset completed
// the snapshot's hypercall through the guest's own RBX
// and RSP, so a forged report kept every register, and ID, ES and the
// signal stack outlived any reset. Under KVM the stub does not exist: a
// forged report or rt_sigreturn faults (#PF) and fails its request.
func TestFreshRegisterLeak(t *testing.T) {
	forFresh(t, func(t *testing.T, h *monitor.Host) {
		kvm := h.Backend() == monitor.BackendKVM
		p := newPool(t, h, "fn_regleak", monitor.PoolConfig{Mode: monitor.Fresh, MaxInstances: 1})
		first, err := invoke(t, p, "plain:FIRST___")
		require.NoError(t, err)
		require.Regexp(t, `^r15=SNAPSHOT id=0 es=0x?[0-9a-f]* alt=0$`, first)
		actions := []string{"forge", "id", "alt", "forge", "es", "plain", "alt", "tf", "id", "forge", "tf"}
		for i, a := range actions {
			if kvm && a == "es" {
				// kvm_pvm may keep a selector the guest loaded where the
				// monitor cannot reset it; tender_fn_serve loads them
				// back (docs/abi.md).
				continue
			}
			body := a + ":" + strings.Repeat(string(rune('A'+i)), 8)
			out, err := invoke(t, p, body)
			if kvm && (a == "forge" || a == "alt" || a == "tf") {
				fe, ok := as[*monitor.FaultError](err)
				require.True(t, ok, "%s: want a #PF, got %v", body, err)
				assert.EqualValues(t, 14, fe.Vector, "%s: %v", body, err)
				continue
			}
			require.NoError(t, err, body)
			assert.Equal(t, first, out, "%s: the state its request started in", body)
			out, err = invoke(t, p, "plain:NEXT____")
			require.NoError(t, err)
			assert.Equal(t, first, out, "after %s", body)
		}

		// Under warm each request does see what the previous one left:
		// the test can fail.
		w := newPool(t, h, "fn_regleak", monitor.PoolConfig{Mode: monitor.Warm, MaxInstances: 1})
		steps := []struct{ body, next string }{{"id:IDIDIDID", "r15=IDIDIDID id=1 "}}
		if !kvm {
			steps = append(steps,
				struct{ body, next string }{"alt:ALTALTAL", "r15=ALTALTAL id=1 "},
				struct{ body, next string }{"forge:FORGEFOR", "r15=FORGEFOR id=1 "})
		}
		_, err = invoke(t, w, "plain:FIRST___")
		require.NoError(t, err)
		for _, s := range steps {
			_, err := invoke(t, w, s.body)
			require.NoError(t, err, s.body)
			out, err := invoke(t, w, "plain:NEXT____")
			require.NoError(t, err)
			assert.True(t, strings.HasPrefix(out, s.next), "after %s under warm: %q", s.body, out)
			if s.body == "alt:ALTALTAL" {
				assert.True(t, strings.HasSuffix(out, " alt=1"), "after %s under warm: %q", s.body, out)
			}
		}
	})
}

// coreFiles reports whether core_pattern names a file in the crashing
// process's working directory, where a test can look for one.
func coreFiles(t *testing.T) bool {
	b, err := os.ReadFile("/proc/sys/kernel/core_pattern")
	require.NoError(t, err)
	pattern := strings.TrimSpace(string(b))
	if pattern == "" || strings.ContainsAny(pattern[:1], "|@") || strings.Contains(pattern, "/") {
		t.Logf("core_pattern %q writes no file in the working directory: no core file to look for", pattern)
		return false
	}
	return true
}

// TestSignalStackCrash: sigstack faults with its exception delivery
// wrecked. With RSP on the process backend's signal stack, near its
// bottom, its ud2 is #UD as under KVM (the kernel used to fail to write
// the signal frame, and kill the process with SIGSEGV). With SIGILL
// blocked, or its signal stack moved to unmapped memory, through a forged
// rt_sigreturn, the kernel kills the process with SIGILL or SIGSEGV: a
// crash (a fault while delivering a fault; it was "unexpected exit
// unknown"). In no case does the guest process dump core, though tender
// runs with RLIMIT_CORE as high as it goes in a directory it can write (it
// wrote the guest's memory there, 66 MB); under KVM the rt_sigreturn is a
// #PF.
func TestSignalStackCrash(t *testing.T) {
	look := coreFiles(t)
	for _, be := range backends(t) {
		for _, c := range []struct {
			arg       string
			line      string
			process   string
			kvm       string
			crashKind vcpu.ExitKind
		}{
			{"", "sigstack: RSP into the signal stack, then ud2\n",
				"tender: guest fault: #UD invalid opcode at rip 0x", "tender: guest fault: #UD invalid opcode at rip 0x", 0},
			{"mask", "sigstack: SIGILL and SIGSEGV blocked, then ud2\n",
				"tender: guest crashed: triple fault (a fault while delivering a fault: the guest process died of SIGILL)", "tender: guest fault: #PF page fault at rip 0x7e0000000170", vcpu.ExitTripleFault},
			{"altstack", "sigstack: the signal stack moved to unmapped memory, then ud2\n",
				"tender: guest crashed: triple fault (a fault while delivering a fault: the guest process died of SIG", "tender: guest fault: #PF page fault at rip 0x7e0000000170", vcpu.ExitTripleFault},
		} {
			t.Run(string(be)+"/"+c.arg, func(t *testing.T) {
				dir := t.TempDir()
				args := []string{"run", "-backend=" + string(be), guestPath("sigstack")}
				if c.arg != "" {
					args = append(args, c.arg)
				}
				// The shell raises the soft limit to the hard one for
				// tender.
				cmd := exec.Command("sh", append([]string{"-c", `ulimit -S -c "$(ulimit -H -c)" && exec "$@"`, "sh",
					filepath.Join(root, "bin", "tender")}, args...)...)
				cmd.Dir = dir
				var stdout, stderr strings.Builder
				cmd.Stdout, cmd.Stderr = &stdout, &stderr
				err := cmd.Run()
				assert.Equal(t, monitor.ExitCrashed, exitStatus(err), "stderr: %s", stderr.String())
				assert.Equal(t, c.line, stdout.String())
				want := c.process
				if be == monitor.BackendKVM {
					want = c.kvm
				}
				assert.True(t, strings.HasPrefix(stderr.String(), want), "stderr: %q, want %q", stderr.String(), want)
				if look {
					ents, err := os.ReadDir(dir)
					require.NoError(t, err)
					for _, e := range ents {
						t.Errorf("%s in tender's working directory", e.Name())
					}
				}

				// Through the library: the same outcome, typed.
				h := newHost(t, be)
				cfg := monitor.Config{ELF: readGuest(t, "sigstack"), Name: "sigstack"}
				if c.arg != "" {
					cfg.Args = []string{c.arg}
				}
				_, out, err := runGuest(context.Background(), t, h, cfg)
				assert.Equal(t, c.line, out)
				if be == monitor.BackendProcess && c.crashKind != 0 {
					ce, ok := as[*monitor.CrashError](err)
					require.True(t, ok, "want a CrashError, got %v", err)
					assert.Equal(t, c.crashKind, ce.Kind)
					return
				}
				fe, ok := as[*monitor.FaultError](err)
				require.True(t, ok, "want a FaultError, got %v", err)
				if c.arg == "" {
					assert.EqualValues(t, 6, fe.Vector)
				} else {
					assert.EqualValues(t, 14, fe.Vector)
				}
			})
		}
	}
}
