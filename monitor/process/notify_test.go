package process

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/tendervm/tender/monitor/vcpu"
)

// TestStopContinue: a guest stopped and continued while the monitor holds
// its hypercall (SIGSTOP, a cgroup freeze, a tracer) has the notification
// withdrawn and makes the call again; the call is served once, and the guest
// goes on to its next hypercall rather than reporting the same one twice.
func TestStopContinue(t *testing.T) {
	for _, poll := range []bool{false, true} {
		t.Run(map[bool]string{false: "receive", true: "pollfirst"}[poll], func(t *testing.T) {
			old := pollFirst
			pollFirst = poll
			defer func() { pollFirst = old }()
			_, v := start(t, []byte{
				0x66, 0xba, 0x02, 0x05, // +0x00 mov $0x502, %dx
				0xb8, 0x00, 0x10, 0x10, 0x00, // +0x04 mov $0x101000, %eax
				0xef,                   // +0x09 out %eax, %dx
				0x66, 0xba, 0x03, 0x05, // +0x0a mov $0x503, %dx
				0xef,       // +0x0e out %eax, %dx
				0x0f, 0x0b, // +0x0f ud2
			})
			exit := run(t, v)
			require.Equal(t, vcpu.Exit{Kind: vcpu.ExitHypercall, Nr: 2, Arg: 0x101000, RIP: codeAddr + 0x09}, exit)

			require.NoError(t, unix.Kill(v.pid, unix.SIGSTOP))
			waitState(t, v.pid, "T")
			require.NoError(t, unix.Kill(v.pid, unix.SIGCONT))

			exit = run(t, v)
			assert.Equal(t, vcpu.Exit{Kind: vcpu.ExitHypercall, Nr: 3, Arg: 0x101000, RIP: codeAddr + 0x0e}, exit,
				"the continued guest goes on to its next hypercall")
			exit = run(t, v)
			assert.Equal(t, vcpu.ExitFault, exit.Kind)
			assert.EqualValues(t, codeAddr+0x0f, exit.RIP)
		})
	}
}

// waitState waits until process pid is in state (a letter of
// /proc/PID/stat), failing after 10 s.
func waitState(t *testing.T, pid int, state string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		require.NoError(t, err)
		// pid (comm) state ...: comm may hold spaces, state follows the last ')'.
		if f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:])); len(f) > 0 && f[0] == state {
			return
		}
	}
	t.Fatalf("process %d never reached state %s", pid, state)
}

// TestVsyscall: a call into the vsyscall page, which the kernel emulates as
// a system call where the page exists, is reported at that address; without
// the page it is a page fault there.
func TestVsyscall(t *testing.T) {
	_, v := start(t, []byte{
		0x48, 0xc7, 0xc0, 0x00, 0x00, 0x60, 0xff, // +0x00 mov $0xffffffffff600000, %rax (gettimeofday)
		0xff, 0xd0, // +0x07 call *%rax
	})
	exit := run(t, v)
	t.Logf("%+v", exit)
	switch exit.Kind {
	case vcpu.ExitSyscall:
		assert.Equal(t, vcpu.Exit{Kind: vcpu.ExitSyscall, Reason: unix.SYS_GETTIMEOFDAY, RIP: vsyscallPage}, exit)
	default:
		assert.Equal(t, vcpu.ExitFault, exit.Kind)
		assert.Equal(t, uint64(vsyscallPage), exit.RIP)
	}
}
