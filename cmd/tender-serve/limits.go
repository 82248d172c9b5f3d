package main

import (
	"golang.org/x/sys/unix"

	"github.com/tendervm/tender/gateway"
	"github.com/tendervm/tender/internal/cli"
)

// File descriptors kept for the monitor when the connection limit is derived
// from RLIMIT_NOFILE: a base for the process itself (standard streams, the
// poller, the listener, /dev/kvm, the console file, transient opens) and an
// allowance per instance (measured: two on KVM, a VM and a vCPU; three on the
// process backend, a guest process's seccomp listener, pidfd and memory file).
const (
	fdsBase        = 32
	fdsPerInstance = 4
)

// connLimit returns the connection limit: flag when set (negative: none, 0
// returned), else the open-file soft limit less what the monitor and the
// gateway's reserve connections need. Go raises the soft limit to the hard
// one at start, so this is the most the process can have.
func connLimit(flag, maxInstances int) (int, error) {
	if flag != 0 {
		return max(flag, 0), nil
	}
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		return 0, err
	}
	if rl.Cur == unix.RLIM_INFINITY || rl.Cur > 1<<30 {
		rl.Cur = 1 << 30
	}
	kept := fdsBase + fdsPerInstance*maxInstances + gateway.DefaultReserveConns
	n := int(rl.Cur) - kept
	if n < 1 {
		return 0, cli.Usagef("the open-file limit (%d) leaves no descriptors for connections: %d are kept for -max-instances %d and the monitor; raise `ulimit -n` or set -max-conns", rl.Cur, kept, maxInstances)
	}
	return n, nil
}
