package process

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/tendervm/tender/monitor/vcpu"
)

// seccompNotif is struct seccomp_notif: one system call of the guest process
// waiting for the monitor's answer.
type seccompNotif struct {
	ID    uint64
	Pid   uint32
	Flags uint32
	// struct seccomp_data
	Nr   int32
	Arch uint32
	IP   uint64
	Args [6]uint64
}

// seccompResp is struct seccomp_notif_resp.
type seccompResp struct {
	ID    uint64
	Val   int64
	Error int32
	Flags uint32
}

// Run resumes the guest and returns at its next exit. After ExitHypercall the
// guest continues after the out instruction. A non-nil error is a host
// failure, or a Run after the guest ended (ExitSyscall, ExitUnknown) or after
// Close. Run may be called from any goroutine, one call at a time.
func (v *VCPU) Run() (vcpu.Exit, error) {
	if v.kicked.Load() {
		return vcpu.Exit{Kind: vcpu.ExitKicked}, nil
	}
	if v.ended != nil {
		return vcpu.Exit{}, v.ended
	}
	for {
		if v.pending {
			switch err := v.answer(v.skip); err {
			case nil:
				if v.skip&answerReset == answerReset {
					v.resetting = true
					v.sealed = v.sealed || v.skip&answerSeal != 0
				}
			case unix.ENOENT:
				// Withdrawn: the process died (the next receive says
				// so), or a stop signal, a freeze or a tracer broke its
				// wait, and it makes the same call again once it goes on.
				v.withdrawn, v.withdrawnSkip, v.hasWithdrawn = v.notif, v.skip, true
			default:
				v.ended = fmt.Errorf("process: answer the guest process: %w", err)
				return vcpu.Exit{}, v.ended
			}
			v.pending, v.skip = false, 0
		}
		if err := v.receive(); err != nil {
			if err != unix.ENOENT {
				v.ended = fmt.Errorf("process: receive from the guest process: %w", err)
				return vcpu.Exit{}, v.ended
			}
			dead, err := v.dead()
			if err != nil {
				v.ended = err
				return vcpu.Exit{}, err
			}
			if !dead {
				continue // a notification withdrawn by a stop signal
			}
			ws, err := v.wait()
			if err != nil {
				v.ended = err
				return vcpu.Exit{}, err
			}
			x := v.died(ws)
			x.InReset = v.resetting && x.Kind != vcpu.ExitKicked
			return x, nil
		}
		v.pending = true
		if v.hasWithdrawn {
			v.hasWithdrawn = false
			if v.notif.sameCall(&v.withdrawn) {
				// The call already served, made again: it gets the
				// answer it missed, and is not served twice (a warm
				// instance would otherwise take the previous reply as
				// the answer to a request it never saw).
				v.skip = v.withdrawnSkip
				continue
			}
		}
		if exit, ok := v.decode(); ok {
			if v.resetting {
				// The handler's reset ends in the guest's code, which
				// the next hypercall shows it reached; a fault in the
				// stub before that is the reset's (a guest that faults
				// there itself after the reset looks the same).
				exit.InReset = exit.Kind == vcpu.ExitFault && exit.RIP >= stubBase && exit.RIP < stubBase+pageSize
				v.resetting = exit.Kind != vcpu.ExitHypercall
			}
			return exit, nil
		}
	}
}

// sameCall says whether n is the call w again: the same system call from
// the same place with the same arguments (its ID differs).
func (n *seccompNotif) sameCall(w *seccompNotif) bool {
	return n.Pid == w.Pid && n.Nr == w.Nr && n.Arch == w.Arch && n.IP == w.IP && n.Args == w.Args
}

// receive waits for the guest process's next notification, or ENOENT when
// the process has ended. It makes system calls the Go scheduler knows
// about: they block for as long as the guest runs.
func (v *VCPU) receive() error {
	if !v.recvWakes {
		// Before Linux 6.11 a receive sleeps on through the death of
		// the process until it is reaped: wait for either first.
		dead, err := v.dead()
		if err != nil {
			return err
		}
		if dead {
			return unix.ENOENT
		}
	}
	v.notif = seccompNotif{} // the kernel insists on a zeroed buffer
	for {
		_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(v.listener), unix.SECCOMP_IOCTL_NOTIF_RECV,
			uintptr(unsafe.Pointer(&v.notif)))
		if e != unix.EINTR {
			return errnoErr(e)
		}
	}
}

// answer completes the current notification with val, which the handler
// adds to the guest's RIP. It never blocks, so it is a raw system call.
func (v *VCPU) answer(val uint64) error {
	v.resp = seccompResp{ID: v.notif.ID, Val: int64(val)}
	_, _, e := unix.RawSyscall(unix.SYS_IOCTL, uintptr(v.listener), unix.SECCOMP_IOCTL_NOTIF_SEND,
		uintptr(unsafe.Pointer(&v.resp)))
	return errnoErr(e)
}

// dead waits until the guest process has ended (true) or a notification is
// ready (false). A process that ends makes its pidfd readable (and orphans
// the listener); a notification makes the listener readable, also that of a
// process that was stopped and continued, which restarts its system call.
func (v *VCPU) dead() (bool, error) {
	fds := []unix.PollFd{{Fd: int32(v.pidfd), Events: unix.POLLIN}, {Fd: int32(v.listener), Events: unix.POLLIN}}
	for {
		_, err := unix.Poll(fds, -1)
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			return false, fmt.Errorf("process: poll the guest process: %w", err)
		}
		return fds[0].Revents != 0 || fds[1].Revents&(unix.POLLHUP|unix.POLLERR) != 0, nil
	}
}

// died records the guest process's death, described by ws, and returns the exit to
// report for it.
func (v *VCPU) died(ws unix.WaitStatus) vcpu.Exit {
	v.ended = fmt.Errorf("process: the guest process has ended: %s", describe(ws))
	if v.kicked.Load() && ws.Signaled() && ws.Signal() == unix.SIGKILL {
		return vcpu.Exit{Kind: vcpu.ExitKicked}
	}
	if !ws.Signaled() {
		return vcpu.Exit{Kind: vcpu.ExitUnknown, Reason: uint64(ws)}
	}
	switch sig := ws.Signal(); sig {
	case unix.SIGSYS:
		// Only a seccomp filter raises SIGSYS in the guest (one sent by
		// another process stays blocked): that of a confined monitor,
		// which the process inherited, stopped a system call the monitor
		// may not make either. The kernel tells no number.
		return vcpu.Exit{Kind: vcpu.ExitSyscall, Reason: vcpu.SyscallUnknown}
	case unix.SIGSEGV, unix.SIGBUS, unix.SIGILL, unix.SIGFPE, unix.SIGTRAP:
		// The kernel raises these for the guest's own instructions and
		// kills the process with one only when the handler cannot take
		// it: the signal was blocked, or its frame could not be written
		// to the signal stack (SIGSEGV), which a guest brings about by
		// changing its signal mask or stack through rt_sigreturn (or by
		// faulting in the handler through a forged report). A fault while
		// delivering a fault: on KVM, a triple fault. Another process's
		// signal of these kinds never kills it (the handler discards
		// them).
		v.ended = fmt.Errorf("process: the guest process has ended: %s, a fault the stub's handler could not take (the guest blocked the signal or moved its signal stack)", describe(ws))
		return vcpu.Exit{Kind: vcpu.ExitTripleFault, Reason: uint64(sig)}
	}
	return vcpu.Exit{Kind: vcpu.ExitUnknown, Reason: uint64(ws)}
}

// wait waits for the next stop or the death of the guest process.
func (v *VCPU) wait() (unix.WaitStatus, error) {
	for {
		var ws unix.WaitStatus
		_, err := unix.Wait4(v.pid, &ws, unix.WALL, nil)
		switch err {
		case nil:
			if ws.Exited() || ws.Signaled() {
				v.reaped = true
			}
			return ws, nil
		case unix.EINTR:
			continue
		case unix.ECHILD:
			v.reaped = true
		}
		return 0, fmt.Errorf("process: wait4: %w", err)
	}
}

func errnoErr(e unix.Errno) error {
	if e != 0 {
		return e
	}
	return nil
}

// describe formats a wait status.
func describe(ws unix.WaitStatus) string {
	switch {
	case ws.Exited():
		return fmt.Sprintf("exit status %d", ws.ExitStatus())
	case ws.Signaled():
		return fmt.Sprintf("killed by %v", ws.Signal())
	case ws.Stopped():
		return fmt.Sprintf("stopped by %v", ws.StopSignal())
	}
	return fmt.Sprintf("wait status %#x", uint32(ws))
}
