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
	assert.Contains(t, crash(vcpu.Exit{Kind: vcpu.ExitSyscall, Reason: 39}).Error(), "system call 39")
	assert.Equal(t, "guest crashed: guest attempted a host system call (one the monitor's seccomp filter forbids, which stopped it)",
		crash(vcpu.Exit{Kind: vcpu.ExitSyscall, Reason: vcpu.SyscallUnknown}).Error())
}
