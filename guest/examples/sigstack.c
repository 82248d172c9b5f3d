/* sigstack (hostile): faults with its exception delivery wrecked, aiming at
 * the process backend, where the guest runs as a process and its
 * exceptions reach the monitor as signals through the stub's handler on a
 * signal stack at 0x7e0000010000 (64 KiB).
 *
 *	sigstack          RSP near the bottom of that signal stack
 *	                  (0x7e0000010400), then ud2. The kernel used to put
 *	                  the signal frame below RSP, under the stack, fail,
 *	                  and kill the process with SIGSEGV and a core dump of
 *	                  its memory; it now puts every frame at the top of the
 *	                  signal stack. Expected: #UD, as under KVM.
 *	sigstack mask     blocks SIGILL and SIGSEGV through a forged
 *	                  rt_sigreturn (a jump to the stub's restorer with RSP
 *	                  at a ucontext of the guest's making), then ud2: the
 *	                  kernel kills the process with SIGILL, which must be
 *	                  reported as a crash, with no core dump. Under KVM the
 *	                  stub is not mapped: #PF.
 *	sigstack altstack the same, moving the signal stack to unmapped memory
 *	                  instead: SIGILL cannot be delivered, and the kernel
 *	                  kills the process with SIGSEGV. Under KVM: #PF.
 *
 * It prints one line before it faults. */
#include "tender.h"

uint64_t sigstack_uc[64] __attribute__((aligned(16))); /* zero: uc_flags, fpstate (the FPU starts afresh) */

/* sigreturn_to_ud2 rt_sigreturns through the stub's restorer (rdi) to a
 * ud2 with the signal mask rsi and the signal stack [rdx, rdx + rcx). */
__attribute__((noreturn)) void sigstack_sigreturn(uint64_t restorer, uint64_t mask, uint64_t sp, uint64_t size);

__asm__(".text\n"
	".globl sigstack_sigreturn\n"
	"sigstack_sigreturn:\n"
	"	lea sigstack_uc(%rip), %rax\n"      /* struct ucontext */
	"	mov %rdx, 16(%rax)\n"      /* uc_stack.ss_sp */
	"	mov %rcx, 32(%rax)\n"      /* uc_stack.ss_size */
	"	mov %rsp, 160(%rax)\n"     /* uc_mcontext.rsp */
	"	lea 1f(%rip), %rcx\n"
	"	mov %rcx, 168(%rax)\n"     /* .rip */
	"	movq $0x202, 176(%rax)\n"  /* .eflags */
	"	mov %cs, %ecx\n"
	"	mov %cx, 184(%rax)\n"      /* .cs */
	"	mov %ss, %ecx\n"
	"	mov %cx, 190(%rax)\n"      /* .ss */
	"	mov %rsi, 296(%rax)\n"     /* uc_sigmask */
	"	mov %rax, %rsp\n"          /* rt_sigreturn's frame is at RSP - 8 */
	"	jmp *%rdi\n"
	"1:	ud2\n");

int main(int argc, char **argv)
{
	const uint64_t restorer = 0x7e0000000170ULL; /* mov $15, %eax; syscall */
	const uint64_t stub_mask = ~0x4d8ULL;       /* all but the fault signals */
	const uint64_t ill_segv = 1ULL << (4 - 1) | 1ULL << (11 - 1);

	if (argc > 1 && strcmp(argv[1], "mask") == 0) {
		printf("sigstack: SIGILL and SIGSEGV blocked, then ud2\n");
		sigstack_sigreturn(restorer, stub_mask | ill_segv, 0x7e0000010000ULL, 0x10000);
	}
	if (argc > 1 && strcmp(argv[1], "altstack") == 0) {
		printf("sigstack: the signal stack moved to unmapped memory, then ud2\n");
		sigstack_sigreturn(restorer, stub_mask, 0x7e0000100000ULL, 0x10000);
	}
	printf("sigstack: RSP into the signal stack, then ud2\n");
	__asm__ __volatile__("movabs $0x7e0000010400, %rsp\n ud2\n");
	return 0;
}
