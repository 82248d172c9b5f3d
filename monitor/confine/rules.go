package confine

import (
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/tendervm/tender/monitor"
	"github.com/tendervm/tender/monitor/guestmem"
	"github.com/tendervm/tender/monitor/kvm"
	"github.com/tendervm/tender/monitor/process"
)

// Rule allows one system call, possibly only with certain arguments.
type Rule struct {
	// Name is the call's name, e.g. "ioctl".
	Name string
	// Nr is its x86-64 number.
	Nr uint32
	// Any lists alternatives: the call is allowed when every condition of
	// one of them holds. Empty, the call is allowed with any arguments.
	Any [][]Cond
	// Why says what needs the call once set-up is done.
	Why string
	// Errno, when not 0, makes the call fail with it without running
	// (Any is then ignored): for calls whose callers fall back to an
	// allowed one.
	Errno unix.Errno
}

// Cond holds when argument Arg (0-5), its low 32 bits (or high ones with
// High) masked with Mask (all bits when 0), equals one of In, or with Except
// none of them.
type Cond struct {
	Arg    int
	High   bool
	Mask   uint32
	In     []uint32
	Except bool
}

// Linux constants x/sys/unix lacks.
const (
	futexWaitPrivate = 0 | 128 // FUTEX_WAIT | FUTEX_PRIVATE_FLAG
	futexWakePrivate = 1 | 128 // FUTEX_WAKE | FUTEX_PRIVATE_FLAG

	// threadFlags are the Go runtime's clone flags for a new thread
	// (runtime.cloneFlags, and CLONE_SETTLS that runtime.clone adds on
	// x86-64).
	threadFlags = unix.CLONE_VM | unix.CLONE_FS | unix.CLONE_FILES | unix.CLONE_SIGHAND |
		unix.CLONE_SYSVSEM | unix.CLONE_THREAD | unix.CLONE_SETTLS
	// forkFlags are syscall.ForkExec's for a guest process
	// (SysProcAttr.PidFD set): a vfork that shares memory until execve.
	forkFlags = unix.CLONE_VM | unix.CLONE_VFORK | unix.CLONE_PIDFD | uint32(unix.SIGCHLD)
	// pthreadFlags are glibc's clone flags for pthread_create.
	pthreadFlags = threadFlags | unix.CLONE_PARENT_SETTID | unix.CLONE_CHILD_CLEARTID
)

// readOnlyOpen holds for an openat that neither writes nor creates. It masks
// __O_TMPFILE alone: unix.O_TMPFILE includes O_DIRECTORY, which a read-only
// open of a directory (os.ReadDir) sets.
func readOnlyOpen() Cond {
	return Cond{Arg: 2, Mask: unix.O_ACCMODE | unix.O_CREAT | unix.O_TRUNC | unix.O_APPEND | (unix.O_TMPFILE &^ unix.O_DIRECTORY), In: []uint32{0}}
}

func arg(i int, in ...uint32) Cond { return Cond{Arg: i, In: in} }

// arg64 holds for argument i equal to v, both halves.
func arg64(i int, v uint64) []Cond {
	return []Cond{arg(i, uint32(v)), {Arg: i, High: true, In: []uint32{uint32(v >> 32)}}}
}

// only allows a call when all of conds hold.
func only(conds ...Cond) [][]Cond { return [][]Cond{conds} }

// Rules returns the allow-list of p, sorted by system call number, for a
// process whose id is pid (tgkill and kill may only signal it, or its
// guests).
func (p Policy) Rules(pid int) []Rule {
	return p.rules(pid, cgoThreads)
}

// rules is Rules for a program whose threads are started by the C
// library's pthread_create (cgo) or not.
func (p Policy) rules(pid int, cgo bool) []Rule {
	var b builder
	self := uint32(pid)
	kvmBackend := p.Backend != monitor.BackendProcess

	// The Go runtime: memory, threads, scheduling, signals, timers.
	if kvmBackend {
		// Nothing maps code once the program runs.
		b.add("mmap", unix.SYS_MMAP, "Go heap, kvm_run and guest memory; never PROT_EXEC", only(Cond{Arg: 2, Mask: unix.PROT_EXEC, In: []uint32{0}}))
	} else {
		b.add("mmap", unix.SYS_MMAP, "Go heap and guest memory; a new guest process maps its code (PROT_EXEC) before its own filter is on", nil)
	}
	b.add("munmap", unix.SYS_MUNMAP, "Go heap, kvm_run and guest memory released", nil)
	b.add("madvise", unix.SYS_MADVISE, "Go heap scavenger; guest pages populated at load; a fresh instance's pages dropped back to its snapshot (MADV_DONTNEED)", nil)
	b.add("futex", unix.SYS_FUTEX, "Go runtime locks and sleeps (private wait and wake only)", only(arg(1, futexWaitPrivate, futexWakePrivate)))
	b.add("clone", unix.SYS_CLONE, "Go runtime threads (exactly runtime.cloneFlags)", only(arg(0, threadFlags)))
	b.add("prctl", unix.SYS_PRCTL, "Go runtime: names the memory it maps (PR_SET_VMA_ANON_NAME, where the kernel has it)",
		only(arg(0, unix.PR_SET_VMA), arg(1, unix.PR_SET_VMA_ANON_NAME)))
	if cgo {
		cgoRules(&b, kvmBackend)
	}
	b.add("exit", unix.SYS_EXIT, "a thread ends (a goroutine locked to it returned)", nil)
	b.add("exit_group", unix.SYS_EXIT_GROUP, "the process exits", nil)
	b.add("nanosleep", unix.SYS_NANOSLEEP, "Go runtime: sysmon and spinning threads sleep", nil)
	b.add("sched_yield", unix.SYS_SCHED_YIELD, "Go runtime: osyield", nil)
	b.add("clock_gettime", unix.SYS_CLOCK_GETTIME, "time.Now where the vDSO cannot read the clock source", nil)
	b.add("sched_getaffinity", unix.SYS_SCHED_GETAFFINITY, "Go runtime: sysmon re-reads the CPUs it may use to update GOMAXPROCS; its own only", only(arg(0, 0)))
	b.add("pread64", unix.SYS_PREAD64, "Go runtime: sysmon re-reads the cgroup CPU limit from files it opened at start", nil)
	b.add("gettid", unix.SYS_GETTID, "Go runtime; the KVM vCPU loop records its thread for kicks", nil)
	b.add("getpid", unix.SYS_GETPID, "Go runtime and kicks signal their own process", nil)
	b.add("tgkill", unix.SYS_TGKILL, "goroutine preemption and vCPU kicks (SIGURG), only to threads of this process", only(arg(0, self)))
	if kvmBackend {
		// The SIGSYS handler reports violations; nothing may replace it.
		b.add("rt_sigaction", unix.SYS_RT_SIGACTION, "Go runtime (os/signal), any signal but SIGSYS",
			only(Cond{Arg: 0, In: []uint32{uint32(unix.SIGSYS)}, Except: true}))
	} else {
		b.add("rt_sigaction", unix.SYS_RT_SIGACTION, "Go runtime (os/signal); a new guest process resets every handler (SIGSYS too) before execve and installs its own after", nil)
	}
	b.add("rt_sigprocmask", unix.SYS_RT_SIGPROCMASK, "Go runtime: new threads, signal delivery", nil)
	b.add("rt_sigreturn", unix.SYS_RT_SIGRETURN, "return from a signal handler (preemption, kicks)", nil)
	b.add("restart_syscall", unix.SYS_RESTART_SYSCALL, "the kernel resumes a sleep a signal interrupted (a timed futex, nanosleep, poll)", nil)
	b.add("sigaltstack", unix.SYS_SIGALTSTACK, "Go runtime: each new thread's signal stack", nil)
	b.add("epoll_pwait", unix.SYS_EPOLL_PWAIT, "Go network poller", nil)
	b.add("epoll_ctl", unix.SYS_EPOLL_CTL, "Go network poller: descriptors added and removed", nil)
	b.add("fcntl", unix.SYS_FCNTL, "close-on-exec for new VM descriptors, non-blocking mode; descriptor flags only",
		only(arg(1, unix.F_GETFD, unix.F_SETFD, unix.F_GETFL, unix.F_SETFL)))

	// Descriptors the monitor already holds.
	b.add("read", unix.SYS_READ, "console and request pipes, eventfds, sockets", nil)
	b.add("write", unix.SYS_WRITE, "guest console, logs, replies, eventfd wake-ups", nil)
	b.add("close", unix.SYS_CLOSE, "VM, vCPU, guest memory and connection descriptors released", nil)

	if kvmBackend {
		ioctls := kvm.RunIoctls()
		if p.NewGuests {
			// A fresh pool also resets its instances (kvm.ResetIoctls).
			ioctls = append(ioctls, kvm.NewVCPUIoctls()...)
			ioctls = append(ioctls, kvm.ResetIoctls()...)
			// A fresh instance finds the pages a request wrote in the
			// descriptor of /proc/self/pagemap opened before the filter.
			ioctls = append(ioctls, kvm.Ioctl{Name: "PAGEMAP_SCAN", Req: guestmem.PagemapIoctl})
			b.add("memfd_create", unix.SYS_MEMFD_CREATE, "guest memory of a fresh instance, whose memfd keeps its snapshot", nil)
			b.add("ftruncate", unix.SYS_FTRUNCATE, "sizing a fresh instance's guest memory memfd", nil)
		}
		reqs, names := ioctlSet(ioctls)
		b.add("ioctl", unix.SYS_IOCTL, "KVM: "+names, only(Cond{Arg: 1, In: reqs}))
	} else {
		p.processRules(&b, self)
	}
	if p.Net {
		b.add("readv", unix.SYS_READV, "network devices: a TAP frame read", nil)
		b.add("ppoll", unix.SYS_PPOLL, "network devices: the poll hypercall waits on the devices", nil)
		b.add("recvfrom", unix.SYS_RECVFROM, "network devices: a pipe frame read", nil)
		b.add("sendto", unix.SYS_SENDTO, "network devices: a pipe frame written", nil)
		if p.NewGuests {
			b.add("eventfd2", unix.SYS_EVENTFD2, "network devices: each run's poll waker", nil)
		}
	}
	if p.Block {
		b.add("pread64", unix.SYS_PREAD64, "block devices: block_read reads the device's file", nil)
		b.add("pwrite64", unix.SYS_PWRITE64, "block devices: block_write writes the device's file (opened before, read-write unless ro)", nil)
	}
	if p.Serve {
		b.add("accept4", unix.SYS_ACCEPT4, "HTTP: connections on the listener opened before", nil)
		b.add("getsockname", unix.SYS_GETSOCKNAME, "HTTP: an accepted connection's local address", nil)
		b.add("setsockopt", unix.SYS_SETSOCKOPT, "HTTP: keep-alive and TCP_NODELAY on accepted connections", nil)
		b.add("shutdown", unix.SYS_SHUTDOWN, "HTTP: closing a connection's write side", nil)
		b.add("openat", unix.SYS_OPENAT, "GET /metrics reads /proc/self (process collector) and slog the time zone; read-only, nothing created",
			only(readOnlyOpen()))
		b.add("newfstatat", unix.SYS_NEWFSTATAT, "GET /metrics: stat of /proc entries", nil)
		b.add("statfs", unix.SYS_STATFS, "GET /metrics: procfs checks it reads /proc", nil)
		b.add("getdents64", unix.SYS_GETDENTS64, "GET /metrics: counting open descriptors lists /proc/self/fd before Linux 6.2 (later kernels stat it)", nil)
	}
	return b.rules()
}

// processRules adds what the process backend's monitor needs: serving and
// killing guest processes, and, with NewGuests, starting them. A guest
// process inherits this filter (seccomp filters pass to children and
// through execve), so its calls until its own filter is on, and the ones
// its own filter forwards, are listed too.
func (p Policy) processRules(b *builder, self uint32) {
	ioctls := []uint32{unix.SECCOMP_IOCTL_NOTIF_RECV, unix.SECCOMP_IOCTL_NOTIF_SEND, unix.SECCOMP_IOCTL_NOTIF_SET_FLAGS}
	why := "seccomp notifications of guest processes: receive, answer, set flags"
	if p.NewGuests {
		// A fresh pool's guest processes have their writes tracked.
		ioctls = append(ioctls, process.TrackIoctls()...)
		why += "; a fresh instance's write tracking: UFFDIO_API, UFFDIO_REGISTER, UFFDIO_WRITEPROTECT in the new guest process, PAGEMAP_SCAN on its pagemap at every reset"
	}
	b.add("ioctl", unix.SYS_IOCTL, why, only(Cond{Arg: 1, In: ioctls}))
	b.add("ppoll", unix.SYS_PPOLL, "waiting for a guest process's notification or death", nil)
	b.add("getppid", unix.SYS_GETPPID, "the guest process's exception report (its own filter forwards it to the monitor)", nil)
	b.add("pidfd_send_signal", unix.SYS_PIDFD_SEND_SIGNAL, "a kick kills the guest process through its pidfd", nil)
	b.add("kill", unix.SYS_KILL, "SIGKILL to a guest process on Close; any signal to this process (Go runtime)",
		[][]Cond{{arg(0, self)}, {arg(1, uint32(unix.SIGKILL))}})
	b.add("wait4", unix.SYS_WAIT4, "reaping a guest process", nil)
	if !p.NewGuests {
		return
	}
	addr, size, prot := process.TemplateSeal()
	b.add("mprotect", unix.SYS_MPROTECT, "a fresh instance's guest process seals its template: that range only, read-only (the monitor never calls it)",
		only(slices.Concat(arg64(0, addr), arg64(1, size), arg64(2, uint64(prot)))...))
	b.add("memfd_create", unix.SYS_MEMFD_CREATE, "guest memory shared with a new guest process", nil)
	b.add("ftruncate", unix.SYS_FTRUNCATE, "sizing the guest memory memfd", nil)
	b.add("pipe2", unix.SYS_PIPE2, "syscall.ForkExec's error pipe", nil)
	b.add("clone", unix.SYS_CLONE, "a guest process (syscall.ForkExec's vfork with a pidfd)", only(arg(0, forkFlags)))
	b.add("execve", unix.SYS_EXECVE, "the new guest process runs the stub, from a memfd (seccomp cannot check the path)", nil)
	b.add("setpgid", unix.SYS_SETPGID, "the new guest process leaves the terminal's process group", nil)
	b.add("prctl", unix.SYS_PRCTL, "the new guest process: parent-death signal; no_new_privs before its filter",
		only(arg(0, unix.PR_SET_PDEATHSIG, unix.PR_SET_NO_NEW_PRIVS)))
	b.add("dup3", unix.SYS_DUP3, "the new guest process: its descriptors 3 and 4 before execve", nil)
	b.add("prlimit64", unix.SYS_PRLIMIT64, "the new guest process: Go restores its own RLIMIT_NOFILE before execve; the monitor sets its RLIMIT_CORE (no core dumps)",
		[][]Cond{{arg(0, 0), arg(1, unix.RLIMIT_NOFILE)}, {arg(1, unix.RLIMIT_CORE)}})
	b.add("ptrace", unix.SYS_PTRACE, "setting a new guest process up: TRACEME in the child; SETOPTIONS, GETREGSET, SETREGSET, CONT, DETACH (no ATTACH or SEIZE)",
		only(arg(0, unix.PTRACE_TRACEME, unix.PTRACE_SETOPTIONS, unix.PTRACE_GETREGSET, unix.PTRACE_SETREGSET, unix.PTRACE_CONT, unix.PTRACE_DETACH)))
	b.add("process_vm_writev", unix.SYS_PROCESS_VM_WRITEV, "writing the region table into a new guest process; a fresh instance's template, and the pages of its signal stack a request wrote", nil)
	b.add("process_vm_readv", unix.SYS_PROCESS_VM_READV, "a fresh instance's snapshot reads the guest process's signal stack", nil)
	b.add("userfaultfd", unix.SYS_USERFAULTFD, "a fresh instance's guest process tracks its writes (user-mode faults only)", only(arg(0, process.UserfaultfdFlags)))
	b.add("openat", unix.SYS_OPENAT, "a fresh instance opens its guest process's /proc/PID/pagemap; read-only, nothing created",
		only(readOnlyOpen()))
	b.add("lseek", unix.SYS_LSEEK, "a fresh instance's snapshot finds the pages of guest memory (SEEK_DATA, SEEK_HOLE)", only(arg(2, unix.SEEK_DATA, unix.SEEK_HOLE)))
	b.add("pidfd_getfd", unix.SYS_PIDFD_GETFD, "taking a new guest process's notification descriptor", nil)
	b.add("close_range", unix.SYS_CLOSE_RANGE, "the new guest process closes every descriptor", nil)
	b.add("seccomp", unix.SYS_SECCOMP, "the new guest process installs its own filter (which can only narrow this one)",
		only(arg(0, unix.SECCOMP_SET_MODE_FILTER)))
}

// cgoRules adds what glibc's pthread_create and a thread's start and end
// do, for programs linked with cgo, whose Go runtime starts its threads
// that way. A new thread runs with every signal blocked until the runtime
// takes it over, so a call the filter traps there is a silent kill, not a
// report.
func cgoRules(b *builder, kvmBackend bool) {
	b.addErrno("clone3", unix.SYS_CLONE3, "glibc tries it first for a thread; ENOSYS makes it use clone, whose flags the filter can check", unix.ENOSYS)
	b.add("clone", unix.SYS_CLONE, "threads started by glibc's pthread_create (cgo)", only(arg(0, pthreadFlags)))
	noExec := only(Cond{Arg: 2, Mask: unix.PROT_EXEC, In: []uint32{0}})
	if !kvmBackend {
		noExec = nil
	}
	b.add("mprotect", unix.SYS_MPROTECT, "glibc: a new thread's stack and its guard page (cgo); never PROT_EXEC under KVM", noExec)
	b.add("set_robust_list", unix.SYS_SET_ROBUST_LIST, "glibc: a new thread registers its robust futex list (cgo)", nil)
	b.add("rseq", unix.SYS_RSEQ, "glibc: a new thread registers its restartable sequence area (cgo)", nil)
	b.addErrno("openat", unix.SYS_OPENAT, "glibc's malloc counts the CPUs in a new thread (/sys/devices/system/cpu/online); EACCES makes it ask sched_getaffinity (cgo)", unix.EACCES)
}

func ioctlSet(ios []kvm.Ioctl) ([]uint32, string) {
	var reqs []uint32
	var names []string
	for _, io := range ios {
		if slices.Contains(reqs, io.Req) { // listed by two callers
			continue
		}
		reqs, names = append(reqs, io.Req), append(names, io.Name)
	}
	return reqs, strings.Join(names, ", ")
}

// builder collects rules; adding a call twice widens it to either
// condition (a call without conditions stays without).
type builder struct{ m map[uint32]*Rule }

func (b *builder) add(name string, nr uint32, why string, any [][]Cond) {
	if b.m == nil {
		b.m = map[uint32]*Rule{}
	}
	r, ok := b.m[nr]
	if !ok || r.Errno != 0 {
		// A call some part allows is allowed, not failed.
		b.m[nr] = &Rule{Name: name, Nr: nr, Any: any, Why: why}
		return
	}
	r.Why += "; " + why
	if len(r.Any) == 0 || len(any) == 0 {
		r.Any = nil
		return
	}
	r.Any = append(r.Any, any...)
}

// addErrno makes a call fail with errno.
// A call another part allows stays allowed.
func (b *builder) addErrno(name string, nr uint32, why string, errno unix.Errno) {
	if _, ok := b.m[nr]; ok {
		return
	}
	b.add(name, nr, why, nil)
	b.m[nr].Errno = errno
}

func (b *builder) rules() []Rule {
	rs := make([]Rule, 0, len(b.m))
	for _, r := range b.m {
		rs = append(rs, *r)
	}
	slices.SortFunc(rs, func(a, b Rule) int { return int(a.Nr) - int(b.Nr) })
	return rs
}
