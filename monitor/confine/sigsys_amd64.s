#include "go_asm.h"
#include "textflag.h"

// The message's fixed part: "tender: seccomp: forbidden system call ".
#define PREFIX_LEN 39
DATA sigsysPrefix<>+0(SB)/8, $"tender: "
DATA sigsysPrefix<>+8(SB)/8, $"seccomp:"
DATA sigsysPrefix<>+16(SB)/8, $" forbidd"
DATA sigsysPrefix<>+24(SB)/8, $"en syste"
DATA sigsysPrefix<>+32(SB)/7, $"m call "
GLOBL sigsysPrefix<>(SB), RODATA|NOPTR, $40

// func sigsys()
//
// The SIGSYS handler, entered by the kernel as handler(signo DI, info SI,
// uctx DX) on the thread's signal stack, every signal blocked. It writes
// the message and the number of the forbidden call (info->si_syscall) to
// stderr in one write and ends the process with status const_sigsysExit.
// It uses no Go state, so it is safe on any thread at any moment.
TEXT ·sigsys(SB),NOSPLIT|NOFRAME,$0
	MOVL	24(SI), AX	// si_syscall
	SUBQ	$96, SP
	LEAQ	95(SP), R8	// the message ends at 95(SP) with '\n'
	MOVB	$10, (R8)
	MOVL	$10, CX
digits:
	XORL	DX, DX
	DIVL	CX
	ADDB	$48, DL
	DECQ	R8
	MOVB	DL, (R8)
	TESTL	AX, AX
	JNZ	digits
	SUBQ	$PREFIX_LEN, R8	// the prefix goes before the digits
	MOVQ	R8, DI
	LEAQ	sigsysPrefix<>(SB), SI
	MOVQ	$PREFIX_LEN, CX
	CLD
	REP; MOVSB
	LEAQ	96(SP), DX	// write(2, R8, end-R8)
	SUBQ	R8, DX
	MOVQ	R8, SI
	MOVL	$2, DI
	MOVL	$1, AX	// SYS_write
	SYSCALL
	MOVL	$const_sigsysExit, DI
	MOVL	$231, AX	// SYS_exit_group
	SYSCALL
	INT	$3

// func sigreturn()
//
// The restorer x86-64 requires of a handler; sigsys never returns to it.
TEXT ·sigreturn(SB),NOSPLIT|NOFRAME,$0
	MOVL	$15, AX	// SYS_rt_sigreturn
	SYSCALL
	INT	$3

// func handlerAddrs() (handler, restorer uintptr)
TEXT ·handlerAddrs(SB),NOSPLIT,$0-16
	LEAQ	·sigsys(SB), AX
	MOVQ	AX, handler+0(FP)
	LEAQ	·sigreturn(SB), AX
	MOVQ	AX, restorer+8(FP)
	RET
