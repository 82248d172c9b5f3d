#include "go_asm.h"
#include "textflag.h"

#define SYS_SECCOMP	1	// si_code of a SIGSYS the filter raised
#define F_GETFL	3
#define F_SETFL	4
#define O_NONBLOCK	0x800

// A forbidden call's message: "tender: seccomp: forbidden system call ",
// its number, "\n".
#define PREFIX_LEN 39
DATA sigsysPrefix<>+0(SB)/8, $"tender: "
DATA sigsysPrefix<>+8(SB)/8, $"seccomp:"
DATA sigsysPrefix<>+16(SB)/8, $" forbidd"
DATA sigsysPrefix<>+24(SB)/8, $"en syste"
DATA sigsysPrefix<>+32(SB)/7, $"m call "
GLOBL sigsysPrefix<>(SB), RODATA|NOPTR, $40

// A SIGSYS another process sent (kill -SYS): "tender: seccomp: SIGSYS sent
// by process ", its sender's PID, ", not by the filter\n".
#define SENT_PREFIX_LEN 40
DATA sentPrefix<>+0(SB)/8, $"tender: "
DATA sentPrefix<>+8(SB)/8, $"seccomp:"
DATA sentPrefix<>+16(SB)/8, $" SIGSYS "
DATA sentPrefix<>+24(SB)/8, $"sent by "
DATA sentPrefix<>+32(SB)/8, $"process "
GLOBL sentPrefix<>(SB), RODATA|NOPTR, $40
#define SENT_SUFFIX_LEN 20
DATA sentSuffix<>+0(SB)/8, $", not by"
DATA sentSuffix<>+8(SB)/8, $" the fil"
DATA sentSuffix<>+16(SB)/4, $"ter\n"
GLOBL sentSuffix<>(SB), RODATA|NOPTR, $24

// func sigsys()
//
// The SIGSYS handler, entered by the kernel as handler(signo DI, info SI,
// uctx DX) on the thread's signal stack, every signal blocked. It writes
// the message, naming the forbidden call (info->si_syscall) or, for a
// SIGSYS the filter did not raise (si_code not SYS_SECCOMP), the process
// that sent it (si_pid), to stderr in one write, and ends the process with
// status const_sigsysExit either way. The write is made non-blocking (the
// flags are put back after it), since a stderr pipe nobody reads would
// hold the thread, and the exit, for ever: the message is dropped instead.
// It uses no Go state, so it is safe on any thread at any moment.
TEXT ·sigsys(SB),NOSPLIT|NOFRAME,$0
	SUBQ	$128, SP
	LEAQ	128(SP), R8	// the message is built backwards from 128(SP)
	CMPL	8(SI), $SYS_SECCOMP	// si_code
	JNE	sent
	MOVL	24(SI), AX	// si_syscall
	DECQ	R8
	MOVB	$10, (R8)	// '\n'
	LEAQ	sigsysPrefix<>(SB), R9
	MOVQ	$PREFIX_LEN, R10
	JMP	number
sent:
	MOVL	16(SI), AX	// si_pid
	SUBQ	$SENT_SUFFIX_LEN, R8
	MOVQ	R8, DI
	LEAQ	sentSuffix<>(SB), SI
	MOVQ	$SENT_SUFFIX_LEN, CX
	CLD
	REP; MOVSB
	LEAQ	sentPrefix<>(SB), R9
	MOVQ	$SENT_PREFIX_LEN, R10
number:
	MOVL	$10, CX
digits:
	XORL	DX, DX
	DIVL	CX
	ADDB	$48, DL
	DECQ	R8
	MOVB	DL, (R8)
	TESTL	AX, AX
	JNZ	digits
	SUBQ	R10, R8	// the prefix goes before the digits
	MOVQ	R8, DI
	MOVQ	R9, SI
	MOVQ	R10, CX
	CLD
	REP; MOVSB
	MOVL	$2, DI	// R12 = fcntl(2, F_GETFL)
	MOVL	$F_GETFL, SI
	MOVL	$72, AX	// SYS_fcntl
	SYSCALL
	MOVQ	AX, R12
	TESTQ	R12, R12
	JS	write	// stderr is closed: the write fails too
	MOVL	$2, DI	// fcntl(2, F_SETFL, R12|O_NONBLOCK)
	MOVL	$F_SETFL, SI
	MOVQ	R12, DX
	ORQ	$O_NONBLOCK, DX
	MOVL	$72, AX
	SYSCALL
write:
	LEAQ	128(SP), DX	// write(2, R8, end-R8)
	SUBQ	R8, DX
	MOVQ	R8, SI
	MOVL	$2, DI
	MOVL	$1, AX	// SYS_write
	SYSCALL
	TESTQ	R12, R12
	JS	exit
	MOVL	$2, DI	// fcntl(2, F_SETFL, R12): stderr's file is shared
	MOVL	$F_SETFL, SI
	MOVQ	R12, DX
	MOVL	$72, AX
	SYSCALL
exit:
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
