package process

import (
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/tendervm/tender/monitor/guestmem"
	"github.com/tendervm/tender/monitor/vcpu"
)

// Spawner starts guest processes. Linux ties a tracee to the thread that
// traces it, and the parent-death signal (which kills a guest whose monitor
// dies) to the thread that forked it, not to the process. A Go thread ends
// when a goroutine locked to it exits, which any code in the process may
// do; so guests are started and set up on a thread that the Spawner keeps
// locked until Close. Starts are serialized on that thread; once set up, a
// guest is served from any goroutine.
type Spawner struct {
	mu     sync.Mutex // held while a request is sent: orders starts against Close
	closed bool
	reqs   chan spawnReq
	done   chan struct{}
	stub   int // the stub executable's memfd, closed when the thread ends

	liveMu sync.Mutex
	live   map[*VCPU]struct{} // guests started and not yet closed

	// fsgsbase: the kernel lets processes use wrfsbase, with which the
	// handler sets a Solo5 guest's FS base (priv.go).
	fsgsbase bool
	// swap: the host had swap space when the spawner started, so fresh
	// guests protect all of their memory (track.go). Read once, before the
	// monitor may confine itself.
	swap bool
	// exitWakes: a receive returns when the guest process dies
	// (exitReleasesFilter).
	exitWakes bool
}

type spawnReq struct {
	mem   *guestmem.Memory
	boot  vcpu.Boot
	opts  options
	reply chan spawned
}

type spawned struct {
	v   *VCPU
	err error
}

// NewSpawner starts a spawner's thread.
func NewSpawner() (*Spawner, error) {
	stub, err := stubFile()
	if err != nil {
		return nil, err
	}
	s := &Spawner{live: map[*VCPU]struct{}{}, reqs: make(chan spawnReq), done: make(chan struct{}), stub: stub, fsgsbase: hasFSGSBase(), swap: swapOn(), exitWakes: exitReleasesFilter()}
	go s.loop()
	return s, nil
}

// loop serves start requests on a thread it never unlocks: the thread exits
// with it.
func (s *Spawner) loop() {
	runtime.LockOSThread()
	defer close(s.done)
	defer unix.Close(s.stub)
	for r := range s.reqs {
		r.opts.trackAll = r.opts.trackAll || s.swap
		r.opts.pollFirst = r.opts.pollFirst || !s.exitWakes
		v, err := spawn(s.stub, r.mem, r.boot, r.opts)
		if err == nil {
			v.spawner = s
			s.liveMu.Lock()
			s.live[v] = struct{}{}
			s.liveMu.Unlock()
		}
		r.reply <- spawned{v, err}
	}
	// The thread's exit kills every guest it started (PR_SET_PDEATHSIG):
	// they are kicked first, so that a Run under way reports ExitKicked,
	// not a death.
	s.liveMu.Lock()
	for v := range s.live {
		v.Kick()
	}
	s.liveMu.Unlock()
}

// options are how a guest process is started.
type options struct {
	// pollFirst polls for the guest process's death before each receive,
	// as on kernels before 6.11 (exitReleasesFilter), and for tests of
	// that path.
	pollFirst bool
	// track sets up write tracking for Fresh instances (track.go);
	// trackAll write-protects all of guest memory, as where swap is on.
	track, trackAll bool
}

// start is New; pollFirst serves the guest as on kernels before 6.11, for
// tests of that path.
func (s *Spawner) start(mem *guestmem.Memory, boot vcpu.Boot, pollFirst bool) (*VCPU, error) {
	return s.startWith(mem, boot, options{pollFirst: pollFirst})
}

// startWith starts a guest process with opts.
func (s *Spawner) startWith(mem *guestmem.Memory, boot vcpu.Boot, opts options) (*VCPU, error) {
	if mem == nil || mem.FD() < 0 {
		return nil, errors.New("process: guest memory must come from guestmem.NewShared")
	}
	if err := checkRegions(mem.Size(), boot.Regions); err != nil {
		return nil, err
	}
	reply := make(chan spawned, 1)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, errors.New("process: spawner closed")
	}
	// Sent under mu so that Close cannot close reqs meanwhile; the loop
	// takes requests as fast as it serves them.
	s.reqs <- spawnReq{mem, boot, opts, reply}
	s.mu.Unlock()
	r := <-reply
	return r.v, r.err
}

// Close ends the spawner's thread and kicks every guest it started that is
// not closed yet: their Run returns ExitKicked. Close them as usual.
func (s *Spawner) Close() error {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.reqs)
	}
	s.mu.Unlock()
	<-s.done
	return nil
}

// forget drops a closed guest.
func (s *Spawner) forget(v *VCPU) {
	s.liveMu.Lock()
	delete(s.live, v)
	s.liveMu.Unlock()
}

// spawn starts the guest process and sets it up, on the spawner's thread.
func spawn(stub int, mem *guestmem.Memory, boot vcpu.Boot, opts options) (*VCPU, error) {
	v := &VCPU{mem: mem, regions: slices.Clone(boot.Regions), pidfd: -1, listener: -1, emulate: boot.EmulatePriv}
	const closed = ^uintptr(0) // -1: the child closes this descriptor
	attr := &syscall.ProcAttr{
		Env:   []string{},
		Files: []uintptr{closed, closed, closed, uintptr(mem.FD()), uintptr(stub)},
		Sys: &syscall.SysProcAttr{
			Ptrace:    true,
			Pdeathsig: syscall.SIGKILL,
			Setpgid:   true, // keep terminal signals (^C) away from the guest
			PidFD:     &v.pidfd,
		},
	}
	pid, err := syscall.ForkExec(fmt.Sprintf("/proc/self/fd/%d", stubFD), []string{"tender-guest"}, attr)
	if err != nil {
		return nil, fmt.Errorf("process: start the guest process: %w", err)
	}
	v.pid = pid
	err = noCoreDumps(pid) // stopped after execve: nothing of the guest has run
	if err == nil {
		err = v.setup(boot, opts)
	}
	if err != nil {
		v.Close()
		return nil, err
	}
	return v, nil
}

// noCoreDumps sets the guest process's RLIMIT_CORE to 1 byte, soft and
// hard, while it is stopped after execve.
//
// A guest process can die of a signal whose default action dumps core: a
// fault the stub's handler cannot take (a guest can move its signal stack
// or block the fault signals through rt_sigreturn, which its filter lets
// through from the stub's restorer), or SIGSYS from an inherited filter of
// a confined monitor. Its core would hold guest memory (the shared memfd
// is dumped) and registers, written to the monitor's working directory or
// handed to the core_pattern helper. A limit of 1 stops both: a core file
// needs at least a page, and the kernel runs no pipe helper for a process
// whose limit is exactly 1 (the value it gives its own helpers, against
// recursion). PR_SET_DUMPABLE would stop any dump but also the monitor's
// access to the guest process (process_vm_readv and _writev, its /proc
// files) without CAP_SYS_PTRACE. The monitor's own limit is left alone: it
// is its embedder's.
func noCoreDumps(pid int) error {
	lim := unix.Rlimit{Cur: 1, Max: 1}
	if err := unix.Prlimit(pid, unix.RLIMIT_CORE, &lim, nil); err != nil {
		return fmt.Errorf("process: set the guest process's RLIMIT_CORE: %w", err)
	}
	return nil
}

// stubFile returns a close-on-exec memfd holding the stub executable.
func stubFile() (int, error) {
	fd, err := unix.MemfdCreate("tender-process-stub", unix.MFD_CLOEXEC|unix.MFD_EXEC)
	if err == unix.EINVAL { // before Linux 6.3, which introduced MFD_EXEC
		fd, err = unix.MemfdCreate("tender-process-stub", unix.MFD_CLOEXEC)
	}
	if err != nil {
		return -1, fmt.Errorf("process: memfd_create: %w", err)
	}
	img := stubELF()
	if n, err := unix.Write(fd, img); err != nil || n != len(img) {
		unix.Close(fd)
		if err == nil {
			err = fmt.Errorf("short write (%d of %d bytes)", n, len(img))
		}
		return -1, fmt.Errorf("process: write stub: %w", err)
	}
	return fd, nil
}
