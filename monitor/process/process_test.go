package process

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/tendervm/tender/hypercall"
	"github.com/tendervm/tender/monitor/guestmem"
	"github.com/tendervm/tender/monitor/vcpu"
)

// Guest layout used by every test.
const (
	testMemSize = 4 << 20
	codeAddr    = hypercall.ImageBase // one R+X page
	dataAddr    = codeAddr + 0x1000   // one R+W page
	stackSize   = 0x10000             // R+W at the top of memory
)

func testBoot() vcpu.Boot {
	return vcpu.Boot{
		Regions: []vcpu.Region{
			{Addr: hypercall.BootInfoAddr, Size: 0x1000, Perm: vcpu.Read},
			{Addr: codeAddr, Size: 0x1000, Perm: vcpu.Read | vcpu.Exec},
			{Addr: dataAddr, Size: 0x1000, Perm: vcpu.Read | vcpu.Write},
			{Addr: testMemSize - stackSize, Size: stackSize, Perm: vcpu.Read | vcpu.Write},
		},
		Entry:    codeAddr,
		StackTop: testMemSize,
		BootInfo: hypercall.BootInfoAddr,
	}
}

// lockThread locks the test goroutine to its thread for the test and its
// cleanups, as ptrace requires.
func lockThread(t testing.TB) {
	runtime.LockOSThread()
	t.Cleanup(runtime.UnlockOSThread) // registered first, so it runs last
}

// spawner returns a spawner for the test, closed at its end.
func spawner(t testing.TB) *Spawner {
	s, err := NewSpawner()
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, s.Close()) })
	return s
}

func newMem(t testing.TB) *guestmem.Memory {
	mem, err := guestmem.NewShared(testMemSize)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, mem.Close()) })
	return mem
}

// start loads code at codeAddr and starts a guest on it.
func start(t testing.TB, code []byte) (*guestmem.Memory, *VCPU) {
	t.Helper()
	lockThread(t)
	mem := newMem(t)
	require.NoError(t, mem.Write(codeAddr, code))
	v, err := spawner(t).start(mem, testBoot(), pollFirst)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, v.Close()) })
	return mem, v
}

func run(t testing.TB, v *VCPU) vcpu.Exit {
	t.Helper()
	exit, err := v.Run()
	require.NoError(t, err)
	return exit
}

func TestHypercall(t *testing.T) {
	mem, v := start(t, []byte{
		0x66, 0xba, 0x02, 0x05, // +0x00 mov $0x502, %dx
		0xb8, 0x00, 0x10, 0x10, 0x00, // +0x04 mov $0x101000, %eax
		0xef,                                           // +0x09 out %eax, %dx
		0x48, 0x8b, 0x0c, 0x25, 0x08, 0x10, 0x10, 0x00, // +0x0a mov 0x101008, %rcx
		0x48, 0x89, 0x0c, 0x25, 0x10, 0x10, 0x10, 0x00, // +0x12 mov %rcx, 0x101010
		0x66, 0xba, 0x03, 0x05, // +0x1a mov $0x503, %dx
		0xef,       // +0x1e out %eax, %dx
		0x0f, 0x0b, // +0x1f ud2
	})

	exit := run(t, v)
	assert.Equal(t, vcpu.Exit{Kind: vcpu.ExitHypercall, Nr: 2, Arg: 0x101000, RIP: codeAddr + 0x09}, exit)

	// The monitor's view and the guest's share pages.
	const magic = 0xfeedface12345678
	require.NoError(t, mem.PutUint64(dataAddr+8, magic))
	exit = run(t, v)
	assert.Equal(t, vcpu.Exit{Kind: vcpu.ExitHypercall, Nr: 3, Arg: 0x101000, RIP: codeAddr + 0x1e}, exit)
	got, err := mem.Uint64(dataAddr + 0x10)
	require.NoError(t, err)
	assert.Equal(t, uint64(magic), got)

	// The guest continues after the second out.
	exit = run(t, v)
	assert.Equal(t, vcpu.ExitFault, exit.Kind)
	assert.EqualValues(t, 6, exit.Vector)
	assert.EqualValues(t, codeAddr+0x1f, exit.RIP)
}

// TestBootStart checks that Boot.Start runs before the guest's first
// instruction: the guest runs the code Start writes over a ud2.
func TestBootStart(t *testing.T) {
	lockThread(t)
	mem := newMem(t)
	require.NoError(t, mem.Write(codeAddr, []byte{0x0f, 0x0b})) // ud2
	boot := testBoot()
	boot.Start = func() error {
		return mem.Write(codeAddr, []byte{
			0x66, 0xba, 0x02, 0x05, // mov $0x502, %dx
			0xb8, 0x00, 0x10, 0x10, 0x00, // mov $0x101000, %eax
			0xef, // out %eax, %dx
		})
	}
	v, err := spawner(t).start(mem, boot, pollFirst)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, v.Close()) })
	assert.Equal(t, vcpu.Exit{Kind: vcpu.ExitHypercall, Nr: 2, Arg: 0x101000, RIP: codeAddr + 0x09}, run(t, v))

	boot.Start = func() error { return errors.New("no clock") }
	_, err = spawner(t).start(newMem(t), boot, pollFirst)
	assert.ErrorContains(t, err, "no clock")
}

func TestFaults(t *testing.T) {
	for _, tc := range []struct {
		name   string
		code   []byte
		vector uint8
		rip    uint64
		cr2    uint64
		err    int64 // the error code, or -1 for an exception without one
	}{
		// ud2
		{"ud2", []byte{0x0f, 0x0b}, 6, codeAddr, 0, -1},
		// mov 0x0, %rax
		{"null", []byte{0x48, 0x8b, 0x04, 0x25, 0x00, 0x00, 0x00, 0x00}, 14, codeAddr, 0, 4},
		// movq $1, 0x100000: a write to the read-only code page
		{"write code", []byte{0x48, 0xc7, 0x04, 0x25, 0x00, 0x00, 0x10, 0x00, 0x01, 0x00, 0x00, 0x00}, 14, codeAddr, codeAddr, 7},
		// mov 0x200000, %rax: a read of memory outside every region
		{"unmapped", []byte{0x48, 0x8b, 0x04, 0x25, 0x00, 0x00, 0x20, 0x00}, 14, codeAddr, 0x200000, 4},
		// jmp *%rax with %rax = 0x101000: execution of the data page
		{"exec data", []byte{0xb8, 0x00, 0x10, 0x10, 0x00, 0xff, 0xe0}, 14, dataAddr, dataAddr, 0x15},
		// xor %ecx, %ecx; div %ecx
		{"divide", []byte{0x31, 0xc9, 0xf7, 0xf1}, 0, codeAddr + 2, 0, -1},
		// movl $0x1d80, 0x101000 (MXCSR with divide-by-zero unmasked)
		// ldmxcsr 0x101000; mov $0x3f800000, %eax (1.0f); movd %eax, %xmm0
		// xorps %xmm1, %xmm1; divss %xmm1, %xmm0
		{"simd", []byte{
			0xc7, 0x04, 0x25, 0x00, 0x10, 0x10, 0x00, 0x80, 0x1d, 0x00, 0x00, // +0x00
			0x0f, 0xae, 0x14, 0x25, 0x00, 0x10, 0x10, 0x00, // +0x0b
			0xb8, 0x00, 0x00, 0x80, 0x3f, // +0x13
			0x66, 0x0f, 0x6e, 0xc0, // +0x18
			0x0f, 0x57, 0xc9, // +0x1c
			0xf3, 0x0f, 0x5e, 0xc1, // +0x1f
		}, 19, codeAddr + 0x1f, 0, -1},
		// movw $0x37b, 0x101000 (x87 control word with zero-divide unmasked)
		// fldcw 0x101000; fld1; fldz; fdivp (1/0); fwait, which raises it
		{"x87", []byte{
			0x66, 0xc7, 0x04, 0x25, 0x00, 0x10, 0x10, 0x00, 0x7b, 0x03, // +0x00
			0xd9, 0x2c, 0x25, 0x00, 0x10, 0x10, 0x00, // +0x0a
			0xd9, 0xe8, // +0x11
			0xd9, 0xee, // +0x13
			0xde, 0xf9, // +0x15
			0x9b, // +0x17
		}, 16, codeAddr + 0x17, 0, -1},
		// pushf; orl $0x40000, (%rsp); popf (set EFLAGS.AC)
		// mov 0x101001, %eax: a misaligned load
		{"alignment", []byte{
			0x9c,                                     // +0x00
			0x81, 0x0c, 0x24, 0x00, 0x00, 0x04, 0x00, // +0x01
			0x9d,                                     // +0x08
			0x8b, 0x04, 0x25, 0x01, 0x10, 0x10, 0x00, // +0x09
		}, 17, codeAddr + 9, 0, 0},
		// pushf; orl $0x100, (%rsp); popf (set EFLAGS.TF); nop; the trap
		// comes after the nop
		{"single step", []byte{
			0x9c,                                     // +0x00
			0x81, 0x0c, 0x24, 0x00, 0x01, 0x00, 0x00, // +0x01
			0x9d, // +0x08
			0x90, // +0x09
		}, 1, codeAddr + 10, 0, -1},
		// int3
		{"int3", []byte{0xcc}, 3, codeAddr + 1, 0, -1},
		// hlt: privileged at CPL 3
		{"hlt", []byte{0xf4}, 13, codeAddr, 0, 0},
		// mov (%rax), %rax with %rax = 0x8000000000000000: non-canonical
		{"non-canonical", []byte{0x48, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0x80, 0x48, 0x8b, 0x00}, 13, codeAddr + 10, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, v := start(t, tc.code)
			exit := run(t, v)
			want := vcpu.Exit{Kind: vcpu.ExitFault, Vector: tc.vector, RIP: tc.rip, CR2: tc.cr2}
			if tc.err >= 0 {
				want.ErrorCode, want.HasErrorCode = uint64(tc.err), true
			}
			assert.Equal(t, want, exit)
			if tc.vector != 1 && tc.vector != 3 {
				// A fault, unlike a trap, runs the instruction again.
				assert.Equal(t, exit, run(t, v))
			}
		})
	}
}

func TestBadIO(t *testing.T) {
	_, v := start(t, []byte{
		0xe6, 0x80, // +0x00 out %al, $0x80
	})
	assert.Equal(t, vcpu.Exit{Kind: vcpu.ExitBadIO, Port: 0x80, Size: 1, Out: true, RIP: codeAddr}, run(t, v))
}

func TestIOForms(t *testing.T) {
	const mov502 = "\x66\xba\x02\x05" // mov $0x502, %dx
	// mov $0x101000, %eax; mov %rax, %rsi; mov %eax, (%rax): outs would
	// output the value EAX holds
	const mov101000 = "\xb8\x00\x10\x10\x00\x48\x89\xc6\x89\x00"
	for _, tc := range []struct {
		name string
		code string
		want vcpu.Exit
	}{
		{"in imm8", "\xe4\x60", // in $0x60, %al
			vcpu.Exit{Kind: vcpu.ExitBadIO, Port: 0x60, Size: 1, RIP: codeAddr}},
		{"in eax dx", mov502 + "\xed", // in (%dx), %eax
			vcpu.Exit{Kind: vcpu.ExitBadIO, Port: 0x502, Size: 4, RIP: codeAddr + 4}},
		{"out ax dx", mov502 + "\x66\xef", // out %ax, (%dx): 16 bits is no hypercall
			vcpu.Exit{Kind: vcpu.ExitBadIO, Port: 0x502, Size: 2, Out: true, RIP: codeAddr + 4}},
		{"outsb", mov502 + "\x6e", // outsb: a string instruction is no hypercall
			vcpu.Exit{Kind: vcpu.ExitBadIO, Port: 0x502, Size: 1, Out: true, Str: true, RIP: codeAddr + 4}},
		{"outsl", mov502 + mov101000 + "\x6f", // outsl: not even with 4 bytes that equal EAX
			vcpu.Exit{Kind: vcpu.ExitBadIO, Port: 0x502, Size: 4, Out: true, Str: true, RIP: codeAddr + 14}},
		{"rep outsl, count 1", mov502 + mov101000 + "\xb9\x01\x00\x00\x00\xf3\x6f", // mov $1, %ecx; rep outsl
			vcpu.Exit{Kind: vcpu.ExitBadIO, Port: 0x502, Size: 4, Out: true, Str: true, RIP: codeAddr + 19}},
		{"rep outsl, count 4", mov502 + mov101000 + "\xb9\x04\x00\x00\x00\xf3\x6f", // mov $4, %ecx; rep outsl
			vcpu.Exit{Kind: vcpu.ExitBadIO, Port: 0x502, Size: 4, Out: true, Str: true, RIP: codeAddr + 19}},
		{"rep insl", mov502 + mov101000 + "\x48\x89\xf7\xb9\x04\x00\x00\x00\xf3\x6d", // mov %rsi, %rdi; mov $4, %ecx; rep insl
			vcpu.Exit{Kind: vcpu.ExitBadIO, Port: 0x502, Size: 4, Str: true, RIP: codeAddr + 22}},
		{"outb", mov502 + "\xee", // out %al, (%dx)
			vcpu.Exit{Kind: vcpu.ExitBadIO, Port: 0x502, Size: 1, Out: true, RIP: codeAddr + 4}},
		{"out imm8 eax", "\xe7\x05", // out %eax, $0x05: port below the range
			vcpu.Exit{Kind: vcpu.ExitBadIO, Port: 0x05, Size: 4, Out: true, RIP: codeAddr}},
		{"last port", "\x66\xba\x1f\x05\xef", // mov $0x51f, %dx; out %eax, (%dx)
			vcpu.Exit{Kind: vcpu.ExitHypercall, Nr: hypercall.Count - 1, RIP: codeAddr + 4}},
		{"past the range", "\x66\xba\x20\x05\xef", // mov $0x520, %dx; out %eax, (%dx)
			vcpu.Exit{Kind: vcpu.ExitBadIO, Port: 0x520, Size: 4, Out: true, RIP: codeAddr + 4}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, v := start(t, []byte(tc.code))
			assert.Equal(t, tc.want, run(t, v))
		})
	}
}

// TestPrefixedHypercall checks that RIP skips the whole out instruction,
// prefixes included.
func TestPrefixedHypercall(t *testing.T) {
	_, v := start(t, []byte{
		0x66, 0xba, 0x01, 0x05, // +0x00 mov $0x501, %dx
		0xf3, 0x40, 0xef, // +0x04 rep rex out %eax, (%dx)
		0x0f, 0x0b, // +0x07 ud2
	})
	assert.Equal(t, vcpu.Exit{Kind: vcpu.ExitHypercall, Nr: 1, RIP: codeAddr + 4}, run(t, v))
	exit := run(t, v)
	assert.EqualValues(t, 6, exit.Vector)
	assert.EqualValues(t, codeAddr+7, exit.RIP)
}

func TestSyscall(t *testing.T) {
	_, v := start(t, []byte{
		0xb8, 0x27, 0x00, 0x00, 0x00, // +0x00 mov $39, %eax (getpid)
		0x0f, 0x05, // +0x05 syscall
	})
	assert.Equal(t, vcpu.Exit{Kind: vcpu.ExitSyscall, Reason: 39, RIP: codeAddr + 5}, run(t, v))
	_, err := v.Run()
	assert.ErrorContains(t, err, "the guest attempted a system call and cannot continue")
}

// TestOtherSyscalls checks the other instructions that ask a kernel for a
// system call; the KVM backend reports them the same way.
func TestOtherSyscalls(t *testing.T) {
	for name, code := range map[string][]byte{
		"int 0x80": {0xb8, 0x01, 0x00, 0x00, 0x00, 0xcd, 0x80}, // mov $1, %eax; int $0x80
		"sysenter": {0xb8, 0x01, 0x00, 0x00, 0x00, 0x0f, 0x34}, // mov $1, %eax; sysenter
	} {
		t.Run(name, func(t *testing.T) {
			_, v := start(t, code)
			assert.Equal(t, vcpu.Exit{Kind: vcpu.ExitSyscall, Reason: 1, RIP: codeAddr + 5}, run(t, v))
		})
	}
}

// TestDied: a guest process killed by SIGSYS met the seccomp filter of a
// confined monitor, which it inherited; one killed by a fault signal had a
// fault the handler could not take (a triple fault, with the signal; core
// dumped or not); any other death stays unknown.
func TestDied(t *testing.T) {
	v := &VCPU{}
	assert.Equal(t, vcpu.Exit{Kind: vcpu.ExitSyscall, Reason: vcpu.SyscallUnknown}, v.died(unix.WaitStatus(unix.SIGSYS)))
	assert.ErrorContains(t, v.ended, "killed by bad system call")
	for _, sig := range []unix.Signal{unix.SIGSEGV, unix.SIGBUS, unix.SIGILL, unix.SIGFPE, unix.SIGTRAP} {
		for _, ws := range []unix.WaitStatus{unix.WaitStatus(sig), unix.WaitStatus(sig) | 0x80} {
			assert.Equal(t, vcpu.Exit{Kind: vcpu.ExitTripleFault, Reason: uint64(sig)}, v.died(ws), "%v", ws)
			assert.ErrorContains(t, v.ended, "killed by "+sig.String()+", a fault the stub's handler could not take")
		}
	}
	assert.Equal(t, vcpu.Exit{Kind: vcpu.ExitUnknown, Reason: uint64(unix.SIGTERM)}, v.died(unix.WaitStatus(unix.SIGTERM)))
	assert.Equal(t, vcpu.Exit{Kind: vcpu.ExitUnknown, Reason: 3 << 8}, v.died(unix.WaitStatus(3<<8)))
	v.kicked.Store(true)
	assert.Equal(t, vcpu.Exit{Kind: vcpu.ExitKicked}, v.died(unix.WaitStatus(unix.SIGKILL)))
}

// TestStubSyscall checks that jumping to the stub's own syscall gadget, the
// one New used, is trapped as well.
func TestStubSyscall(t *testing.T) {
	_, v := start(t, []byte{
		0x48, 0xb9, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x7e, 0x00, 0x00, // +0x00 movabs $0x7e00000000c0, %rcx
		0xb8, 0x3c, 0x00, 0x00, 0x00, // +0x0a mov $60, %eax (exit)
		0xff, 0xe1, // +0x0f jmp *%rcx
	})
	assert.Equal(t, vcpu.Exit{Kind: vcpu.ExitSyscall, Reason: 60, RIP: stubBase + stubSyscall}, run(t, v))
}

func TestKick(t *testing.T) {
	_, v := start(t, []byte{
		0xeb, 0xfe, // +0x00 1: jmp 1b
	})
	go func() {
		time.Sleep(50 * time.Millisecond)
		v.Kick()
	}()
	begin := time.Now()
	assert.Equal(t, vcpu.ExitKicked, run(t, v).Kind)
	// A hang check with room for a busy 2-core host, not a latency
	// measurement.
	assert.Less(t, time.Since(begin), 1500*time.Millisecond)
	assert.Equal(t, vcpu.ExitKicked, run(t, v).Kind, "a kick is sticky")
}

// TestKickRace kicks a guest that is busy making hypercalls at arbitrary
// moments: Run must report ExitKicked, never an error.
func TestKickRace(t *testing.T) {
	lockThread(t)
	mem := newMem(t)
	sp := spawner(t)
	require.NoError(t, mem.Write(codeAddr, loopCode))
	for i := range 50 {
		v, err := sp.start(mem, testBoot(), pollFirst)
		require.NoError(t, err)
		go func() {
			time.Sleep(time.Duration(i*20) * time.Microsecond)
			v.Kick()
		}()
		for {
			exit, err := v.Run()
			require.NoError(t, err)
			if exit.Kind == vcpu.ExitKicked {
				break
			}
			require.Equal(t, vcpu.ExitHypercall, exit.Kind)
		}
		require.NoError(t, v.Close())
	}
}

func TestKickBeforeRun(t *testing.T) {
	_, v := start(t, []byte{0xeb, 0xfe}) // jmp .
	v.Kick()
	assert.Equal(t, vcpu.ExitKicked, run(t, v).Kind)
	require.NoError(t, v.Close())
	v.Kick() // harmless after Close
}

// TestForeignSignals checks that signals sent by other processes are
// discarded, even those that look like faults, while SIGKILL ends the guest.
func TestForeignSignals(t *testing.T) {
	_, v := start(t, []byte{0xeb, 0xfe}) // jmp .
	go func() {
		for _, sig := range []unix.Signal{unix.SIGSEGV, unix.SIGTERM, unix.SIGSTOP, unix.SIGSYS, unix.SIGINT} {
			time.Sleep(10 * time.Millisecond)
			assert.NoError(t, unix.Kill(v.pid, sig))
		}
		time.Sleep(50 * time.Millisecond)
		assert.NoError(t, unix.Kill(v.pid, unix.SIGKILL))
	}()
	exit := run(t, v)
	assert.Equal(t, vcpu.ExitUnknown, exit.Kind)
	ws := unix.WaitStatus(exit.Reason)
	assert.True(t, ws.Signaled())
	assert.Equal(t, unix.SIGKILL, ws.Signal())
	_, err := v.Run()
	assert.ErrorContains(t, err, "the guest process has ended")
}

func TestInitialRegisters(t *testing.T) {
	mem, v := start(t, []byte{
		0x48, 0x89, 0x3c, 0x25, 0x00, 0x10, 0x10, 0x00, // +0x00 mov %rdi, 0x101000
		0x48, 0x89, 0x24, 0x25, 0x08, 0x10, 0x10, 0x00, // +0x08 mov %rsp, 0x101008
		0x9c,                                     // +0x10 pushf
		0x8f, 0x04, 0x25, 0x10, 0x10, 0x10, 0x00, // +0x11 pop 0x101010
		0x48, 0x89, 0x1c, 0x25, 0x18, 0x10, 0x10, 0x00, // +0x18 mov %rbx, 0x101018
		0x66, 0xba, 0x01, 0x05, // +0x20 mov $0x501, %dx
		0xef, // +0x24 out %eax, (%dx)
	})
	assert.Equal(t, vcpu.Exit{Kind: vcpu.ExitHypercall, Nr: 1, RIP: codeAddr + 0x24}, run(t, v))
	for _, c := range []struct {
		addr, want uint64
	}{
		{dataAddr, hypercall.BootInfoAddr}, // rdi
		{dataAddr + 8, testMemSize},        // rsp
		{dataAddr + 0x10, 0x202},           // rflags
		{dataAddr + 0x18, 0},               // rbx
	} {
		got, err := mem.Uint64(c.addr)
		require.NoError(t, err)
		assert.Equal(t, c.want, got, "at %#x", c.addr)
	}
}

// TestSandbox inspects the tracee from outside: it has no file descriptors,
// a seccomp filter, no_new_privs, and the guest regions mapped as asked.
func TestSandbox(t *testing.T) {
	_, v := start(t, []byte{0xeb, 0xfe})
	proc := fmt.Sprintf("/proc/%d/", v.pid)

	fds, err := os.ReadDir(proc + "fd")
	require.NoError(t, err)
	assert.Empty(t, fds)

	status, err := os.ReadFile(proc + "status")
	require.NoError(t, err)
	assert.Regexp(t, `(?m)^Seccomp:\s+2$`, string(status))
	assert.Regexp(t, `(?m)^NoNewPrivs:\s+1$`, string(status))

	maps, err := os.ReadFile(proc + "maps")
	require.NoError(t, err)
	assert.NotContains(t, string(maps), "7e0000002000-", "the region table is unmapped after set-up")
	for _, want := range []string{
		"00010000-00011000 r--s 00010000 ",
		"00100000-00101000 r-xs 00100000 ",
		"00101000-00102000 rw-s 00101000 ",
		"003f0000-00400000 rw-s 003f0000 ",
		"7e0000000000-7e0000001000 r-xp 00000000 ",
		"7e0000010000-7e0000020000 rw-p 00000000 ",
	} {
		assert.Contains(t, string(maps), want)
	}
}

// TestAnyThread serves one guest from goroutines on different threads, as a
// pool does when its callers drive their instance.
func TestAnyThread(t *testing.T) {
	_, v := start(t, loopCode)
	for range 20 {
		done := make(chan vcpu.Exit)
		go func() {
			runtime.LockOSThread() // a thread of its own, which then exits
			exit, err := v.Run()
			assert.NoError(t, err)
			done <- exit
		}()
		assert.Equal(t, vcpu.ExitHypercall, (<-done).Kind)
	}
	assert.Equal(t, vcpu.ExitHypercall, run(t, v).Kind)
}

func TestNewErrors(t *testing.T) {
	lockThread(t)
	anon, err := guestmem.New(testMemSize)
	require.NoError(t, err)
	defer anon.Close()
	_, err = New(spawner(t), anon, testBoot())
	assert.ErrorContains(t, err, "NewShared")

	mem := newMem(t)
	sp := spawner(t)
	for _, c := range []struct {
		name    string
		regions []vcpu.Region
		want    string
	}{
		{"unaligned", []vcpu.Region{{Addr: 0x100800, Size: 0x1000, Perm: vcpu.Read}}, "region 0 [0x100800, +0x1000) is empty or not page-aligned"},
		{"empty", []vcpu.Region{{Addr: 0x100000, Perm: vcpu.Read}}, "region 0 [0x100000, +0x0) is empty or not page-aligned"},
		{"outside", []vcpu.Region{{Addr: testMemSize - 0x1000, Size: 0x2000, Perm: vcpu.Read}}, "region 0 [0x3ff000, +0x2000) leaves guest memory of 0x400000 bytes"},
		{"overlapping", []vcpu.Region{{Addr: 0x100000, Size: 0x2000, Perm: vcpu.Read}, {Addr: 0x101000, Size: 0x1000, Perm: vcpu.Read}}, "region 1 [0x101000, +0x1000) overlaps or precedes the one before"},
		{"bad perm", []vcpu.Region{{Addr: 0x100000, Size: 0x1000, Perm: 0x80}}, "region 0 has unknown permissions 0x80"},
	} {
		_, err := New(sp, mem, vcpu.Boot{Regions: c.regions, Entry: codeAddr})
		assert.ErrorContains(t, err, c.want, c.name)
	}
}

// openFDs counts this process's open file descriptors.
func openFDs(t testing.TB) int {
	fds, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	return len(fds)
}

// children lists the processes whose parent is this process.
func children(t testing.TB) []int {
	dirs, err := filepath.Glob("/proc/[0-9]*/stat")
	require.NoError(t, err)
	var kids []int
	for _, path := range dirs {
		stat, err := os.ReadFile(path)
		if err != nil {
			continue // gone meanwhile
		}
		// pid (comm) state ppid ...; comm may contain spaces and parentheses.
		fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		if len(fields) > 1 && fields[1] == strconv.Itoa(os.Getpid()) {
			pid, _ := strconv.Atoi(strings.Fields(string(stat))[0])
			kids = append(kids, pid)
		}
	}
	return kids
}

func TestNoLeaks(t *testing.T) {
	lockThread(t)
	mem := newMem(t)
	sp := spawner(t)
	require.NoError(t, mem.Write(codeAddr, []byte{
		0x66, 0xba, 0x03, 0x05, // mov $0x503, %dx
		0xef, // out %eax, (%dx)
	}))
	cycle := func() {
		v, err := sp.start(mem, testBoot(), pollFirst)
		require.NoError(t, err)
		exit, err := v.Run()
		require.NoError(t, err)
		require.Equal(t, vcpu.ExitHypercall, exit.Kind)
		require.NoError(t, v.Close())
		require.NoError(t, v.Close(), "Close is idempotent")
	}
	cycle() // let the runtime open whatever it opens once
	fds := openFDs(t)
	for range 200 {
		cycle()
	}
	assert.Equal(t, fds, openFDs(t))
	assert.Empty(t, children(t))
}

// TestStubSyscalls: the addresses the filter and decode know the stub's
// system calls by are just past the handler's syscall instructions, each
// after the mov of its number.
func TestStubSyscalls(t *testing.T) {
	for _, tc := range []struct {
		ret uint64
		nr  byte
	}{{handlerSyscallRet, handlerNr}, {handlerAltstackRet, unix.SYS_SIGALTSTACK}} {
		off := tc.ret - stubBase - stubHandler
		assert.Equal(t, []byte{0xb8, tc.nr, 0, 0, 0, 0x0f, 0x05}, handlerCode[off-7:off], "%#x", tc.ret)
	}
	off := restorerRet - stubBase - stubRestorer
	assert.Equal(t, []byte{0xb8, unix.SYS_RT_SIGRETURN, 0, 0, 0, 0x0f, 0x05}, restorerCode[off-7:off])
}

func TestStubELF(t *testing.T) {
	f, err := elf.NewFile(bytes.NewReader(stubELF()))
	require.NoError(t, err)
	assert.Equal(t, elf.ET_EXEC, f.Type)
	assert.Equal(t, elf.EM_X86_64, f.Machine)
	assert.EqualValues(t, stubBase+stubEntry, f.Entry)
	require.Len(t, f.Progs, 3)
	load := f.Progs[0]
	assert.Equal(t, elf.PT_LOAD, load.Type)
	assert.Equal(t, elf.PF_R|elf.PF_X, load.Flags)
	assert.EqualValues(t, stubBase, load.Vaddr)
	assert.EqualValues(t, len(stubELF()), load.Filesz)
	table := f.Progs[1]
	assert.Equal(t, elf.PT_LOAD, table.Type)
	assert.Equal(t, elf.PF_R|elf.PF_W, table.Flags)
	assert.EqualValues(t, stubTable, table.Vaddr)
	assert.Zero(t, table.Filesz)
	assert.Equal(t, elf.PT_GNU_STACK, f.Progs[2].Type)
	assert.Equal(t, elf.PF_R|elf.PF_W, f.Progs[2].Flags)
}

// loopCode issues hypercall 1 forever.
var loopCode = []byte{
	0x66, 0xba, 0x01, 0x05, // +0x00 mov $0x501, %dx
	0xef,       // +0x04 1: out %eax, (%dx)
	0xeb, 0xfd, // +0x05 jmp 1b
}

// BenchmarkHypercall measures one hypercall round trip: resume the guest,
// trap its out, decode it.
func BenchmarkHypercall(b *testing.B) {
	_, v := start(b, loopCode)
	b.ResetTimer()
	for range b.N {
		exit, err := v.Run()
		if err != nil || exit.Kind != vcpu.ExitHypercall {
			b.Fatalf("exit %v, error %v", exit.Kind, err)
		}
	}
}

// BenchmarkStartStop measures the life of a guest process: New, the run to
// the first exit, Close.
func BenchmarkStartStop(b *testing.B) {
	lockThread(b)
	mem := newMem(b)
	sp := spawner(b)
	require.NoError(b, mem.Write(codeAddr, loopCode))
	b.ResetTimer()
	for range b.N {
		v, err := sp.start(mem, testBoot(), pollFirst)
		if err != nil {
			b.Fatal(err)
		}
		if exit, err := v.Run(); err != nil || exit.Kind != vcpu.ExitHypercall {
			b.Fatalf("exit %v, error %v", exit.Kind, err)
		}
		if err := v.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

func TestExecutable(t *testing.T) {
	v := &VCPU{regions: []vcpu.Region{
		{Addr: 0x1000, Size: 0x1000, Perm: vcpu.Read | vcpu.Exec},
		{Addr: 0x2000, Size: 0x1000, Perm: vcpu.Read | vcpu.Exec},
		{Addr: 0x3000, Size: 0x1000, Perm: vcpu.Read | vcpu.Write},
		{Addr: 0x5000, Size: 0x1000, Perm: vcpu.Read | vcpu.Exec},
	}}
	for _, tc := range []struct {
		addr, n uint64
		want    bool
	}{
		{0x1000, 1, true},
		{0x1fff, 1, true},
		{0x1fff, 2, true}, // straddles two executable regions
		{0x2fff, 1, true},
		{0x2fff, 2, false}, // runs into a data region
		{0x3000, 1, false},
		{0x4fff, 2, false}, // starts in a hole
		{0x5fff, 2, false}, // runs off the end
		{0x0fff, 1, false},
		{0x6000, 1, false},
	} {
		assert.Equal(t, tc.want, v.executable(tc.addr, tc.n), "[%#x, +%d)", tc.addr, tc.n)
	}
}

// TestFilter runs the seccomp program on system calls from everywhere: only
// rt_sigreturn from the restorer, close through the gadget and sigaltstack
// of the stub's own stack from the handler's reset pass.
func TestFilter(t *testing.T) {
	vm, err := bpf.NewVM(filter())
	require.NoError(t, err)
	// struct seccomp_data as the filter sees it: the kernel loads native
	// 32-bit words, x/net/bpf big-endian ones, so each word is stored
	// big-endian at its little-endian place (the low half of ip first).
	data := func(nr int32, arch uint32, ip uint64) []byte {
		b := make([]byte, 64)
		binary.BigEndian.PutUint32(b[0:], uint32(nr))
		binary.BigEndian.PutUint32(b[4:], arch)
		binary.BigEndian.PutUint32(b[8:], uint32(ip))
		binary.BigEndian.PutUint32(b[12:], uint32(ip>>32))
		return b
	}
	const i386 = 0x40000003 // AUDIT_ARCH_I386
	// sigaltstack(arg0, ...) from the handler's reset.
	altstack := func(arg0 uint64) []byte {
		b := data(unix.SYS_SIGALTSTACK, unix.AUDIT_ARCH_X86_64, handlerAltstackRet)
		binary.BigEndian.PutUint32(b[16:], uint32(arg0))
		binary.BigEndian.PutUint32(b[20:], uint32(arg0>>32))
		return b
	}
	for _, tc := range []struct {
		name string
		data []byte
		want uint32
	}{
		{"sigaltstack of the stub's stack from the reset", altstack(stubBase + stubAltstack), unix.SECCOMP_RET_ALLOW},
		{"sigaltstack of another stack from the reset", altstack(dataAddr), unix.SECCOMP_RET_USER_NOTIF},
		{"sigaltstack of the stub's low half from the reset", altstack((stubBase + stubAltstack) & 0xffffffff), unix.SECCOMP_RET_USER_NOTIF},
		{"sigaltstack from the report", data(unix.SYS_SIGALTSTACK, unix.AUDIT_ARCH_X86_64, handlerSyscallRet), unix.SECCOMP_RET_USER_NOTIF},
		{"getppid from the reset", data(handlerNr, unix.AUDIT_ARCH_X86_64, handlerAltstackRet), unix.SECCOMP_RET_USER_NOTIF},
		{"sigreturn from the reset", data(unix.SYS_RT_SIGRETURN, unix.AUDIT_ARCH_X86_64, handlerAltstackRet), unix.SECCOMP_RET_USER_NOTIF},
		{"i386 sigaltstack from the reset", data(186, i386, handlerAltstackRet), unix.SECCOMP_RET_USER_NOTIF},
	} {
		got, err := vm.Run(tc.data)
		require.NoError(t, err)
		assert.Equal(t, tc.want, uint32(got), tc.name)
	}
	for _, tc := range []struct {
		name string
		nr   int32
		arch uint32
		ip   uint64
		want uint32
	}{
		{"sigreturn from the restorer", unix.SYS_RT_SIGRETURN, unix.AUDIT_ARCH_X86_64, restorerRet, unix.SECCOMP_RET_ALLOW},
		{"close through the gadget", unix.SYS_CLOSE, unix.AUDIT_ARCH_X86_64, gadgetRet, unix.SECCOMP_RET_ALLOW},
		{"the handler's report", handlerNr, unix.AUDIT_ARCH_X86_64, handlerSyscallRet, unix.SECCOMP_RET_USER_NOTIF},
		{"sigreturn from the guest", unix.SYS_RT_SIGRETURN, unix.AUDIT_ARCH_X86_64, codeAddr + 2, unix.SECCOMP_RET_USER_NOTIF},
		{"sigreturn through the gadget", unix.SYS_RT_SIGRETURN, unix.AUDIT_ARCH_X86_64, gadgetRet, unix.SECCOMP_RET_USER_NOTIF},
		{"close from the guest", unix.SYS_CLOSE, unix.AUDIT_ARCH_X86_64, codeAddr + 2, unix.SECCOMP_RET_USER_NOTIF},
		{"close from the restorer", unix.SYS_CLOSE, unix.AUDIT_ARCH_X86_64, restorerRet, unix.SECCOMP_RET_USER_NOTIF},
		{"mmap through the gadget", unix.SYS_MMAP, unix.AUDIT_ARCH_X86_64, gadgetRet, unix.SECCOMP_RET_USER_NOTIF},
		{"same low half, other page", unix.SYS_RT_SIGRETURN, unix.AUDIT_ARCH_X86_64, restorerRet & 0xffffffff, unix.SECCOMP_RET_USER_NOTIF},
		{"i386 close through the gadget", 6, i386, gadgetRet, unix.SECCOMP_RET_USER_NOTIF},
		{"i386 number 15 from the restorer", unix.SYS_RT_SIGRETURN, i386, restorerRet, unix.SECCOMP_RET_USER_NOTIF},
		{"x32 sigreturn", unix.SYS_RT_SIGRETURN | 0x40000000, unix.AUDIT_ARCH_X86_64, restorerRet, unix.SECCOMP_RET_USER_NOTIF},
	} {
		got, err := vm.Run(data(tc.nr, tc.arch, tc.ip))
		require.NoError(t, err)
		assert.Equal(t, tc.want, uint32(got), tc.name)
	}
}

// pollFirst makes the tests' guests poll before every receive, as on
// kernels before Linux 6.11.
var pollFirst bool

// TestPollFirst runs the tests of exits, kicks and deaths again the way
// kernels before Linux 6.11 need (CI's emulated KVM machine runs 6.1, where
// this is the only way).
func TestPollFirst(t *testing.T) {
	pollFirst = true
	defer func() { pollFirst = false }()
	for name, test := range map[string]func(*testing.T){
		"Hypercall": TestHypercall, "Faults": TestFaults, "Syscall": TestSyscall,
		"Kick": TestKick, "KickRace": TestKickRace, "KickBeforeRun": TestKickBeforeRun,
		"ForeignSignals": TestForeignSignals, "NoLeaks": TestNoLeaks, "AnyThread": TestAnyThread,
	} {
		t.Run(name, test)
	}
}

// TestSpawnerClose checks that a guest does not outlive its spawner, and
// that a closed spawner starts nothing.
func TestSpawnerClose(t *testing.T) {
	mem := newMem(t)
	require.NoError(t, mem.Write(codeAddr, []byte{0xeb, 0xfe})) // jmp .
	sp, err := NewSpawner()
	require.NoError(t, err)
	v, err := New(sp, mem, testBoot())
	require.NoError(t, err)
	defer v.Close()
	require.NoError(t, sp.Close())
	assert.Equal(t, vcpu.ExitKicked, run(t, v).Kind)
	_, err = New(sp, mem, testBoot())
	assert.ErrorContains(t, err, "spawner closed")
	assert.NoError(t, sp.Close(), "Close is idempotent")
}

// TestSpawnerCloseWhileRunning: guests running when their spawner closes
// die with its thread, and their Run reports the kick, never a crash, however
// the death and the Run race.
func TestSpawnerCloseWhileRunning(t *testing.T) {
	lockThread(t)
	for range 30 {
		mem := newMem(t)
		require.NoError(t, mem.Write(codeAddr, []byte{0xeb, 0xfe})) // jmp .
		sp, err := NewSpawner()
		require.NoError(t, err)
		v, err := New(sp, mem, testBoot())
		require.NoError(t, err)
		exits := make(chan vcpu.Exit, 1)
		go func() {
			x, err := v.Run()
			assert.NoError(t, err)
			exits <- x
		}()
		require.NoError(t, sp.Close())
		assert.Equal(t, vcpu.ExitKicked, (<-exits).Kind)
		require.NoError(t, v.Close())
	}
}

// TestStubCode assembles the stub's machine code from testdata and compares
// it with the bytes in stub.go. It needs as and objcopy (binutils, which
// .ci/run installs and building the guests needs too).
func TestStubCode(t *testing.T) {
	for _, tool := range []string{"as", "objcopy"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found (install binutils): cannot check the stub's code against its source", tool)
		}
	}
	for src, code := range map[string][]byte{
		"handler.S":  handlerCode,
		"restorer.S": restorerCode,
		"setup.S":    setupCode,
	} {
		obj, bin := filepath.Join(t.TempDir(), "o"), filepath.Join(t.TempDir(), "bin")
		out, err := exec.Command("as", "-o", obj, filepath.Join("testdata", src)).CombinedOutput()
		require.NoError(t, err, "%s", out)
		out, err = exec.Command("objcopy", "-O", "binary", "-j", ".text", obj, bin).CombinedOutput()
		require.NoError(t, err, "%s", out)
		want, err := os.ReadFile(bin)
		require.NoError(t, err)
		assert.Equal(t, want, code, "%s: assemble it and copy the bytes into stub.go", src)
	}
}

// FuzzDecode feeds decode notifications a hostile guest could forge (it can
// jump to the handler's system call with any registers) or that no guest
// could: decode must never panic, and must report a hypercall only for an
// out instruction to a hypercall port in executable guest memory.
func FuzzDecode(f *testing.F) {
	mem := newMem(f)
	require.NoError(f, mem.Write(codeAddr, []byte{0x66, 0xba, 0x02, 0x05, 0xef, 0xe6, 0x80, 0x0f, 0x0b}))
	require.NoError(f, mem.Write(dataAddr, []byte{0xef}))
	v := &VCPU{mem: mem, regions: testBoot().Regions}
	args := func(signo uint32, code int32, trapno, errCode uint32) (uint64, uint64) {
		return uint64(uint32(code))<<32 | uint64(signo), uint64(trapno)<<48 | uint64(errCode&0xffff)
	}
	seed := func(nr int32, arch uint32, ip uint64, signo uint32, code int32, trapno, errCode uint32, addr, rip, rax, rdx uint64) {
		a0, a1 := args(signo, code, trapno, errCode)
		f.Add(nr, arch, ip, a0, a1, addr, rip, rax, rdx)
	}
	const arch = unix.AUDIT_ARCH_X86_64
	seed(handlerNr, arch, handlerSyscallRet, 11, 0x80, 13, 0, 0, codeAddr+4, 0x101000, 0x502) // a hypercall
	seed(handlerNr, arch, handlerSyscallRet, 11, 0x80, 13, 0, 0, dataAddr, 0x101000, 0x502)   // out in a data page
	seed(handlerNr, arch, handlerSyscallRet, 11, 0x80, 13, 0, 0, codeAddr+5, 0, 0)            // out to port 0x80
	seed(handlerNr, arch, handlerSyscallRet, 11, 1, 14, 4, 0, codeAddr, 0, 0)                 // page fault
	seed(handlerNr, arch, handlerSyscallRet, 11, 0x80, 13, 0, 0, testMemSize-1, 0, 0x502)     // RIP at the end of memory
	seed(handlerNr, arch, handlerSyscallRet, 11, 0x80, 13, 0, 0, ^uint64(0), 0, 0x502)        // RIP nowhere
	seed(handlerNr, arch, handlerSyscallRet, 4, -6, 6, 0, 0, codeAddr, 0, 0)                  // tkill'd SIGILL
	seed(handlerNr, arch, handlerSyscallRet, 99, 1, 200, 0, 0, codeAddr, 0, 0)                // no such signal
	seed(unix.SYS_GETPID, arch, codeAddr+2, 0, 0, 0, 0, 0, 0, 0, 0)                           // the guest's own call
	seed(handlerNr, 0x40000003, handlerSyscallRet, 11, 0x80, 13, 0, 0, codeAddr+4, 0, 0x502)  // i386
	f.Fuzz(func(t *testing.T, nr int32, arch uint32, ip, a0, a1, addr, rip, rax, rdx uint64) {
		v.ended, v.skip = nil, 0
		v.notif = seccompNotif{Nr: nr, Arch: arch, IP: ip, Args: [6]uint64{a0, a1, addr, rip, rax, rdx}}
		exit, ok := v.decode()
		if !ok {
			return
		}
		switch exit.Kind {
		case vcpu.ExitHypercall:
			require.True(t, v.executable(exit.RIP, v.skip), "hypercall at %#x", exit.RIP)
			require.Less(t, exit.Nr, uint32(hypercall.Count))
			require.LessOrEqual(t, exit.Arg, uint64(math.MaxUint32))
		case vcpu.ExitSyscall:
			require.ErrorContains(t, v.ended, "attempted a system call")
		case vcpu.ExitFault, vcpu.ExitBadIO:
			require.Less(t, exit.Vector, uint8(32))
		default:
			t.Fatalf("decode returned %v", exit.Kind)
		}
	})
}
