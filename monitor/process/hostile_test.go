package process

import (
	"encoding/binary"
	"fmt"
	"os"
	"regexp"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/tendervm/tender/monitor/vcpu"
)

// Guests that attack the stub: its page is readable and executable in the
// guest process, its signal stack writable, and the filter lets
// rt_sigreturn through from its restorer, so a guest can forge an
// exception report (a jump to the handler's system call with registers of
// its choosing) and set its own signal mask and signal stack (a jump to
// the restorer with RSP at a ucontext of its making).

// le64 is v in little-endian order, for an instruction's immediate.
func le64(v uint64) []byte { return binary.LittleEndian.AppendUint64(nil, v) }

// image keeps a copy of guest memory and returns a restore function for
// Reset that copies it back.
func image(t *testing.T, v *VCPU) func(addr, n uint64) error {
	t.Helper()
	img := make([]byte, testMemSize)
	require.NoError(t, v.mem.Read(0, img))
	return func(addr, n uint64) error { return v.mem.Write(addr, img[addr:addr+n]) }
}

// TestFreshForgedReport: a guest that makes its hypercalls after the
// snapshot through forged reports, with RBX at its data page and RSP at a
// pointer to its own code (which the handler's answer of a plain hypercall
// goes through), still starts from the snapshot's registers after every
// reset: R15, which it counts from the snapshot's 0 and reports, reads 1
// each time. The handler used to answer the reset through the guest's RBX
// and RSP too, and the guest kept R15 (2, 3, 4).
func TestFreshForgedReport(t *testing.T) {
	code := []byte{
		0xba, 0x01, 0x05, 0x00, 0x00, // +0x00 mov $0x501,%edx
		0xef,             // +0x05 out %eax,(%dx): the snapshot's hypercall
		0x49, 0xff, 0xc7, // +0x06 inc %r15
		0x4d, 0x89, 0xf8, // +0x09 mov %r15,%r8: the report's RAX
		0x48, 0xb9, // +0x0c movabs $handlerSyscallRet-2,%rcx
	}
	code = append(code, le64(handlerSyscallRet-2)...)
	code = append(code,
		0xbb, 0x00, 0x10, 0x10, 0x00, // +0x16 mov $0x101000,%ebx: the handler adds to 168(%rbx)
		0xbc, 0x4c, 0x00, 0x10, 0x00, // +0x1b mov $0x10004c,%esp: and returns through (%rsp)
		0x48, 0xbf, 0x0b, 0x00, 0x00, 0x00, 0x80, 0x00, 0x00, 0x00, // +0x20 movabs $0x800000000b,%rdi: SI_KERNEL, SIGSEGV
		0x48, 0xbe, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0d, 0x00, // +0x2a movabs $0xd000000000000,%rsi: #GP
		0xba, 0x00, 0x00, 0x3f, 0x00, // +0x34 mov $0x3f0000,%edx: RSP
		0x41, 0xba, 0x05, 0x00, 0x10, 0x00, // +0x39 mov $0x100005,%r10d: RIP, the real out
		0x41, 0xb9, 0x01, 0x05, 0x00, 0x00, // +0x3f mov $0x501,%r9d: RDX, its port
		0xb8, 0x6e, 0x00, 0x00, 0x00, // +0x45 mov $110,%eax
		0xff, 0xe1, // +0x4a jmp *%rcx
	)
	code = append(code, le64(codeAddr+6)...) // +0x4c the code after the out
	v := startFresh(t, code)
	hypercall := func(r15 uint64) vcpu.Exit {
		return vcpu.Exit{Kind: vcpu.ExitHypercall, Nr: 1, Arg: r15, RIP: codeAddr + 5}
	}
	assert.Equal(t, hypercall(0), run(t, v))
	s, err := v.Snapshot()
	require.NoError(t, err)
	restore := image(t, v)
	assert.Equal(t, hypercall(1), run(t, v), "a forged report is a hypercall like the real one")
	assert.Equal(t, hypercall(2), run(t, v), "without a reset the guest goes on")
	for range 3 {
		require.NoError(t, v.Reset(s, restore))
		assert.Equal(t, hypercall(1), run(t, v), "R15 after a reset")
	}
}

// TestFreshFlagsAndSelectors: RFLAGS.ID, which rt_sigreturn does not
// restore (it takes only the arithmetic and control flags from the frame),
// and the ES selector, which is not in the frame, are the snapshot's again
// after a reset. The guest reports ID | ES<<8 through hypercall 2 at the
// start of each round, then sets ID and loads ES with SS.
func TestFreshFlagsAndSelectors(t *testing.T) {
	v := startFresh(t, []byte{
		0xba, 0x01, 0x05, 0x00, 0x00, // +0x00 mov $0x501,%edx
		0xef,             // +0x05 out %eax,(%dx): the snapshot's hypercall
		0x9c,             // +0x06 pushf
		0x58,             // +0x07 pop %rax
		0xc1, 0xe8, 0x15, // +0x08 shr $21,%eax
		0x83, 0xe0, 0x01, // +0x0b and $1,%eax
		0x8c, 0xc1, // +0x0e mov %es,%ecx
		0xc1, 0xe1, 0x08, // +0x10 shl $8,%ecx
		0x09, 0xc8, // +0x13 or %ecx,%eax
		0xba, 0x02, 0x05, 0x00, 0x00, // +0x15 mov $0x502,%edx
		0xef,                                     // +0x1a out %eax,(%dx)
		0x9c,                                     // +0x1b pushf
		0x81, 0x0c, 0x24, 0x00, 0x00, 0x20, 0x00, // +0x1c orl $0x200000,(%rsp)
		0x9d,       // +0x23 popf
		0x8c, 0xd1, // +0x24 mov %ss,%ecx
		0x8e, 0xc1, // +0x26 mov %ecx,%es
		0xba, 0x01, 0x05, 0x00, 0x00, // +0x28 mov $0x501,%edx
		0xeb, 0xd6, // +0x2d jmp 0x05
	})
	run(t, v)
	s, err := v.Snapshot()
	require.NoError(t, err)
	restore := image(t, v)
	first := run(t, v)
	require.Equal(t, uint32(2), first.Nr)
	require.EqualValues(t, 0, first.Arg&1, "RFLAGS.ID at the snapshot")
	run(t, v) // the hypercall at 0x05, with ID set and ES = SS
	assert.Equal(t, uint32(2), run(t, v).Nr)
	changed := run(t, v)
	assert.NotEqual(t, first.Arg, changed.Arg, "without a reset the guest keeps what it set (the test can fail)")
	for range 3 {
		require.NoError(t, v.Reset(s, restore))
		assert.Equal(t, first, run(t, v), "ID | ES<<8 after a reset")
		run(t, v)
	}
}

// restorerFrame reports whether the 8-byte words of guest memory in
// [lo, hi) hold the stub restorer's address, which starts a signal frame.
func restorerFrame(t *testing.T, v *VCPU, lo, hi uint64) bool {
	b := make([]byte, hi-lo)
	require.NoError(t, v.mem.Read(lo, b))
	for i := 0; i+8 <= len(b); i += 8 {
		if binary.LittleEndian.Uint64(b[i:]) == stubBase+stubRestorer {
			return true
		}
	}
	return false
}

// TestFreshSignalStackMoved: a guest that moves its signal stack into its
// own memory (rt_sigreturn through the stub's restorer with uc_stack
// around its stack pointer) gets the stub's back at the reset: the frame of
// its next hypercall is on the stub's signal stack, not in guest memory.
// The reset's own rt_sigreturn left a signal stack that holds the RSP it
// restores in place (sigaltstack refuses a change then), so the guest
// kept it; and the handler, running on that stack, answered the reset
// through a frame the reset had just overwritten with the snapshot's
// memory, and the process died.
func TestFreshSignalStackMoved(t *testing.T) {
	code := []byte{
		0xbc, 0x00, 0x80, 0x3f, 0x00, // +0x00 mov $0x3f8000,%esp
		0xba, 0x01, 0x05, 0x00, 0x00, // +0x05 mov $0x501,%edx
		0xef,                         // +0x0a out %eax,(%dx): the snapshot's hypercall
		0xba, 0x02, 0x05, 0x00, 0x00, // +0x0b mov $0x502,%edx
		0xef,                         // +0x10 out %eax,(%dx)
		0xb8, 0x00, 0x10, 0x10, 0x00, // +0x11 mov $0x101000,%eax: a struct ucontext
		0x48, 0xc7, 0x40, 0x10, 0x00, 0x00, 0x3f, 0x00, // +0x16 movq $0x3f0000,16(%rax): uc_stack.ss_sp
		0x48, 0xc7, 0x40, 0x20, 0x08, 0x00, 0x01, 0x00, // +0x1e movq $0x10008,32(%rax): .ss_size, to past RSP
		0x48, 0x89, 0xa0, 0xa0, 0x00, 0x00, 0x00, // +0x26 mov %rsp,160(%rax): uc_mcontext.rsp
		0x48, 0xc7, 0x80, 0xa8, 0x00, 0x00, 0x00, 0x05, 0x00, 0x10, 0x00, // +0x2d movq $0x100005,168(%rax): .rip
		0x48, 0xc7, 0x80, 0xb0, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, // +0x38 movq $0x202,176(%rax): .eflags
		0x8c, 0xc9, // +0x43 mov %cs,%ecx
		0x66, 0x89, 0x88, 0xb8, 0x00, 0x00, 0x00, // +0x45 mov %cx,184(%rax): .cs
		0x8c, 0xd1, // +0x4c mov %ss,%ecx
		0x66, 0x89, 0x88, 0xbe, 0x00, 0x00, 0x00, // +0x4e mov %cx,190(%rax): .ss
		0x48, 0xc7, 0xc1, 0x27, 0xfb, 0xff, 0xff, // +0x55 mov $~0x4d8,%rcx: the stub's signal mask
		0x48, 0x89, 0x88, 0x28, 0x01, 0x00, 0x00, // +0x5c mov %rcx,296(%rax): uc_sigmask
		0x48, 0x89, 0xc4, // +0x63 mov %rax,%rsp
		0x48, 0xb9, // +0x66 movabs $restorer,%rcx
	}
	code = append(code, le64(stubBase+stubRestorer)...)
	code = append(code, 0xff, 0xe1) // +0x70 jmp *%rcx: rt_sigreturn to 0x05
	v := startFresh(t, code)
	run(t, v)
	s, err := v.Snapshot()
	require.NoError(t, err)
	restore := image(t, v)
	assert.Equal(t, vcpu.Exit{Kind: vcpu.ExitHypercall, Nr: 2, RIP: codeAddr + 0x10}, run(t, v))
	assert.False(t, restorerFrame(t, v, 0x3f0000, testMemSize))
	assert.Equal(t, vcpu.Exit{Kind: vcpu.ExitHypercall, Nr: 1, RIP: codeAddr + 0x0a}, run(t, v))
	require.True(t, restorerFrame(t, v, 0x3f0000, 0x3f8000), "the frame in guest memory (the test can fail)")
	for range 3 {
		require.NoError(t, v.Reset(s, restore))
		assert.Equal(t, vcpu.Exit{Kind: vcpu.ExitHypercall, Nr: 2, RIP: codeAddr + 0x10}, run(t, v))
		assert.False(t, restorerFrame(t, v, 0x3f0000, testMemSize), "a frame in guest memory after a reset")
		run(t, v)
	}
}

// TestStackOnSignalStack: a guest whose stack pointer is on the signal
// stack, even near its bottom, still has its exceptions taken (the kernel
// puts every frame at the top of the signal stack, SS_AUTODISARM) and
// reported as under KVM. The kernel used to put the frame below RSP, and
// below the signal stack found no memory: it killed the process with
// SIGSEGV (and a core dump).
func TestStackOnSignalStack(t *testing.T) {
	_, v := start(t, []byte{
		0x48, 0xbc, 0x00, 0x04, 0x01, 0x00, 0x00, 0x7e, 0x00, 0x00, // +0x00 movabs $0x7e0000010400,%rsp
		0x0f, 0x0b, // +0x0a ud2
	})
	assert.Equal(t, vcpu.Exit{Kind: vcpu.ExitFault, Vector: 6, RIP: codeAddr + 0x0a}, run(t, v))
	assert.Equal(t, vcpu.Exit{Kind: vcpu.ExitFault, Vector: 6, RIP: codeAddr + 0x0a}, run(t, v))
}

// TestDiedOfBlockedFault: a guest that blocks SIGILL and SIGSEGV through
// rt_sigreturn and then executes ud2 is killed by the kernel with SIGILL:
// a fault the handler could not take, reported as a triple fault (a fault
// while delivering a fault), with the signal. Its process could not dump
// core (its RLIMIT_CORE is 1 byte, see noCoreDumps).
func TestDiedOfBlockedFault(t *testing.T) {
	code := []byte{
		0xb8, 0x00, 0x10, 0x10, 0x00, // +0x00 mov $0x101000,%eax: a struct ucontext
		0x48, 0x89, 0xa0, 0xa0, 0x00, 0x00, 0x00, // +0x05 mov %rsp,160(%rax): uc_mcontext.rsp
		0x48, 0xc7, 0x80, 0xa8, 0x00, 0x00, 0x00, 0x51, 0x00, 0x10, 0x00, // +0x0c movq $0x100051,168(%rax): .rip, the ud2
		0x48, 0xc7, 0x80, 0xb0, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, // +0x17 movq $0x202,176(%rax): .eflags
		0x8c, 0xc9, // +0x22 mov %cs,%ecx
		0x66, 0x89, 0x88, 0xb8, 0x00, 0x00, 0x00, // +0x24 mov %cx,184(%rax): .cs
		0x8c, 0xd1, // +0x2b mov %ss,%ecx
		0x66, 0x89, 0x88, 0xbe, 0x00, 0x00, 0x00, // +0x2d mov %cx,190(%rax): .ss
		0x48, 0xc7, 0xc1, 0x2f, 0xff, 0xff, 0xff, // +0x34 mov $~0x4d8|0x408,%rcx: SIGILL and SIGSEGV blocked too
		0x48, 0x89, 0x88, 0x28, 0x01, 0x00, 0x00, // +0x3b mov %rcx,296(%rax): uc_sigmask
		0x48, 0x89, 0xc4, // +0x42 mov %rax,%rsp
		0x48, 0xb9, // +0x45 movabs $restorer,%rcx
	}
	code = append(code, le64(stubBase+stubRestorer)...)
	code = append(code,
		0xff, 0xe1, // +0x4f jmp *%rcx: rt_sigreturn to 0x51
		0x0f, 0x0b, // +0x51 ud2
	)
	_, v := start(t, code)
	assert.Equal(t, vcpu.Exit{Kind: vcpu.ExitTripleFault, Reason: uint64(unix.SIGILL)}, run(t, v))
	assert.ErrorContains(t, v.ended, "killed by illegal instruction, a fault the stub's handler could not take")
	_, err := v.Run()
	assert.Error(t, err)
}

// TestNoCoreDumps: a guest process's RLIMIT_CORE is 1 byte, soft and hard,
// which stops a core file (it needs a page) and a core_pattern pipe helper
// (the kernel runs none for a limit of exactly 1), whatever the monitor's
// limit, which stays its embedder's.
func TestNoCoreDumps(t *testing.T) {
	var was unix.Rlimit
	require.NoError(t, unix.Prlimit(0, unix.RLIMIT_CORE, nil, &was))
	t.Cleanup(func() { assert.NoError(t, unix.Prlimit(0, unix.RLIMIT_CORE, &was, nil)) })
	raised := unix.Rlimit{Cur: was.Max, Max: was.Max}
	require.NoError(t, unix.Prlimit(0, unix.RLIMIT_CORE, &raised, nil))

	_, v := start(t, []byte{0x66, 0xba, 0x01, 0x05, 0xef}) // mov $0x501,%dx; out %eax,(%dx)
	run(t, v)
	limits, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", v.pid))
	require.NoError(t, err)
	m := regexp.MustCompile(`(?m)^Max core file size +(\S+) +(\S+)`).FindSubmatch(limits)
	require.NotNil(t, m, "%s", limits)
	assert.Equal(t, "1", string(m[1]), "soft limit")
	assert.Equal(t, "1", string(m[2]), "hard limit")
	var now unix.Rlimit
	require.NoError(t, unix.Prlimit(0, unix.RLIMIT_CORE, nil, &now))
	assert.Equal(t, raised, now, "the monitor's own is left alone")
}

// TestFreshTemplateSealed: a fresh guest cannot change what its resets load
// (the template, which the first reset makes read-only): a write into it
// faults, and the seal's mprotect made by a jump to the handler's system
// call with any other argument (write permission, another range, a high
// half set) is an attempted system call; mprotect with the filter's
// arguments changes nothing: the request after it starts from the snapshot.
func TestFreshTemplateSealed(t *testing.T) {
	write := []byte{
		0xba, 0x01, 0x05, 0x00, 0x00, // +0x00 mov $0x501,%edx
		0xef,       // +0x05 out %eax,(%dx): the snapshot's hypercall
		0x48, 0xbe, // +0x06 movabs $tmplPages,%rsi
	}
	write = append(write, le64(tmplPages)...)
	write = append(write, 0x48, 0xc7, 0x06, 0x41, 0x00, 0x00, 0x00) // +0x10 movq $0x41,(%rsi)
	v := startFresh(t, write)
	assert.Equal(t, vcpu.ExitHypercall, run(t, v).Kind)
	_, err := v.Snapshot()
	require.NoError(t, err)
	x := run(t, v)
	assert.Equal(t, vcpu.Exit{Kind: vcpu.ExitFault, Vector: 14, ErrorCode: 7, HasErrorCode: true, RIP: codeAddr + 0x10, CR2: tmplPages}, x)

	// mprotect(addr, size, prot) from the seal's system call, after a
	// hypercall of its own.
	seal := func(addr, size, prot uint64) []byte {
		code := []byte{
			0xba, 0x01, 0x05, 0x00, 0x00, // +0x00 mov $0x501,%edx
			0xef,                         // +0x05 out %eax,(%dx): the snapshot's hypercall
			0xba, 0x02, 0x05, 0x00, 0x00, // +0x06 mov $0x502,%edx
			0xef,       // +0x0b out %eax,(%dx)
			0x48, 0xbf, // +0x0c movabs $addr,%rdi
		}
		code = append(code, le64(addr)...)
		code = append(code, 0x48, 0xbe) // +0x16 movabs $size,%rsi
		code = append(code, le64(size)...)
		code = append(code, 0x48, 0xba) // +0x20 movabs $prot,%rdx
		code = append(code, le64(prot)...)
		code = append(code,
			0xb8, 0x0a, 0x00, 0x00, 0x00, // +0x2a mov $10,%eax
			0x48, 0xb9, // +0x2f movabs $seal,%rcx
		)
		code = append(code, le64(handlerSealRet-2)...)
		return append(code, 0xff, 0xe1) // +0x39 jmp *%rcx
	}
	hc2 := vcpu.Exit{Kind: vcpu.ExitHypercall, Nr: 2, RIP: codeAddr + 0x0b}
	for _, c := range [][3]uint64{
		{tmplBase, tmplSize, unix.PROT_READ | unix.PROT_WRITE},
		{tmplBase, tmplSize, 1<<32 | unix.PROT_READ},
		{dataAddr, tmplSize, unix.PROT_READ}, // guest memory
		{tmplBase + pageSize, tmplSize, unix.PROT_READ},
		{tmplBase + 1<<32, tmplSize, unix.PROT_READ},
		{tmplBase, tmplSize + pageSize, unix.PROT_READ},
		{tmplBase, 1<<32 | tmplSize, unix.PROT_READ},
	} {
		v = startFresh(t, seal(c[0], c[1], c[2]))
		run(t, v)
		_, err = v.Snapshot()
		require.NoError(t, err)
		assert.Equal(t, hc2, run(t, v))
		assert.Equal(t, vcpu.Exit{Kind: vcpu.ExitSyscall, Reason: unix.SYS_MPROTECT, RIP: handlerSealRet - 2}, run(t, v), "mprotect(%#x, %#x, %#x)", c[0], c[1], c[2])
	}

	// With PROT_READ the call passes and the handler goes on through a
	// reset (it uses none of the guest's registers): the guest is back
	// after its snapshot's hypercall, every time.
	v = startFresh(t, seal(tmplBase, tmplSize, unix.PROT_READ))
	run(t, v)
	_, err = v.Snapshot()
	require.NoError(t, err)
	for range 3 {
		assert.Equal(t, hc2, run(t, v))
	}
}
