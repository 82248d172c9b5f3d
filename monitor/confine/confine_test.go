package confine

import (
	"encoding/binary"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/tendervm/tender/monitor"
	"github.com/tendervm/tender/monitor/guestmem"
	"github.com/tendervm/tender/monitor/kvm"
	"github.com/tendervm/tender/monitor/process"
)

const (
	testPID   = 4242
	otherPID  = 4243
	archI386  = 0x40000003 // AUDIT_ARCH_I386
	x32Bit    = 0x40000000 // __X32_SYSCALL_BIT
	kvmRunReq = 0xAE80     // KVM_RUN
	atFDCWD   = 0xffffffffffffff9c
)

// call is one system call as the filter sees it.
type call struct {
	nr   uint32
	arch uint32 // AUDIT_ARCH_X86_64 when 0
	args [6]uint64
}

func sys(nr uint32, args ...uint64) call {
	c := call{nr: nr}
	copy(c.args[:], args)
	return c
}

// seccompData lays c out as struct seccomp_data for x/net/bpf's VM, which
// loads 32-bit words big-endian where the kernel loads native ones: each word
// is stored big-endian at its little-endian place.
func (c call) seccompData() []byte {
	b := make([]byte, 64)
	arch := c.arch
	if arch == 0 {
		arch = unix.AUDIT_ARCH_X86_64
	}
	binary.BigEndian.PutUint32(b[0:], c.nr)
	binary.BigEndian.PutUint32(b[4:], arch)
	for i, a := range c.args {
		binary.BigEndian.PutUint32(b[16+8*i:], uint32(a))
		binary.BigEndian.PutUint32(b[20+8*i:], uint32(a>>32))
	}
	return b
}

// verdicts runs p's filter over calls.
func verdict(t *testing.T, p Policy, c call) uint32 {
	t.Helper()
	return verdictCgo(t, p, false, c)
}

// verdictCgo is verdict for a program built with cgo or without,
// whichever this test binary is.
func verdictCgo(t *testing.T, p Policy, cgo bool, c call) uint32 {
	t.Helper()
	prog, err := program(p.rules(testPID, cgo))
	require.NoError(t, err)
	vm, err := bpf.NewVM(prog)
	require.NoError(t, err)
	got, err := vm.Run(c.seccompData())
	require.NoError(t, err)
	return uint32(got)
}

var (
	kvmRun   = Policy{Backend: monitor.BackendKVM}
	kvmPool  = Policy{Backend: monitor.BackendKVM, NewGuests: true}
	kvmServe = Policy{Backend: monitor.BackendKVM, NewGuests: true, Serve: true}
	kvmNet   = Policy{Backend: monitor.BackendKVM, Net: true}
	kvmBlock = Policy{Backend: monitor.BackendKVM, Block: true}
	procBlk  = Policy{Backend: monitor.BackendProcess, Block: true}
	procRun  = Policy{Backend: monitor.BackendProcess}
	procPool = Policy{Backend: monitor.BackendProcess, NewGuests: true}

	tmplAddr, tmplSize, _ = process.TemplateSeal()
)

func ioctlReq(name string) uint64 {
	for _, io := range append(append(kvm.RunIoctls(), kvm.NewVCPUIoctls()...), kvm.ResetIoctls()...) {
		if io.Name == name {
			return uint64(io.Req)
		}
	}
	panic(name)
}

// TestFilterVerdicts checks calls the filters must allow and calls they must
// stop, argument checks included.
func TestFilterVerdicts(t *testing.T) {
	const (
		allow = actAllow
		trap  = actTrap
		kill  = actKill
	)
	rw := uint64(unix.PROT_READ | unix.PROT_WRITE)
	for _, tc := range []struct {
		name string
		p    Policy
		c    call
		want uint32
	}{
		{"KVM_RUN", kvmRun, sys(unix.SYS_IOCTL, 9, kvmRunReq), allow},
		{"KVM_RUN, high half of the request set (the kernel ignores it)", kvmRun, sys(unix.SYS_IOCTL, 9, 1<<32|kvmRunReq), allow},
		{"KVM_GET_SREGS for a fault report", kvmRun, sys(unix.SYS_IOCTL, 9, ioctlReq("KVM_GET_SREGS")), allow},
		{"KVM_CREATE_VM after tender run's set-up", kvmRun, sys(unix.SYS_IOCTL, 5, ioctlReq("KVM_CREATE_VM")), trap},
		{"KVM_SET_USER_MEMORY_REGION after tender run's set-up", kvmRun, sys(unix.SYS_IOCTL, 8, ioctlReq("KVM_SET_USER_MEMORY_REGION")), trap},
		{"KVM_CREATE_VM in a pool", kvmPool, sys(unix.SYS_IOCTL, 5, ioctlReq("KVM_CREATE_VM")), allow},
		{"KVM_SET_USER_MEMORY_REGION in a pool", kvmPool, sys(unix.SYS_IOCTL, 8, ioctlReq("KVM_SET_USER_MEMORY_REGION")), allow},
		{"KVM_SET_XSAVE resetting a fresh instance", kvmPool, sys(unix.SYS_IOCTL, 9, ioctlReq("KVM_SET_XSAVE")), allow},
		{"KVM_SET_XSAVE after tender run's set-up", kvmRun, sys(unix.SYS_IOCTL, 9, ioctlReq("KVM_SET_XSAVE")), trap},
		{"PAGEMAP_SCAN resetting a fresh instance", kvmPool, sys(unix.SYS_IOCTL, 11, uint64(guestmem.PagemapIoctl)), allow},
		{"PAGEMAP_SCAN after tender run's set-up", kvmRun, sys(unix.SYS_IOCTL, 11, uint64(guestmem.PagemapIoctl)), trap},
		{"memfd_create for a fresh instance", kvmPool, sys(unix.SYS_MEMFD_CREATE, 0, 0), allow},
		{"memfd_create after tender run's set-up", kvmRun, sys(unix.SYS_MEMFD_CREATE, 0, 0), trap},
		{"an ioctl the backend never issues (KVM_GET_API_VERSION)", kvmPool, sys(unix.SYS_IOCTL, 5, 0xAE00), trap},
		{"an ioctl the backend never issues (KVM_SET_GUEST_DEBUG)", kvmPool, sys(unix.SYS_IOCTL, 9, 0x4048AE9B), trap},
		{"TIOCSTI", kvmServe, sys(unix.SYS_IOCTL, 0, unix.TIOCSTI), trap},
		{"a seccomp notification ioctl under KVM", kvmPool, sys(unix.SYS_IOCTL, 7, unix.SECCOMP_IOCTL_NOTIF_RECV), trap},
		{"restart_syscall after a signal interrupted a timed sleep (seen in tender serve under load)", kvmServe, sys(unix.SYS_RESTART_SYSCALL), allow},
		{"restart_syscall in tender run on the process backend", procRun, sys(unix.SYS_RESTART_SYSCALL), allow},
		{"futex wait", kvmRun, sys(unix.SYS_FUTEX, 0xc000, futexWaitPrivate), allow},
		{"futex requeue-PI", kvmRun, sys(unix.SYS_FUTEX, 0xc000, 12|128), trap},
		{"a Go thread", kvmRun, sys(unix.SYS_CLONE, threadFlags), allow},
		{"fork", kvmRun, sys(unix.SYS_CLONE, uint64(unix.SIGCHLD)), trap},
		{"vfork with a pidfd under KVM", kvmPool, sys(unix.SYS_CLONE, uint64(forkFlags)), trap},
		{"a thread in a new namespace", kvmRun, sys(unix.SYS_CLONE, threadFlags|unix.CLONE_NEWUSER), trap},
		{"clone3", kvmPool, sys(unix.SYS_CLONE3, 0x7000, 88), trap},
		{"execve under KVM", kvmServe, sys(unix.SYS_EXECVE, 0x1000, 0x2000, 0x3000), trap},
		{"execveat", procPool, sys(unix.SYS_EXECVEAT, 4, 0x1000, 0x2000, 0x3000, unix.AT_EMPTY_PATH), trap},
		{"ptrace under KVM", kvmServe, sys(unix.SYS_PTRACE, unix.PTRACE_TRACEME), trap},
		{"openat after tender run's set-up", kvmRun, sys(unix.SYS_OPENAT, atFDCWD, 0x1000, unix.O_RDONLY), trap},
		{"open", kvmServe, sys(unix.SYS_OPEN, 0x1000, unix.O_RDONLY), trap},
		{"getdents64 of /proc/self/fd for GET /metrics (Linux before 6.2; seen on Debian 12's 6.1)", kvmServe, sys(unix.SYS_GETDENTS64, 7, 0x1000, 4096), allow},
		{"getdents64 in tender run", kvmRun, sys(unix.SYS_GETDENTS64, 7, 0x1000, 4096), trap},
		{"socket", kvmRun, sys(unix.SYS_SOCKET, unix.AF_INET, unix.SOCK_STREAM), trap},
		{"socket while serving", kvmServe, sys(unix.SYS_SOCKET, unix.AF_INET, unix.SOCK_STREAM), trap},
		{"connect while serving", kvmServe, sys(unix.SYS_CONNECT, 3, 0x1000, 16), trap},
		{"accept4 while serving", kvmServe, sys(unix.SYS_ACCEPT4, 3, 0, 0, unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK), allow},
		{"accept4 without serving", kvmPool, sys(unix.SYS_ACCEPT4, 3, 0, 0, 0), trap},
		{"openat read-only while serving", kvmServe, sys(unix.SYS_OPENAT, atFDCWD, 0x1000, unix.O_RDONLY|unix.O_CLOEXEC), allow},
		{"openat for writing while serving", kvmServe, sys(unix.SYS_OPENAT, atFDCWD, 0x1000, unix.O_WRONLY|unix.O_CLOEXEC), trap},
		{"openat creating while serving", kvmServe, sys(unix.SYS_OPENAT, atFDCWD, 0x1000, unix.O_RDONLY|unix.O_CREAT), trap},
		{"openat O_TMPFILE while serving", kvmServe, sys(unix.SYS_OPENAT, atFDCWD, 0x1000, unix.O_RDWR|unix.O_TMPFILE), trap},
		// unix.O_TMPFILE includes O_DIRECTORY, which os.ReadDir sets.
		{"openat O_DIRECTORY read-only while serving (os.ReadDir of /proc/self/fd)", kvmServe, sys(unix.SYS_OPENAT, atFDCWD, 0x1000, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_DIRECTORY), allow},
		{"openat O_TMPFILE read-only while serving", kvmServe, sys(unix.SYS_OPENAT, atFDCWD, 0x1000, unix.O_RDONLY|unix.O_TMPFILE), trap},
		{"openat O_DIRECTORY for writing while serving", kvmServe, sys(unix.SYS_OPENAT, atFDCWD, 0x1000, unix.O_WRONLY|unix.O_DIRECTORY), trap},
		{"openat O_DIRECTORY read-only in a process pool", procPool, sys(unix.SYS_OPENAT, 0, 0x1000, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_DIRECTORY), allow},
		{"openat O_TMPFILE in a process pool", procPool, sys(unix.SYS_OPENAT, 0, 0x1000, unix.O_RDWR|unix.O_TMPFILE), trap},
		{"openat O_TMPFILE read-only in a process pool", procPool, sys(unix.SYS_OPENAT, 0, 0x1000, unix.O_RDONLY|unix.O_TMPFILE), trap},
		{"mmap read-write", kvmRun, sys(unix.SYS_MMAP, 0, 4096, rw, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS), allow},
		{"mmap executable under KVM", kvmPool, sys(unix.SYS_MMAP, 0, 4096, rw|unix.PROT_EXEC, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS), trap},
		{"mprotect", kvmPool, sys(unix.SYS_MPROTECT, 0x1000, 4096, unix.PROT_EXEC), trap},
		{"mprotect of a fresh guest's template, read-only", procPool, sys(unix.SYS_MPROTECT, tmplAddr, tmplSize, unix.PROT_READ), allow},
		{"mprotect of the template, read-write", procPool, sys(unix.SYS_MPROTECT, tmplAddr, tmplSize, unix.PROT_READ|unix.PROT_WRITE), trap},
		{"mprotect of the template, prot's high half set", procPool, sys(unix.SYS_MPROTECT, tmplAddr, tmplSize, 1<<32|unix.PROT_READ), trap},
		{"mprotect read-only elsewhere", procPool, sys(unix.SYS_MPROTECT, tmplAddr+0x1000, tmplSize, unix.PROT_READ), trap},
		{"mprotect read-only, address's high half other", procPool, sys(unix.SYS_MPROTECT, tmplAddr+1<<32, tmplSize, unix.PROT_READ), trap},
		{"mprotect read-only, longer", procPool, sys(unix.SYS_MPROTECT, tmplAddr, tmplSize+0x1000, unix.PROT_READ), trap},
		{"mprotect read-only, length's high half set", procPool, sys(unix.SYS_MPROTECT, tmplAddr, 1<<32|tmplSize, unix.PROT_READ), trap},
		{"mprotect of the template without new guests", procRun, sys(unix.SYS_MPROTECT, tmplAddr, tmplSize, unix.PROT_READ), trap},
		{"mmap executable, process backend (guest code)", procPool, sys(unix.SYS_MMAP, 0x100000, 4096, unix.PROT_READ|unix.PROT_EXEC, unix.MAP_SHARED|unix.MAP_FIXED, 3), allow},
		{"tgkill in the process", kvmRun, sys(unix.SYS_TGKILL, testPID, testPID+7, uint64(unix.SIGURG)), allow},
		{"tgkill to another process", kvmRun, sys(unix.SYS_TGKILL, otherPID, otherPID, uint64(unix.SIGURG)), trap},
		{"kill under KVM", kvmServe, sys(unix.SYS_KILL, otherPID, uint64(unix.SIGKILL)), trap},
		{"kill of a guest process", procRun, sys(unix.SYS_KILL, otherPID, uint64(unix.SIGKILL)), allow},
		{"SIGTERM to another process", procRun, sys(unix.SYS_KILL, otherPID, uint64(unix.SIGTERM)), trap},
		{"SIGTERM to itself", procRun, sys(unix.SYS_KILL, testPID, uint64(unix.SIGTERM)), allow},
		{"rt_sigaction(SIGINT)", kvmRun, sys(unix.SYS_RT_SIGACTION, uint64(unix.SIGINT), 0x1000, 0, 8), allow},
		{"rt_sigaction(SIGSYS) under KVM", kvmRun, sys(unix.SYS_RT_SIGACTION, uint64(unix.SIGSYS), 0x1000, 0, 8), trap},
		{"fcntl(F_SETFD)", kvmPool, sys(unix.SYS_FCNTL, 9, unix.F_SETFD, unix.FD_CLOEXEC), allow},
		{"fcntl(F_DUPFD)", kvmPool, sys(unix.SYS_FCNTL, 9, unix.F_DUPFD, 100), trap},
		{"fcntl(F_SETOWN)", kvmServe, sys(unix.SYS_FCNTL, 9, unix.F_SETOWN, 1), trap},
		{"readv of a TAP device", kvmNet, sys(unix.SYS_READV, 7, 0x1000, 2), allow},
		{"readv without devices", kvmRun, sys(unix.SYS_READV, 7, 0x1000, 2), trap},
		{"pwrite64 to a block device", kvmBlock, sys(unix.SYS_PWRITE64, 7, 0x1000, 512, 0), allow},
		{"pwrite64 to a block device, process backend", procBlk, sys(unix.SYS_PWRITE64, 7, 0x1000, 512, 0), allow},
		{"pread64 from a block device", kvmBlock, sys(unix.SYS_PREAD64, 7, 0x1000, 512, 0), allow},
		{"pwrite64 without block devices", kvmRun, sys(unix.SYS_PWRITE64, 7, 0x1000, 512, 0), trap},
		{"pwrite64 without block devices, process backend", procPool, sys(unix.SYS_PWRITE64, 7, 0x1000, 512, 0), trap},
		{"eventfd2 after tender run's set-up", kvmNet, sys(unix.SYS_EVENTFD2, 0, 0), trap},
		{"the guest process's report", procRun, sys(unix.SYS_GETPPID), allow},
		{"getppid under KVM", kvmRun, sys(unix.SYS_GETPPID), trap},
		{"SECCOMP_IOCTL_NOTIF_RECV", procRun, sys(unix.SYS_IOCTL, 7, unix.SECCOMP_IOCTL_NOTIF_RECV), allow},
		{"KVM_RUN under the process backend", procPool, sys(unix.SYS_IOCTL, 9, kvmRunReq), trap},
		{"a guest process after set-up of tender run", procRun, sys(unix.SYS_CLONE, uint64(forkFlags)), trap},
		{"a guest process in a pool", procPool, sys(unix.SYS_CLONE, uint64(forkFlags)), allow},
		{"fork without a pidfd in a pool", procPool, sys(unix.SYS_CLONE, uint64(unix.SIGCHLD)), trap},
		{"execve in a pool (the stub)", procPool, sys(unix.SYS_EXECVE, 0x1000, 0x2000, 0x3000), allow},
		{"execve after tender run's set-up", procRun, sys(unix.SYS_EXECVE, 0x1000, 0x2000, 0x3000), trap},
		{"PTRACE_TRACEME", procPool, sys(unix.SYS_PTRACE, unix.PTRACE_TRACEME), allow},
		{"PTRACE_CONT", procPool, sys(unix.SYS_PTRACE, unix.PTRACE_CONT, otherPID), allow},
		{"PTRACE_ATTACH", procPool, sys(unix.SYS_PTRACE, unix.PTRACE_ATTACH, otherPID), trap},
		{"userfaultfd of a fresh guest process", procPool, sys(unix.SYS_USERFAULTFD, process.UserfaultfdFlags), allow},
		{"userfaultfd for kernel faults too", procPool, sys(unix.SYS_USERFAULTFD, unix.O_CLOEXEC), trap},
		{"userfaultfd after tender run's set-up", procRun, sys(unix.SYS_USERFAULTFD, process.UserfaultfdFlags), trap},
		{"userfaultfd under KVM", kvmPool, sys(unix.SYS_USERFAULTFD, process.UserfaultfdFlags), trap},
		{"UFFDIO_REGISTER in a fresh guest process", procPool, sys(unix.SYS_IOCTL, 0, uint64(process.TrackIoctls()[1])), allow},
		{"PAGEMAP_SCAN resetting a fresh guest process", procPool, sys(unix.SYS_IOCTL, 11, uint64(process.TrackIoctls()[3])), allow},
		{"PAGEMAP_SCAN after tender run's set-up, process backend", procRun, sys(unix.SYS_IOCTL, 11, uint64(process.TrackIoctls()[3])), trap},
		{"process_vm_readv in a pool", procPool, sys(unix.SYS_PROCESS_VM_READV, otherPID), allow},
		{"lseek(SEEK_DATA) of guest memory", procPool, sys(unix.SYS_LSEEK, 5, 0, unix.SEEK_DATA), allow},
		{"lseek(SEEK_SET)", procPool, sys(unix.SYS_LSEEK, 5, 0, unix.SEEK_SET), trap},
		{"openat read-only in a process pool", procPool, sys(unix.SYS_OPENAT, 0, 0x1000, unix.O_RDONLY|unix.O_CLOEXEC), allow},
		{"openat for writing in a process pool", procPool, sys(unix.SYS_OPENAT, 0, 0x1000, unix.O_RDWR), trap},
		{"PTRACE_SEIZE", procPool, sys(unix.SYS_PTRACE, unix.PTRACE_SEIZE, otherPID), trap},
		{"PTRACE_POKEDATA", procPool, sys(unix.SYS_PTRACE, unix.PTRACE_POKEDATA, otherPID, 0x1000, 0), trap},
		{"prctl naming Go's memory", kvmRun, sys(unix.SYS_PRCTL, unix.PR_SET_VMA, unix.PR_SET_VMA_ANON_NAME, 0xc000000000, 1<<20, 0x1000), allow},
		{"prctl naming Go's memory, process backend", procPool, sys(unix.SYS_PRCTL, unix.PR_SET_VMA, unix.PR_SET_VMA_ANON_NAME, 0xc000000000, 1<<20, 0x1000), allow},
		{"prctl(PR_SET_VMA) of another kind", kvmRun, sys(unix.SYS_PRCTL, unix.PR_SET_VMA, 1), trap},
		{"prctl(PR_SET_NO_NEW_PRIVS) under KVM", kvmRun, sys(unix.SYS_PRCTL, unix.PR_SET_NO_NEW_PRIVS, 1), trap},
		{"prctl(PR_SET_NO_NEW_PRIVS)", procPool, sys(unix.SYS_PRCTL, unix.PR_SET_NO_NEW_PRIVS, 1), allow},
		{"prctl(PR_SET_DUMPABLE)", procPool, sys(unix.SYS_PRCTL, unix.PR_SET_DUMPABLE, 1), trap},
		{"prlimit64 of its own RLIMIT_NOFILE", procPool, sys(unix.SYS_PRLIMIT64, 0, unix.RLIMIT_NOFILE, 0x1000, 0), allow},
		{"prlimit64 of another process", procPool, sys(unix.SYS_PRLIMIT64, otherPID, unix.RLIMIT_NOFILE, 0x1000, 0), trap},
		{"prlimit64 of a guest process's RLIMIT_CORE", procPool, sys(unix.SYS_PRLIMIT64, otherPID, unix.RLIMIT_CORE, 0x1000, 0), allow},
		{"prlimit64 of a guest process's RLIMIT_CPU", procPool, sys(unix.SYS_PRLIMIT64, otherPID, unix.RLIMIT_CPU, 0x1000, 0), trap},
		{"seccomp(SECCOMP_SET_MODE_FILTER)", procPool, sys(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, 0x8, 0x1000), allow},
		{"seccomp(SECCOMP_GET_ACTION_AVAIL)", procPool, sys(unix.SYS_SECCOMP, 2, 0, 0x1000), trap},
		{"an i386 call (int $0x80)", kvmRun, call{nr: 4, arch: archI386}, kill},
		{"an i386 call, process backend", procPool, call{nr: 4, arch: archI386}, kill},
		{"an x32 write", kvmRun, sys(unix.SYS_WRITE | x32Bit), trap},
		{"write", kvmRun, sys(unix.SYS_WRITE, 1, 0x1000, 10), allow},
		{"exit_group", kvmRun, sys(unix.SYS_EXIT_GROUP, 0), allow},
	} {
		assert.Equal(t, tc.want, verdict(t, tc.p, tc.c), "%s (%+v)", tc.name, tc.p)
	}
}

// TestFilterMatchesRules checks each filter against its own allow-list:
// every listed call passes with the argument values its conditions name,
// and every other number up to 1023 traps.
func TestFilterMatchesRules(t *testing.T) {
	for _, p := range []Policy{kvmRun, kvmPool, kvmServe, kvmNet, kvmBlock, procRun, procPool, procBlk,
		{Backend: monitor.BackendProcess, NewGuests: true, Serve: true, Net: true, Block: true}} {
		for _, cgo := range []bool{false, true} {
			filterMatchesRules(t, p, cgo)
		}
	}
}

func filterMatchesRules(t *testing.T, p Policy, cgo bool) {
	verdict := func(t *testing.T, p Policy, c call) uint32 { return verdictCgo(t, p, cgo, c) }
	{
		rules := p.rules(testPID, cgo)
		listed := map[uint32]bool{}
		for _, r := range rules {
			listed[r.Nr] = true
			if r.Errno != 0 {
				assert.Equal(t, unix.SECCOMP_RET_ERRNO|uint32(r.Errno), verdict(t, p, sys(r.Nr)), "%s in %+v", r.Name, p)
				continue
			}
			if len(r.Any) == 0 {
				assert.Equal(t, uint32(actAllow), verdict(t, p, sys(r.Nr)), "%s in %+v", r.Name, p)
				continue
			}
			for _, alt := range r.Any {
				c := sys(r.Nr)
				for _, cond := range alt {
					if cond.Except {
						continue // zero is never an excluded value here
					}
					v := uint64(cond.In[len(cond.In)-1])
					if cond.High {
						v <<= 32
					}
					c.args[cond.Arg] |= v
				}
				assert.Equal(t, uint32(actAllow), verdict(t, p, c), "%s %v in %+v", r.Name, alt, p)
			}
		}
		for nr := uint32(0); nr < 1024; nr++ {
			if !listed[nr] {
				assert.Equal(t, uint32(actTrap), verdict(t, p, sys(nr)), "unlisted call %d in %+v", nr, p)
			}
		}
	}
}

// TestAllowListSize keeps tender run's list short: the point of the filter.
func TestAllowListSize(t *testing.T) {
	assert.LessOrEqual(t, len(kvmRun.rules(testPID, false)), 40)
	assert.LessOrEqual(t, len(kvmNet.rules(testPID, false)), 40)
	assert.LessOrEqual(t, len(kvmBlock.rules(testPID, false)), 40)
}

// TestCgoRules pins what a cgo build adds: glibc's thread start, and no
// more. clone3 and openat fail with an error glibc falls back from rather
// than end the process (a new thread has SIGSYS blocked, so a trap there
// is a silent kill); openat stays allowed where a policy allows it.
func TestCgoRules(t *testing.T) {
	const pthread = threadFlags | unix.CLONE_PARENT_SETTID | unix.CLONE_CHILD_CLEARTID
	for _, tc := range []struct {
		name      string
		p         Policy
		c         call
		with, not uint32
	}{
		{"clone3", kvmRun, sys(unix.SYS_CLONE3, 0x1000, 88), unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS), actTrap},
		{"glibc's thread clone", kvmRun, sys(unix.SYS_CLONE, pthread), actAllow, actTrap},
		{"clone with CLONE_NEWUSER", kvmRun, sys(unix.SYS_CLONE, pthread|unix.CLONE_NEWUSER), actTrap, actTrap},
		{"a fork", kvmRun, sys(unix.SYS_CLONE, uint64(unix.SIGCHLD)), actTrap, actTrap},
		{"mprotect RW", kvmRun, sys(unix.SYS_MPROTECT, 0x1000, 0x1000, unix.PROT_READ|unix.PROT_WRITE), actAllow, actTrap},
		{"mprotect exec under KVM", kvmRun, sys(unix.SYS_MPROTECT, 0x1000, 0x1000, unix.PROT_READ|unix.PROT_EXEC), actTrap, actTrap},
		{"mprotect exec, process backend", procRun, sys(unix.SYS_MPROTECT, 0x1000, 0x1000, unix.PROT_READ|unix.PROT_EXEC), actAllow, actTrap},
		{"set_robust_list", kvmRun, sys(unix.SYS_SET_ROBUST_LIST, 0x1000, 24), actAllow, actTrap},
		{"rseq", kvmRun, sys(unix.SYS_RSEQ, 0x1000, 32), actAllow, actTrap},
		{"openat", kvmRun, sys(unix.SYS_OPENAT, 0, 0x1000, unix.O_RDONLY), unix.SECCOMP_RET_ERRNO | uint32(unix.EACCES), actTrap},
		{"openat read-only, serve", kvmServe, sys(unix.SYS_OPENAT, 0, 0x1000, unix.O_RDONLY), actAllow, actAllow},
		{"openat for writing, serve", kvmServe, sys(unix.SYS_OPENAT, 0, 0x1000, unix.O_WRONLY), actTrap, actTrap},
		{"socket", kvmRun, sys(unix.SYS_SOCKET, unix.AF_INET), actTrap, actTrap},
	} {
		assert.Equal(t, tc.with, verdictCgo(t, tc.p, true, tc.c), "%s with cgo", tc.name)
		assert.Equal(t, tc.not, verdictCgo(t, tc.p, false, tc.c), "%s without cgo", tc.name)
	}
	assert.Len(t, kvmRun.rules(testPID, true), len(kvmRun.rules(testPID, false))+5, "clone3, mprotect, set_robust_list, rseq, openat; clone was there")
}

func TestFilterUnknownBackend(t *testing.T) {
	_, err := Policy{Backend: monitor.BackendAuto}.Filter(testPID)
	assert.ErrorContains(t, err, `backend "auto"`)
}

// TestDocListsEveryCall keeps docs/security.md's tables in step with the
// lists: every allowed call is named there.
func TestDocListsEveryCall(t *testing.T) {
	doc, err := os.ReadFile("../../docs/security.md")
	require.NoError(t, err)
	for _, p := range []Policy{
		{Backend: monitor.BackendKVM, NewGuests: true, Serve: true, Net: true, Block: true},
		{Backend: monitor.BackendProcess, NewGuests: true, Serve: true, Net: true, Block: true},
	} {
		for _, r := range p.rules(testPID, true) {
			assert.Contains(t, string(doc), "`"+r.Name+"`", "docs/security.md does not name %s (%s)", r.Name, p.Backend)
		}
	}
}

// TestHandlerCallsAllowed: every policy allows the calls the SIGSYS handler
// makes (sigsys_amd64.s), which runs with SIGSYS blocked: a trap there
// would kill the process with no message and no exit status of tender's.
func TestHandlerCallsAllowed(t *testing.T) {
	for _, p := range []Policy{kvmRun, kvmPool, kvmServe, kvmNet, kvmBlock, procRun, procPool, procBlk} {
		for _, cgo := range []bool{false, true} {
			for _, c := range []call{
				sys(unix.SYS_FCNTL, 2, unix.F_GETFL),
				sys(unix.SYS_FCNTL, 2, unix.F_SETFL, unix.O_WRONLY|unix.O_NONBLOCK),
				sys(unix.SYS_WRITE, 2, 0x1000, 60),
				sys(unix.SYS_EXIT_GROUP, uint64(monitor.ExitSeccomp)),
			} {
				assert.Equal(t, uint32(actAllow), verdictCgo(t, p, cgo, c), "call %d %v in %+v (cgo %v)", c.nr, c.args, p, cgo)
			}
		}
	}
}
