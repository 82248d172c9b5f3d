package monitor

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/tendervm/tender/monitor/vcpu"
)

func TestExitCode(t *testing.T) {
	cases := []struct {
		err  error
		want int
	}{
		{nil, 7},
		{&AbortError{Message: "x"}, ExitAborted},
		{&FaultError{Vector: 14}, ExitCrashed},
		{&CrashError{Kind: vcpu.ExitTripleFault}, ExitCrashed},
		{&ProtocolError{Reason: "x"}, ExitProtocol},
		{&StoppedError{Cause: context.DeadlineExceeded}, ExitTimeout},
		{fmt.Errorf("wrapped: %w", &StoppedError{Cause: context.Canceled}), ExitTimeout},
		{errors.New("no KVM"), ExitMonitor},
	}
	for _, c := range cases {
		assert.Equal(t, c.want, ExitCode(7, c.err), "%v", c.err)
	}
}

func TestErrorMessages(t *testing.T) {
	assert.Equal(t, "guest fault: #PF page fault at rip 0x100010, address 0x0 (read of an unmapped page)",
		(&FaultError{Vector: 14, HasErrorCode: true, ErrorCode: 4, RIP: 0x100010}).Error())
	assert.Equal(t, "guest fault: #PF page fault at rip 0x100010, address 0x100000 (write denied by page permissions)",
		(&FaultError{Vector: 14, HasErrorCode: true, ErrorCode: 7, RIP: 0x100010, CR2: 0x100000}).Error())
	assert.Equal(t, "guest fault: #GP general protection at rip 0x1, error code 0x28",
		(&FaultError{Vector: 13, HasErrorCode: true, ErrorCode: 0x28, RIP: 1}).Error())
	assert.Equal(t, "guest fault: vector 31 at rip 0x1", (&FaultError{Vector: 31, RIP: 1}).Error())
	assert.Equal(t, "guest stopped: timeout", (&StoppedError{Cause: context.DeadlineExceeded}).Error())
	assert.Contains(t, crash(vcpu.Exit{Kind: vcpu.ExitInternal, Reason: 1}).Error(), "emulator")
	assert.Contains(t, crash(vcpu.Exit{Kind: vcpu.ExitMMIO, Addr: 0xfee00000, Write: true}).Error(), "write to guest-physical 0xfee00000")
	assert.Contains(t, crash(vcpu.Exit{Kind: vcpu.ExitBadIO, Port: 0x80, Size: 1, Out: true}).Error(), "1-byte out on port 0x80")
	assert.Contains(t, crash(vcpu.Exit{Kind: vcpu.ExitBadIO, Port: 0x503, Size: 4, Out: true, Str: true}).Error(), "4-byte outs on port 0x503 is not a hypercall")
	assert.Contains(t, crash(vcpu.Exit{Kind: vcpu.ExitBadIO, Port: 0x503, Size: 2, Str: true}).Error(), "2-byte ins on port 0x503")
	var pe *ProtocolError
	assert.ErrorAs(t, crash(vcpu.Exit{Kind: vcpu.ExitBadIO, Port: 0x503, Size: 4, Out: true, Str: true}), &pe)
	assert.Contains(t, crash(vcpu.Exit{Kind: vcpu.ExitSyscall, Reason: 39, RIP: 0x100035}).Error(), "system call 39 at rip 0x100035")
	assert.Equal(t, "guest crashed: guest attempted a host system call (one the monitor's seccomp filter forbids, which stopped it)",
		crash(vcpu.Exit{Kind: vcpu.ExitSyscall, Reason: vcpu.SyscallUnknown}).Error())
}

// TestEscapeGuestText: a guest's text never reaches a terminal or a log line
// raw, and plain text stays readable.
func TestEscapeGuestText(t *testing.T) {
	for in, want := range map[string]string{
		"deliberate abort from guest": "deliberate abort from guest",
		`say "hi" — ünïcode`:          `say "hi" — ünïcode`,
		"red\x1b[31m alert\x07":       `red\x1b[31m alert\a`,
		"two\nlines\r\n":              `two\nlines\r\n`,
		`back\slash`:                  `back\\slash`,
		"bad \xff utf8":               `bad \xff utf8`,
		`{"level":"info"}` + "\n":     `{"level":"info"}\n`,
	} {
		assert.Equal(t, want, EscapeGuestText(in), "%q", in)
	}
	msg := (&AbortError{Message: "boom\x1b]0;pwned\x07\nfake log line"}).Error()
	assert.Equal(t, `guest aborted: boom\x1b]0;pwned\a\nfake log line`, msg)
}
