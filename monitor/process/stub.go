package process

import (
	"bytes"
	"encoding/binary"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/tendervm/tender/monitor/internal/elf"
)

// The stub is the program the guest process executes. Its entry point is
// never run: the tracer stops it right after execve, borrows its syscall
// gadget to make it set itself up, and then replaces its registers with the
// guest's. What it keeps is a signal handler that turns every exception of
// the guest into one system call the monitor receives through seccomp user
// notification. Everything is in one read-only, executable page far above the
// guest's [0, 4 GiB) range:
//
//	stubBase+stubSyscall   syscall; int3      the gadget for injected calls
//	stubBase+stubEntry     int3; ud2          the ELF entry point (never run)
//	stubBase+stubFprog     struct sock_fprog  the seccomp filter below
//	stubBase+stubSigaction struct kernel_sigaction for every fault signal
//	stubBase+stubAltstack  stack_t            the handler's stack
//	stubBase+stubSigmask   sigset_t           every signal but the fault ones
//	stubBase+stubRestorer  rt_sigreturn; ud2
//	stubBase+stubSetup     the set-up routine (setupCode)
//	stubBase+stubHandler   the handler (handlerCode)
//	stubBase+stubFilter    the seccomp filter's instructions
//
// A second, writable segment at stubTable (zero-filled by exec) receives the
// guest's region table: address, size and mmap protection, 8 bytes each. The
// set-up routine unmaps it once the regions are mapped, and with it
// everything above it up to the top of the 47-bit address space (stubTop):
// the initial stack execve built for the stub and, where the kernel placed
// them there, the vDSO and its data pages. Nothing of the stub runs on that
// stack (the set-up routine and the gadget use none, the handler runs on the
// signal stack), and the vDSO is never called; left mapped, the stack was
// writable memory outside guest memory that a fresh instance's reset does
// not restore. The range holds nothing else: guest regions lie below
// stubBase (checkRegions), the signal stack (and a fresh guest's template,
// tmplBase) is mapped after the unmap, and
// the kernel puts the stack within 16 GiB of stubTop (its randomization)
// and the vDSO in the mmap area below it. A vDSO that lies lower (a raised
// vm.mmap_rnd_bits, the legacy layout) stays mapped: read-only, and unused.
//
// Constant data lives in the image, so setup needs no writable page of the
// stub's and no PTRACE_POKEDATA.
const (
	stubBase      = 0x7e0000000000
	stubSyscall   = 0xc0  // offset of the syscall gadget
	stubEntry     = 0xc8  // offset of the entry point
	stubFprog     = 0xd0  // offset of the struct sock_fprog (16 bytes)
	stubSigaction = 0xe0  // offset of the struct kernel_sigaction (32 bytes)
	stubAltstack  = 0x100 // offset of the stack_t (24 bytes)
	stubSigmask   = 0x118 // offset of the sigset_t (8 bytes)
	stubHandler   = 0x480 // offset of the signal handler, past setupCode
	stubRestorer  = 0x170 // offset of the signal return gadget
	stubFilter    = 0x700 // offset of the seccomp filter's instructions, past handlerCode
	stubSetup     = 0x200 // offset of the set-up routine

	// stubTable is the writable page of the region table, and
	// tableEntries how many regions it holds.
	stubTable    = stubBase + 0x2000
	stubTop      = 0x7ffffffff000 // the end of what the set-up routine unmaps
	tableSize    = 0x2000
	tableEntries = tableSize / 24

	// stubTrapRIP is where the tracee stops after an injected system call:
	// just past the int3 that follows the gadget.
	stubTrapRIP = stubBase + stubSyscall + 3

	// altBase and altSize place the signal stack: anonymous memory with
	// unmapped pages on both sides. 64 KiB holds a signal frame with the
	// largest XSAVE area many times over. It is SS_AUTODISARM: the kernel
	// puts every signal frame at its top, wherever the guest's RSP is
	// (without it a guest whose RSP was on the signal stack had its frame
	// put below RSP, and one near the bottom had none: the kernel killed
	// the process with SIGSEGV), and disarms it while the handler runs.
	altBase      = stubBase + 0x10000
	altSize      = 0x10000
	ssAutodisarm = 1 << 31

	// tmplBase and tmplSize place a fresh guest's template (handler.S):
	// private memory, mapped by NewFresh past a guard gap above the signal
	// stack, that the monitor writes at the snapshot and the first reset
	// makes read-only. It holds the reset block, then from tmplPages the
	// snapshot's signal stack from the frame's first page to its top, which
	// the handler copies back at every reset: the kernel rewrites those
	// pages at every exit, so they are not tracked (fresh.go), and a copy
	// in the process costs far less than a write from the monitor
	// (process_vm_writev: 3.3 µs here, the largest part of a reset).
	tmplBase  = stubBase + 0x30000
	tmplSize  = 0x10000
	tmplPages = tmplBase + pageSize

	// The reset block: what a reset loads besides the signal frame. At
	// the bottom of the signal stack (which frames never reach: they are
	// put at its top) the handler stores the selectors and bases at the
	// snapshot (the save block); the monitor puts them, and the rest, in
	// the template's.
	blockFSBase = 0  // FS base (with FSGSBASE)
	blockGSBase = 8  // GS base (with FSGSBASE)
	blockSel    = 16 // DS, ES, FS, GS: 16 bits each
	blockFrame  = 24 // the address of the signal frame to return through
	blockRFLAGS = 32 // the RFLAGS to load first (the bits rt_sigreturn keeps)
	blockDst    = 40 // where the template's pages go: the frame's first page
	blockLen    = 48 // their length, to the top of the signal stack
	blockSize   = 56
)

// handlerCode is the signal handler, assembled from testdata/handler.S
// (which TestStubCode checks). Entered as handler(signo, siginfo, ucontext)
// on the signal stack with every signal blocked, it reports the exception in
// one system call (getppid, which the filter hands to the monitor) with
//
//	arg0 = si_code<<32 | signo     arg3 = RIP
//	arg1 = trapno<<48 | ECX<<16 | error code (16 bits)   arg4 = RAX
//	arg2 = si_addr                 arg5 = RDX
//
// taken from the siginfo and the ucontext's sigcontext (for a #GP, which
// has no address, arg2 = RSP instead), and applies the monitor's answer:
// how far to advance the RIP it will return to, or answerFarReturn,
// answerFSBase, answerSave or answerReset. Then it returns to the
// restorer.
//
// The guest can run the stub's page too, so it can jump to the report's
// syscall with registers of its choosing: a forged report. It describes
// only what the guest could have done itself (decode checks the
// instruction at the reported RIP in guest memory), and every answer but
// answerReset works through the guest's RBX and RSP, which only changes
// the guest's own state. answerReset, which a fresh instance's reset
// depends on, uses none of the guest's registers.
var handlerCode = []byte{
	0x48, 0x89, 0xd3, 0x48, 0x8b, 0x56, 0x10, 0x81, 0x7e, 0x08, 0x80, 0x00, 0x00, 0x00, 0x48, 0x0f,
	0x44, 0x93, 0xa0, 0x00, 0x00, 0x00, 0x48, 0x63, 0x46, 0x08, 0x48, 0xc1, 0xe0, 0x20, 0x89, 0xff,
	0x48, 0x09, 0xc7, 0x48, 0x8b, 0xb3, 0xc8, 0x00, 0x00, 0x00, 0x48, 0xc1, 0xe6, 0x30, 0x0f, 0xb7,
	0x83, 0xc0, 0x00, 0x00, 0x00, 0x48, 0x09, 0xc6, 0x8b, 0x83, 0x98, 0x00, 0x00, 0x00, 0x48, 0xc1,
	0xe0, 0x10, 0x48, 0x09, 0xc6, 0x4c, 0x8b, 0x93, 0xa8, 0x00, 0x00, 0x00, 0x4c, 0x8b, 0x83, 0x90,
	0x00, 0x00, 0x00, 0x4c, 0x8b, 0x8b, 0x88, 0x00, 0x00, 0x00, 0xb8, 0x6e, 0x00, 0x00, 0x00, 0x0f,
	0x05, 0x48, 0x85, 0xc0, 0x78, 0x08, 0x48, 0x01, 0x83, 0xa8, 0x00, 0x00, 0x00, 0xc3, 0x48, 0x0f,
	0xba, 0xe0, 0x3e, 0x73, 0x1a, 0x48, 0x8b, 0x8b, 0xa0, 0x00, 0x00, 0x00, 0x48, 0x8b, 0x11, 0x48,
	0x89, 0x93, 0xa8, 0x00, 0x00, 0x00, 0x48, 0x83, 0x83, 0xa0, 0x00, 0x00, 0x00, 0x10, 0xc3, 0x49,
	0xbb, 0x00, 0x00, 0x01, 0x00, 0x00, 0x7e, 0x00, 0x00, 0x48, 0x0f, 0xba, 0xe0, 0x3b, 0x72, 0x58,
	0x48, 0x0f, 0xba, 0xe0, 0x3d, 0x72, 0x1f, 0x48, 0x89, 0xc1, 0x48, 0xc1, 0xe9, 0x30, 0x0f, 0xb6,
	0xc9, 0x48, 0x01, 0x8b, 0xa8, 0x00, 0x00, 0x00, 0x48, 0xc1, 0xe0, 0x10, 0x48, 0xc1, 0xe8, 0x10,
	0xf3, 0x48, 0x0f, 0xae, 0xd0, 0xc3, 0x41, 0x8c, 0x5b, 0x10, 0x41, 0x8c, 0x43, 0x12, 0x41, 0x8c,
	0x63, 0x14, 0x41, 0x8c, 0x6b, 0x16, 0x48, 0x0f, 0xba, 0xe0, 0x3c, 0x73, 0x11, 0xf3, 0x48, 0x0f,
	0xae, 0xc1, 0x49, 0x89, 0x0b, 0xf3, 0x48, 0x0f, 0xae, 0xc9, 0x49, 0x89, 0x4b, 0x08, 0xb8, 0x6e,
	0x00, 0x00, 0x00, 0xe9, 0x67, 0xff, 0xff, 0xff, 0x48, 0x89, 0xc3, 0x48, 0x0f, 0xba, 0xe3, 0x3a,
	0x73, 0x20, 0x48, 0xbf, 0x00, 0x00, 0x03, 0x00, 0x00, 0x7e, 0x00, 0x00, 0xbe, 0x00, 0x00, 0x01,
	0x00, 0xba, 0x01, 0x00, 0x00, 0x00, 0xb8, 0x0a, 0x00, 0x00, 0x00, 0x0f, 0x05, 0x48, 0x85, 0xc0,
	0x75, 0x78, 0x49, 0xbb, 0x00, 0x00, 0x03, 0x00, 0x00, 0x7e, 0x00, 0x00, 0xfc, 0x49, 0x8d, 0xb3,
	0x00, 0x10, 0x00, 0x00, 0x49, 0x8b, 0x7b, 0x28, 0x49, 0x8b, 0x4b, 0x30, 0xf3, 0xa4, 0x49, 0x8b,
	0x63, 0x18, 0x41, 0xff, 0x73, 0x20, 0x9d, 0x49, 0x89, 0xe4, 0x31, 0xe4, 0x48, 0xbf, 0x00, 0x01,
	0x00, 0x00, 0x00, 0x7e, 0x00, 0x00, 0x31, 0xf6, 0xb8, 0x83, 0x00, 0x00, 0x00, 0x0f, 0x05, 0x48,
	0x85, 0xc0, 0x75, 0x36, 0x4c, 0x89, 0xe4, 0x49, 0xbb, 0x00, 0x00, 0x03, 0x00, 0x00, 0x7e, 0x00,
	0x00, 0x41, 0x8e, 0x5b, 0x10, 0x41, 0x8e, 0x43, 0x12, 0x41, 0x8e, 0x63, 0x14, 0x41, 0x8e, 0x6b,
	0x16, 0x48, 0x0f, 0xba, 0xe3, 0x3c, 0x73, 0x11, 0x49, 0x8b, 0x0b, 0xf3, 0x48, 0x0f, 0xae, 0xd1,
	0x49, 0x8b, 0x4b, 0x08, 0xf3, 0x48, 0x0f, 0xae, 0xd9, 0xc3, 0x0f, 0x0b,
}

// Answers to a report other than how far to advance RIP. They are negative
// as the handler reads them.
const (
	// answerFarReturn: RIP = the word at RSP, RSP += 16 (a Solo5 guest's
	// lret).
	answerFarReturn = 1<<63 | 1<<62
	// answerFSBase | len<<48 | base: set the FS base, advance RIP by len
	// (a Solo5 guest's wrmsr).
	answerFSBase = 1 << 63
	// answerSave: store the data segment selectors in the save block,
	// and with answerWithBases the FS and GS bases, and report again,
	// unchanged (a fresh guest's snapshot).
	answerSave = 1<<63 | 1<<61
	// answerReset: return through the signal frame the template's reset
	// block names, after copying the template's pages back,
	// with the block's RFLAGS, the stub's signal stack, the block's
	// selectors and, with answerWithBases, its FS and GS bases (a fresh
	// guest's reset). The guest's registers are not used.
	answerReset = 1<<63 | 1<<59
	// answerWithBases: answerSave and answerReset also store or load the
	// FS and GS bases (where the kernel enables FSGSBASE).
	answerWithBases = 1 << 60
	// answerSeal: answerReset first makes the template read-only (the
	// first reset of a process).
	answerSeal = 1 << 58
)

// setupCode is the set-up routine, assembled from testdata/setup.S (which
// TestStubCode checks): it maps the guest regions listed in the region
// table (r13 entries), unmaps [stubTable, stubTop) (the table, the initial
// stack, the vDSO), maps the signal stack, closes every descriptor,
// installs the signal stack, the handler for each of faultSignals and the
// signal mask, sets no_new_privs and installs the seccomp filter with a
// listener, then stops at an int3. r12 is 0 and rax the listener's
// descriptor, or r12 is the failed step (setupSteps) and rax its -errno; for
// step 12, r13 is the number of regions left to map.
var setupCode = []byte{
	0x48, 0xbb, 0x00, 0x20, 0x00, 0x00, 0x00, 0x7e, 0x00, 0x00, 0x41, 0xbc, 0x0c, 0x00, 0x00, 0x00,
	0x4d, 0x85, 0xed, 0x74, 0x36, 0x48, 0x8b, 0x3b, 0x48, 0x8b, 0x73, 0x08, 0x48, 0x8b, 0x53, 0x10,
	0x41, 0xba, 0x01, 0x00, 0x10, 0x00, 0x41, 0xb8, 0x03, 0x00, 0x00, 0x00, 0x49, 0x89, 0xf9, 0xb8,
	0x09, 0x00, 0x00, 0x00, 0x0f, 0x05, 0x48, 0x3d, 0x01, 0xf0, 0xff, 0xff, 0x0f, 0x83, 0x25, 0x02,
	0x00, 0x00, 0x48, 0x83, 0xc3, 0x18, 0x49, 0xff, 0xcd, 0xeb, 0xc5, 0x41, 0xbc, 0x0d, 0x00, 0x00,
	0x00, 0x48, 0xbf, 0x00, 0x20, 0x00, 0x00, 0x00, 0x7e, 0x00, 0x00, 0x48, 0xbe, 0x00, 0xd0, 0xff,
	0xff, 0xff, 0x01, 0x00, 0x00, 0xb8, 0x0b, 0x00, 0x00, 0x00, 0x0f, 0x05, 0x48, 0x3d, 0x01, 0xf0,
	0xff, 0xff, 0x0f, 0x83, 0xef, 0x01, 0x00, 0x00, 0x41, 0xbc, 0x01, 0x00, 0x00, 0x00, 0x48, 0xbf,
	0x00, 0x00, 0x01, 0x00, 0x00, 0x7e, 0x00, 0x00, 0xbe, 0x00, 0x00, 0x01, 0x00, 0xba, 0x03, 0x00,
	0x00, 0x00, 0x41, 0xba, 0x22, 0x00, 0x10, 0x00, 0x49, 0xc7, 0xc0, 0xff, 0xff, 0xff, 0xff, 0x45,
	0x31, 0xc9, 0xb8, 0x09, 0x00, 0x00, 0x00, 0x0f, 0x05, 0x48, 0x3d, 0x01, 0xf0, 0xff, 0xff, 0x0f,
	0x83, 0xb2, 0x01, 0x00, 0x00, 0x41, 0xbc, 0x02, 0x00, 0x00, 0x00, 0x31, 0xff, 0xbe, 0xff, 0xff,
	0xff, 0xff, 0x31, 0xd2, 0xb8, 0xb4, 0x01, 0x00, 0x00, 0x0f, 0x05, 0x48, 0x3d, 0x01, 0xf0, 0xff,
	0xff, 0x0f, 0x83, 0x90, 0x01, 0x00, 0x00, 0x41, 0xbc, 0x03, 0x00, 0x00, 0x00, 0x48, 0xbf, 0x00,
	0x01, 0x00, 0x00, 0x00, 0x7e, 0x00, 0x00, 0x31, 0xf6, 0xb8, 0x83, 0x00, 0x00, 0x00, 0x0f, 0x05,
	0x48, 0x3d, 0x01, 0xf0, 0xff, 0xff, 0x0f, 0x83, 0x6b, 0x01, 0x00, 0x00, 0x41, 0xbc, 0x04, 0x00,
	0x00, 0x00, 0xbf, 0x0b, 0x00, 0x00, 0x00, 0x48, 0xbe, 0xe0, 0x00, 0x00, 0x00, 0x00, 0x7e, 0x00,
	0x00, 0x31, 0xd2, 0x41, 0xba, 0x08, 0x00, 0x00, 0x00, 0xb8, 0x0d, 0x00, 0x00, 0x00, 0x0f, 0x05,
	0x48, 0x3d, 0x01, 0xf0, 0xff, 0xff, 0x0f, 0x83, 0x3b, 0x01, 0x00, 0x00, 0x41, 0xbc, 0x05, 0x00,
	0x00, 0x00, 0xbf, 0x07, 0x00, 0x00, 0x00, 0x48, 0xbe, 0xe0, 0x00, 0x00, 0x00, 0x00, 0x7e, 0x00,
	0x00, 0x31, 0xd2, 0x41, 0xba, 0x08, 0x00, 0x00, 0x00, 0xb8, 0x0d, 0x00, 0x00, 0x00, 0x0f, 0x05,
	0x48, 0x3d, 0x01, 0xf0, 0xff, 0xff, 0x0f, 0x83, 0x0b, 0x01, 0x00, 0x00, 0x41, 0xbc, 0x06, 0x00,
	0x00, 0x00, 0xbf, 0x04, 0x00, 0x00, 0x00, 0x48, 0xbe, 0xe0, 0x00, 0x00, 0x00, 0x00, 0x7e, 0x00,
	0x00, 0x31, 0xd2, 0x41, 0xba, 0x08, 0x00, 0x00, 0x00, 0xb8, 0x0d, 0x00, 0x00, 0x00, 0x0f, 0x05,
	0x48, 0x3d, 0x01, 0xf0, 0xff, 0xff, 0x0f, 0x83, 0xdb, 0x00, 0x00, 0x00, 0x41, 0xbc, 0x07, 0x00,
	0x00, 0x00, 0xbf, 0x08, 0x00, 0x00, 0x00, 0x48, 0xbe, 0xe0, 0x00, 0x00, 0x00, 0x00, 0x7e, 0x00,
	0x00, 0x31, 0xd2, 0x41, 0xba, 0x08, 0x00, 0x00, 0x00, 0xb8, 0x0d, 0x00, 0x00, 0x00, 0x0f, 0x05,
	0x48, 0x3d, 0x01, 0xf0, 0xff, 0xff, 0x0f, 0x83, 0xab, 0x00, 0x00, 0x00, 0x41, 0xbc, 0x08, 0x00,
	0x00, 0x00, 0xbf, 0x05, 0x00, 0x00, 0x00, 0x48, 0xbe, 0xe0, 0x00, 0x00, 0x00, 0x00, 0x7e, 0x00,
	0x00, 0x31, 0xd2, 0x41, 0xba, 0x08, 0x00, 0x00, 0x00, 0xb8, 0x0d, 0x00, 0x00, 0x00, 0x0f, 0x05,
	0x48, 0x3d, 0x01, 0xf0, 0xff, 0xff, 0x73, 0x7f, 0x41, 0xbc, 0x09, 0x00, 0x00, 0x00, 0xbf, 0x02,
	0x00, 0x00, 0x00, 0x48, 0xbe, 0x18, 0x01, 0x00, 0x00, 0x00, 0x7e, 0x00, 0x00, 0x31, 0xd2, 0x41,
	0xba, 0x08, 0x00, 0x00, 0x00, 0xb8, 0x0e, 0x00, 0x00, 0x00, 0x0f, 0x05, 0x48, 0x3d, 0x01, 0xf0,
	0xff, 0xff, 0x73, 0x53, 0x41, 0xbc, 0x0a, 0x00, 0x00, 0x00, 0xbf, 0x26, 0x00, 0x00, 0x00, 0xbe,
	0x01, 0x00, 0x00, 0x00, 0x31, 0xd2, 0x45, 0x31, 0xd2, 0x45, 0x31, 0xc0, 0xb8, 0x9d, 0x00, 0x00,
	0x00, 0x0f, 0x05, 0x48, 0x3d, 0x01, 0xf0, 0xff, 0xff, 0x73, 0x2c, 0x41, 0xbc, 0x0b, 0x00, 0x00,
	0x00, 0xbf, 0x01, 0x00, 0x00, 0x00, 0xbe, 0x08, 0x00, 0x00, 0x00, 0x48, 0xba, 0xd0, 0x00, 0x00,
	0x00, 0x00, 0x7e, 0x00, 0x00, 0xb8, 0x3d, 0x01, 0x00, 0x00, 0x0f, 0x05, 0x48, 0x3d, 0x01, 0xf0,
	0xff, 0xff, 0x73, 0x03, 0x45, 0x31, 0xe4, 0xcc,
}

// setupSteps names the steps of setupCode, from 1.
var setupSteps = []string{"mmap of the signal stack", "close_range", "sigaltstack",
	"sigaction(SIGSEGV)", "sigaction(SIGBUS)", "sigaction(SIGILL)", "sigaction(SIGFPE)", "sigaction(SIGTRAP)",
	"sigprocmask", "PR_SET_NO_NEW_PRIVS", "seccomp", "mmap of a guest region", "munmap of the region table and the initial stack"}

// stepMapRegion is the step of setupCode that maps guest regions.
const stepMapRegion = 12

// setupTrapRIP is where the process stops after setupCode: past its int3.
var setupTrapRIP = stubBase + stubSetup + uint64(len(setupCode))

// restorerCode returns from the handler (testdata/restorer.S): mov
// $15,%eax (rt_sigreturn); syscall; ud2.
var restorerCode = []byte{0xb8, 0x0f, 0x00, 0x00, 0x00, 0x0f, 0x05, 0x0f, 0x0b}

const (
	// handlerSyscallRet is the instruction pointer seccomp sees for the
	// handler's report: just past its syscall instruction.
	handlerSyscallRet = stubBase + stubHandler + 0x61
	// handlerSealRet and handlerAltstackRet are the ones seccomp sees for
	// the mprotect that seals a fresh guest's template and for the
	// sigaltstack call of a reset.
	handlerSealRet     = stubBase + stubHandler + 0x11d
	handlerAltstackRet = stubBase + stubHandler + 0x15f
	// handlerNr is the system call number of the handler's report.
	handlerNr = unix.SYS_GETPPID
	// restorerRet and gadgetRet are what seccomp sees for rt_sigreturn from
	// the restorer and for a call through the gadget.
	restorerRet = stubBase + stubRestorer + 7
	gadgetRet   = stubBase + stubSyscall + 2
)

// faultSignals are the signals the CPU raises for the guest's instructions;
// the handler catches them. Every other signal stays blocked.
var faultSignals = []unix.Signal{unix.SIGSEGV, unix.SIGBUS, unix.SIGILL, unix.SIGFPE, unix.SIGTRAP}

// Kernel constants for sigaction; x/sys/unix lacks SA_RESTORER.
const (
	saSiginfo  = 0x4
	saOnstack  = 0x08000000
	saRestorer = 0x04000000
)

// filter is the guest process's seccomp program. Four system calls are
// let through, and only from the stub's page: rt_sigreturn from the
// restorer (the end of every handler run), close through the gadget (which
// setup uses to drop the process's copy of the notification descriptor; the
// guest has nothing else to close), sigaltstack with the stub's own
// stack_t from the handler's reset (the guest gains nothing by it: it
// puts back the signal stack the stub set up, and rt_sigreturn already
// lets the guest choose any) and, from the reset too, mprotect of exactly
// the template to read-only (all the guest could do with it is seal what
// is sealed already). Everything else, the handler's reports and
// any system call the guest attempts, goes to the monitor as a user
// notification; the guest process waits until the monitor answers.
func filter() []bpf.Instruction {
	const (
		offNr     = 0  // seccomp_data.nr
		offArch   = 4  // seccomp_data.arch
		offIPLo   = 8  // seccomp_data.instruction_pointer, low half
		offIPHi   = 12 // high half
		offArg0Lo = 16 // seccomp_data.args[0], low half
		offArg0Hi = 20 // high half
		offArg1Lo = 24 // seccomp_data.args[1]
		offArg1Hi = 28
		offArg2Lo = 32 // seccomp_data.args[2]
		offArg2Hi = 36
	)
	allow := bpf.RetConstant{Val: unix.SECCOMP_RET_ALLOW}
	notify := bpf.RetConstant{Val: unix.SECCOMP_RET_USER_NOTIF}
	return []bpf.Instruction{
		/* 0 */ bpf.LoadAbsolute{Off: offArch, Size: 4},
		/* 1 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.AUDIT_ARCH_X86_64, SkipFalse: 32}, // to 34
		/* 2 */ bpf.LoadAbsolute{Off: offIPHi, Size: 4},
		/* 3 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: stubBase >> 32, SkipFalse: 30}, // to 34
		/* 4 */ bpf.LoadAbsolute{Off: offIPLo, Size: 4},
		/* 5 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: restorerRet & 0xffffffff, SkipFalse: 2}, // to 8
		/* 6 */ bpf.LoadAbsolute{Off: offNr, Size: 4},
		/* 7 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.SYS_RT_SIGRETURN, SkipTrue: 25, SkipFalse: 26}, // to 33, 34
		/* 8 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: gadgetRet & 0xffffffff, SkipFalse: 2}, // to 11
		/* 9 */ bpf.LoadAbsolute{Off: offNr, Size: 4},
		/* 10 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.SYS_CLOSE, SkipTrue: 22, SkipFalse: 23}, // to 33, 34
		/* 11 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: handlerAltstackRet & 0xffffffff, SkipFalse: 6}, // to 18
		/* 12 */ bpf.LoadAbsolute{Off: offNr, Size: 4},
		/* 13 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.SYS_SIGALTSTACK, SkipFalse: 20}, // to 34
		/* 14 */ bpf.LoadAbsolute{Off: offArg0Lo, Size: 4},
		/* 15 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: (stubBase + stubAltstack) & 0xffffffff, SkipFalse: 18}, // to 34
		/* 16 */ bpf.LoadAbsolute{Off: offArg0Hi, Size: 4},
		/* 17 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: (stubBase + stubAltstack) >> 32, SkipTrue: 15, SkipFalse: 16}, // to 33, 34
		/* 18 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: handlerSealRet & 0xffffffff, SkipFalse: 15}, // to 34
		/* 19 */ bpf.LoadAbsolute{Off: offNr, Size: 4},
		/* 20 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.SYS_MPROTECT, SkipFalse: 13}, // to 34
		/* 21 */ bpf.LoadAbsolute{Off: offArg0Lo, Size: 4},
		/* 22 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: tmplBase & 0xffffffff, SkipFalse: 11}, // to 34
		/* 23 */ bpf.LoadAbsolute{Off: offArg0Hi, Size: 4},
		/* 24 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: tmplBase >> 32, SkipFalse: 9}, // to 34
		/* 25 */ bpf.LoadAbsolute{Off: offArg1Lo, Size: 4},
		/* 26 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: tmplSize, SkipFalse: 7}, // to 34
		/* 27 */ bpf.LoadAbsolute{Off: offArg1Hi, Size: 4},
		/* 28 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: 0, SkipFalse: 5}, // to 34
		/* 29 */ bpf.LoadAbsolute{Off: offArg2Lo, Size: 4},
		/* 30 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.PROT_READ, SkipFalse: 3}, // to 34
		/* 31 */ bpf.LoadAbsolute{Off: offArg2Hi, Size: 4},
		/* 32 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: 0, SkipFalse: 1}, // to 34
		/* 33 */ allow,
		/* 34 */ notify,
	}
}

// stubELF returns the stub executable: a static, non-PIE ELF64 with one
// PT_LOAD segment (R+X, one page at stubBase), one for the region table (R+W,
// no file bytes) and a PT_GNU_STACK header that
// keeps the stack non-executable and stops older kernels from applying
// READ_IMPLIES_EXEC, which would make every readable guest page executable.
func stubELF() []byte {
	prog, err := bpf.Assemble(filter())
	if err != nil {
		panic("process: the seccomp filter does not assemble: " + err.Error()) // a bug in filter
	}
	if stubSetup+len(setupCode) > stubHandler {
		panic("process: the set-up routine overlaps the handler") // a bug in setup.S
	}
	if stubHandler+len(handlerCode) > stubFilter {
		panic("process: the handler overlaps the seccomp filter") // a bug in handler.S
	}
	end := stubFilter + 8*len(prog)
	if end > pageSize {
		panic("process: the seccomp filter overflows the stub's page") // a bug in filter
	}
	const (
		ehSize = 64
		phSize = 56
		phNum  = 3
	)
	var b bytes.Buffer
	le := binary.LittleEndian
	hdr := elf.Header64{
		Type:      uint16(elf.ET_EXEC),
		Machine:   uint16(elf.EM_X86_64),
		Version:   uint32(elf.EV_CURRENT),
		Entry:     stubBase + stubEntry,
		Phoff:     ehSize,
		Ehsize:    ehSize,
		Phentsize: phSize,
		Phnum:     phNum,
	}
	copy(hdr.Ident[:], elf.ELFMAG)
	hdr.Ident[elf.EI_CLASS] = byte(elf.ELFCLASS64)
	hdr.Ident[elf.EI_DATA] = byte(elf.ELFDATA2LSB)
	hdr.Ident[elf.EI_VERSION] = byte(elf.EV_CURRENT)
	hdr.Ident[elf.EI_OSABI] = byte(elf.ELFOSABI_NONE)
	progs := [phNum]elf.Prog64{{
		Type:   uint32(elf.PT_LOAD),
		Flags:  uint32(elf.PF_R | elf.PF_X),
		Vaddr:  stubBase,
		Paddr:  stubBase,
		Filesz: uint64(end),
		Memsz:  pageSize,
		Align:  pageSize,
	}, {
		Type:  uint32(elf.PT_LOAD), // the region table: no file bytes
		Flags: uint32(elf.PF_R | elf.PF_W),
		Vaddr: stubTable,
		Paddr: stubTable,
		Memsz: tableSize,
		Align: pageSize,
	}, {
		Type:  uint32(elf.PT_GNU_STACK),
		Flags: uint32(elf.PF_R | elf.PF_W),
		Align: 16,
	}}
	// Writes to a bytes.Buffer cannot fail.
	_ = binary.Write(&b, le, &hdr)
	_ = binary.Write(&b, le, &progs)

	img := make([]byte, end)
	copy(img, b.Bytes())
	copy(img[stubSyscall:], []byte{0x0f, 0x05, 0xcc}) // syscall; int3
	copy(img[stubEntry:], []byte{0xcc, 0x0f, 0x0b})   // int3; ud2

	le.PutUint16(img[stubFprog:], uint16(len(prog))) // sock_fprog.len
	le.PutUint64(img[stubFprog+8:], stubBase+stubFilter)

	le.PutUint64(img[stubSigaction:], stubBase+stubHandler) // sa_handler
	le.PutUint64(img[stubSigaction+8:], saSiginfo|saOnstack|saRestorer)
	le.PutUint64(img[stubSigaction+16:], stubBase+stubRestorer)
	le.PutUint64(img[stubSigaction+24:], ^uint64(0)) // sa_mask: block all

	le.PutUint64(img[stubAltstack:], altBase) // ss_sp
	le.PutUint32(img[stubAltstack+8:], ssAutodisarm)
	le.PutUint64(img[stubAltstack+16:], altSize)

	mask := ^uint64(0)
	for _, s := range faultSignals {
		mask &^= 1 << (s - 1)
	}
	le.PutUint64(img[stubSigmask:], mask)

	copy(img[stubHandler:], handlerCode)
	copy(img[stubRestorer:], restorerCode)
	copy(img[stubSetup:], setupCode)
	for i, ins := range prog {
		o := stubFilter + 8*i
		le.PutUint16(img[o:], ins.Op)
		img[o+2], img[o+3] = ins.Jt, ins.Jf
		le.PutUint32(img[o+4:], ins.K)
	}
	return img
}
