package ptrace

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
//	stubBase+stubHandler   the handler (handlerCode)
//	stubBase+stubRestorer  rt_sigreturn; ud2
//	stubBase+stubFilter    the seccomp filter's instructions
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
	stubHandler   = 0x120 // offset of the signal handler
	stubRestorer  = 0x170 // offset of the signal return gadget
	stubFilter    = 0x180 // offset of the seccomp filter's instructions

	// stubTrapRIP is where the tracee stops after an injected system call:
	// just past the int3 that follows the gadget.
	stubTrapRIP = stubBase + stubSyscall + 3

	// altBase and altSize place the signal stack: anonymous memory with
	// unmapped pages on both sides. 64 KiB holds a signal frame with the
	// largest XSAVE area many times over.
	altBase = stubBase + 0x10000
	altSize = 0x10000
)

// handlerCode is the signal handler, entered as handler(signo, siginfo,
// ucontext) on the alternate stack with every signal blocked. It reports the
// exception in one system call (getppid, which the filter hands to the
// monitor) and resumes the guest that many bytes further on as the monitor
// answers:
//
//	mov    %rdx,%rbx            ; ucontext
//	mov    0x10(%rsi),%rdx      ; arg2 = si_addr
//	movslq 0x8(%rsi),%rax       ; si_code
//	shl    $0x20,%rax
//	mov    %edi,%edi
//	or     %rax,%rdi            ; arg0 = si_code<<32 | signo
//	mov    0xc8(%rbx),%rsi      ; mcontext trapno
//	shl    $0x20,%rsi
//	mov    0xc0(%rbx),%eax      ; mcontext err
//	or     %rax,%rsi            ; arg1 = trapno<<32 | error code
//	mov    0xa8(%rbx),%r10      ; arg3 = rip
//	mov    0x90(%rbx),%r8       ; arg4 = rax
//	mov    0x88(%rbx),%r9       ; arg5 = rdx
//	mov    $0x6e,%eax           ; getppid
//	syscall                     ; returns at handlerSyscallRet
//	add    %rax,0xa8(%rbx)      ; rip += the monitor's answer
//	ret                         ; to the restorer
//
// The ucontext offsets are those of the x86-64 sigcontext: uc_mcontext at
// 40, its general registers 8 bytes each (rdx 12, rax 13, rip 16, err 19,
// trapno 20). si_addr is at offset 16 of siginfo_t, si_code at 8.
var handlerCode = []byte{
	0x48, 0x89, 0xd3,
	0x48, 0x8b, 0x56, 0x10,
	0x48, 0x63, 0x46, 0x08,
	0x48, 0xc1, 0xe0, 0x20,
	0x89, 0xff,
	0x48, 0x09, 0xc7,
	0x48, 0x8b, 0xb3, 0xc8, 0x00, 0x00, 0x00,
	0x48, 0xc1, 0xe6, 0x20,
	0x8b, 0x83, 0xc0, 0x00, 0x00, 0x00,
	0x48, 0x09, 0xc6,
	0x4c, 0x8b, 0x93, 0xa8, 0x00, 0x00, 0x00,
	0x4c, 0x8b, 0x83, 0x90, 0x00, 0x00, 0x00,
	0x4c, 0x8b, 0x8b, 0x88, 0x00, 0x00, 0x00,
	0xb8, 0x6e, 0x00, 0x00, 0x00,
	0x0f, 0x05,
	0x48, 0x01, 0x83, 0xa8, 0x00, 0x00, 0x00,
	0xc3,
}

// restorerCode returns from the handler: mov $15,%eax (rt_sigreturn);
// syscall; ud2.
var restorerCode = []byte{0xb8, 0x0f, 0x00, 0x00, 0x00, 0x0f, 0x05, 0x0f, 0x0b}

const (
	// handlerSyscallRet is the instruction pointer seccomp sees for the
	// handler's report: just past its syscall instruction.
	handlerSyscallRet = stubBase + stubHandler + 0x44
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

// filter is the guest process's seccomp program. Two system calls are let
// through, and only from the stub's page: rt_sigreturn from the restorer
// (the end of every handler run) and close through the gadget (which setup
// uses to drop the process's copy of the notification descriptor; the guest
// has nothing else to close). Everything else, the handler's reports and any
// system call the guest attempts, goes to the monitor as a user
// notification; the guest process waits until the monitor answers.
func filter() []bpf.Instruction {
	const (
		offNr   = 0  // seccomp_data.nr
		offArch = 4  // seccomp_data.arch
		offIPLo = 8  // seccomp_data.instruction_pointer, low half
		offIPHi = 12 // high half
	)
	allow := bpf.RetConstant{Val: unix.SECCOMP_RET_ALLOW}
	notify := bpf.RetConstant{Val: unix.SECCOMP_RET_USER_NOTIF}
	return []bpf.Instruction{
		/* 0 */ bpf.LoadAbsolute{Off: offArch, Size: 4},
		/* 1 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.AUDIT_ARCH_X86_64, SkipFalse: 10}, // to 12
		/* 2 */ bpf.LoadAbsolute{Off: offIPHi, Size: 4},
		/* 3 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: stubBase >> 32, SkipFalse: 8}, // to 12
		/* 4 */ bpf.LoadAbsolute{Off: offIPLo, Size: 4},
		/* 5 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: restorerRet & 0xffffffff, SkipFalse: 2}, // to 8
		/* 6 */ bpf.LoadAbsolute{Off: offNr, Size: 4},
		/* 7 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.SYS_RT_SIGRETURN, SkipTrue: 3, SkipFalse: 4}, // to 11, 12
		/* 8 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: gadgetRet & 0xffffffff, SkipFalse: 3}, // to 12
		/* 9 */ bpf.LoadAbsolute{Off: offNr, Size: 4},
		/* 10 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.SYS_CLOSE, SkipFalse: 1}, // to 12
		/* 11 */ allow,
		/* 12 */ notify,
	}
}

// stubELF returns the stub executable: a static, non-PIE ELF64 with one
// PT_LOAD segment (R+X, one page at stubBase) and a PT_GNU_STACK header that
// keeps the stack non-executable and stops older kernels from applying
// READ_IMPLIES_EXEC, which would make every readable guest page executable.
func stubELF() []byte {
	prog, err := bpf.Assemble(filter())
	if err != nil {
		panic("ptrace: the seccomp filter does not assemble: " + err.Error()) // a bug in filter
	}
	end := stubFilter + 8*len(prog)
	const (
		ehSize = 64
		phSize = 56
		phNum  = 2
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

	le.PutUint64(img[stubAltstack:], altBase) // ss_sp; ss_flags 0
	le.PutUint64(img[stubAltstack+16:], altSize)

	mask := ^uint64(0)
	for _, s := range faultSignals {
		mask &^= 1 << (s - 1)
	}
	le.PutUint64(img[stubSigmask:], mask)

	copy(img[stubHandler:], handlerCode)
	copy(img[stubRestorer:], restorerCode)
	for i, ins := range prog {
		o := stubFilter + 8*i
		le.PutUint16(img[o:], ins.Op)
		img[o+2], img[o+3] = ins.Jt, ins.Jf
		le.PutUint32(img[o+4:], ins.K)
	}
	return img
}
