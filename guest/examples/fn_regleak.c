/* fn_regleak (hostile): a function that tries to carry state from one fresh
 * request into the next through what the reset must put back: the general
 * registers, RFLAGS and the data segment selectors. It serves requests with
 * its own loop (not tender_fn_serve, which reloads the selectors itself).
 *
 * Every reply describes the state its request started in:
 *
 *	"r15=XXXXXXXX id=N es=0xS alt=N"
 *
 * R15 as 8 bytes ("SNAPSHOT" at the first fn_next), the ID bit of RFLAGS,
 * the ES selector, and whether the signal frame of a hypercall (walltime)
 * made at the start of the request landed in this guest's own memory, below
 * its stack pointer of the first fn_next (1), rather than on the process
 * backend's signal stack (0; always 0 under KVM). The body is
 * "ACTION:XXXXXXXX"; every action sets R15 to the 8 bytes and then:
 *
 *	forge  hands the reply in through a forged exception report: the
 *	       process backend's guest process can read and run the page of
 *	       its monitor's stub, so the guest finds the handler's report (the
 *	       bytes of `mov $110,%eax; syscall`) and jumps to its syscall with
 *	       arguments that describe a #GP at this guest's real out
 *	       instruction, RBX at scratch memory and RSP at a pointer in
 *	       read-only data (which a reset does not change) to the code that
 *	       starts the next request. Under KVM that page is not mapped: #PF.
 *	tf     forge with the trap flag set (an iretq to the syscall): the
 *	       kernel keeps TF for the return of that system call, so the
 *	       next request's reset single-steps in the stub's handler and
 *	       fails there. That request must not pay for it: the pool hands
 *	       it to another instance. Under KVM: #PF.
 *	id     sets RFLAGS.ID (popf), which rt_sigreturn does not restore
 *	es     loads ES with the stack's selector
 *	alt    moves the guest process's signal stack into guest memory, around
 *	       the stack pointer of the first fn_next, through a forged
 *	       rt_sigreturn: a jump to the stub's restorer with RSP at a
 *	       ucontext of the guest's making (its uc_stack). A reset's own
 *	       rt_sigreturn leaves a signal stack that holds the RSP it
 *	       restores in place. Under KVM: #PF.
 *	other  nothing more
 *
 * A fresh instance must answer every request like the first:
 * "r15=SNAPSHOT id=0 es=... alt=0" with the snapshot's selector. Under warm each
 * request sees what the previous one left. */
#include "tender.h"

struct tender_fn_next fn_regleak_next;
uint8_t fn_regleak_req[TENDER_FN_REQUEST_MAX];
uint8_t fn_regleak_scratch[512];
uint64_t fn_regleak_stack[2048] __attribute__((aligned(16)));
uint64_t fn_regleak_snap_rsp; /* RSP at the first fn_next */
uint64_t fn_regleak_uc[64] __attribute__((aligned(16)));
static char reply[64];

/* The assembly below: first (R15 = "SNAPSHOT", the first fn_next);
 * next_with (R15 = rdi; also RFLAGS.ID when rsi is 1, ES = SS when rsi is
 * 2); forge_with (R15 = rsi, the forged report to the syscall at rdi);
 * alt_with (R15 = rsi, rt_sigreturn through the restorer at rdi to the
 * hand-in, with the signal stack [rdx, rdx + rcx)). All land at started,
 * which calls request(r15, rflags, es) on a stack of its own. */
__attribute__((noreturn)) void fn_regleak_first(void);
__attribute__((noreturn)) void fn_regleak_next_with(uint64_t r15, uint64_t how);
__attribute__((noreturn)) void fn_regleak_forge_with(uint64_t syscall, uint64_t r15);
__attribute__((noreturn)) void fn_regleak_forge_tf_with(uint64_t syscall, uint64_t r15);
__attribute__((noreturn)) void fn_regleak_alt_with(uint64_t restorer, uint64_t r15, uint64_t sp, uint64_t size);
__attribute__((noreturn, used)) void fn_regleak_request(uint64_t r15, uint64_t rflags, uint64_t es);

__asm__(".section .rodata\n"
	".balign 8\n"
	"fn_regleak_resume: .quad fn_regleak_started\n"
	".text\n"
	".globl fn_regleak_first\n"
	"fn_regleak_first:\n"
	"	movabs $0x544f485350414e53, %r15\n" /* "SNAPSHOT" */
	"	mov %rsp, fn_regleak_snap_rsp(%rip)\n"
	"	jmp fn_regleak_hand_in\n"
	".globl fn_regleak_next_with\n"
	"fn_regleak_next_with:\n"
	"	mov %rdi, %r15\n"
	"	cmp $1, %rsi\n"
	"	jne 1f\n"
	"	pushfq\n"
	"	orl $0x200000, (%rsp)\n"
	"	popfq\n"
	"1:	cmp $2, %rsi\n"
	"	jne fn_regleak_hand_in\n"
	"	mov %ss, %ax\n"
	"	mov %ax, %es\n"
	"fn_regleak_hand_in:\n"
	"	lea fn_regleak_next(%rip), %rax\n"
	"	mov $0x505, %edx\n" /* TENDER_PIO_BASE + TENDER_HC_FN_NEXT */
	"fn_regleak_out:\n"
	"	outl %eax, %dx\n"
	"fn_regleak_started:\n"
	"	lea fn_regleak_stack+16384(%rip), %rsp\n"
	"	mov %r15, %rdi\n"
	"	pushfq\n"
	"	pop %rsi\n"
	"	xor %edx, %edx\n"
	"	mov %es, %dx\n"
	"	call fn_regleak_request\n"
	"	ud2\n"
	".globl fn_regleak_forge_with\n"
	"fn_regleak_forge_with:\n"
	"	mov %rsi, %r15\n"
	"	mov %rdi, %rcx\n"
	"	lea fn_regleak_scratch(%rip), %rbx\n"    /* the handler adds its answer at 168(%rbx) */
	"	lea fn_regleak_resume(%rip), %rsp\n"     /* and returns through (%rsp) */
	"	movabs $0x800000000b, %rdi\n"             /* SI_KERNEL << 32 | SIGSEGV */
	"	movabs $0x000d000000000000, %rsi\n"       /* trap 13 (#GP), error code 0 */
	"	lea fn_regleak_stack+8192(%rip), %rdx\n" /* RSP, for a #GP */
	"	lea fn_regleak_out(%rip), %r10\n"        /* RIP: the real out */
	"	lea fn_regleak_next(%rip), %r8\n"        /* RAX: the fn_next structure */
	"	mov $0x505, %r9d\n"                       /* RDX: the port */
	"	mov $110, %eax\n"                         /* getppid, as the handler */
	"	jmp *%rcx\n"
	".globl fn_regleak_forge_tf_with\n"
	"fn_regleak_forge_tf_with:\n"
	"	mov %rsi, %r15\n"
	"	mov %rdi, %rcx\n"
	"	lea fn_regleak_scratch(%rip), %rbx\n"
	"	mov %ss, %r11d\n"
	"	push %r11\n"                             /* SS */
	"	lea fn_regleak_resume(%rip), %r11\n"
	"	push %r11\n"                             /* RSP, as forge's */
	"	pushfq\n"
	"	orq $0x100, (%rsp)\n"                    /* RFLAGS with TF */
	"	mov %cs, %r11d\n"
	"	push %r11\n"                             /* CS */
	"	push %rcx\n"                             /* RIP: the syscall */
	"	movabs $0x800000000b, %rdi\n"
	"	movabs $0x000d000000000000, %rsi\n"
	"	lea fn_regleak_stack+8192(%rip), %rdx\n"
	"	lea fn_regleak_out(%rip), %r10\n"
	"	lea fn_regleak_next(%rip), %r8\n"
	"	mov $0x505, %r9d\n"
	"	mov $110, %eax\n"
	"	iretq\n"
	".globl fn_regleak_alt_with\n"
	"fn_regleak_alt_with:\n"
	"	mov %rsi, %r15\n"
	"	lea fn_regleak_uc(%rip), %rax\n" /* struct ucontext */
	"	movq $0, 0(%rax)\n"              /* uc_flags */
	"	movq $0, 8(%rax)\n"              /* uc_link */
	"	mov %rdx, 16(%rax)\n"            /* uc_stack.ss_sp */
	"	movq $0, 24(%rax)\n"             /* uc_stack.ss_flags */
	"	mov %rcx, 32(%rax)\n"            /* uc_stack.ss_size */
	"	mov %r15, 96(%rax)\n"            /* uc_mcontext.r15 */
	"	mov %rsp, 160(%rax)\n"           /* .rsp */
	"	lea fn_regleak_hand_in(%rip), %rcx\n"
	"	mov %rcx, 168(%rax)\n"           /* .rip */
	"	movq $0x202, 176(%rax)\n"        /* .eflags */
	"	mov %cs, %ecx\n"
	"	mov %cx, 184(%rax)\n"            /* .cs */
	"	movl $0, 186(%rax)\n"            /* .gs, .fs */
	"	mov %ss, %ecx\n"
	"	mov %cx, 190(%rax)\n"            /* .ss */
	"	movq $0, 224(%rax)\n"            /* .fpstate: none, the FPU starts afresh */
	"	movq $-0x4d9, %rcx\n"            /* all but SIGILL, SIGTRAP, SIGBUS, SIGFPE, SIGSEGV */
	"	mov %rcx, 296(%rax)\n"           /* uc_sigmask */
	"	mov %rax, %rsp\n"                /* rt_sigreturn's frame is at RSP - 8 */
	"	jmp *%rdi\n");

#define STUB 0x7e0000000000ULL

/* stub_find returns the address of the first `mov $nr, %eax; syscall` in
 * the stub's page (the handler's report for 110, getppid; the restorer for
 * 15, rt_sigreturn). Reading the page faults where it is not mapped (KVM). */
static uint64_t stub_find(uint8_t nr)
{
	const uint8_t want[] = {0xb8, nr, 0x00, 0x00, 0x00, 0x0f, 0x05};
	const volatile uint8_t *page = (const volatile uint8_t *)STUB;
	size_t i, j;

	for (i = 0; i + sizeof(want) <= 4096; i++) {
		for (j = 0; j < sizeof(want) && page[i + j] == want[j]; j++)
			;
		if (j == sizeof(want))
			return STUB + i;
	}
	tender_abort("fn_regleak: not found in the stub's page");
}

/* frame_below says whether a signal frame (the stub restorer's address,
 * which starts one) lies in the 64 KiB below RSP of the first fn_next. */
static int frame_below(void)
{
	const volatile uint64_t *p = (const volatile uint64_t *)(fn_regleak_snap_rsp - 0x10000);
	const uint64_t restorer = STUB + 0x170;
	size_t i;

	for (i = 0; i < 0x10000 / 8; i++)
		if (p[i] == restorer)
			return 1;
	return 0;
}

void fn_regleak_request(uint64_t r15, uint64_t rflags, uint64_t es)
{
	struct tender_fn_next *nx = &fn_regleak_next;
	const uint8_t *body = fn_regleak_req;
	size_t len = nx->req_len;
	uint64_t next = 0;
	int n;

	tender_walltime_ns(); /* a hypercall: where does its frame go? */
	n = snprintf(reply, sizeof(reply), "r15=%.8s id=%d es=%#x alt=%d", (const char *)&r15,
		     (int)(rflags >> 21 & 1), (unsigned)es, frame_below());
	nx->flags = TENDER_FN_HAS_REPLY;
	nx->reply_status = 0;
	nx->reply_data = (uint64_t)(uintptr_t)reply;
	nx->reply_len = (uint64_t)n;
	nx->req_buf = (uint64_t)(uintptr_t)fn_regleak_req;
	nx->req_cap = sizeof(fn_regleak_req);

	size_t act = 0;
	while (act < len && act < 8 && body[act] != ':')
		act++;
	if (len > sizeof(fn_regleak_req) || act == len || body[act] != ':')
		fn_regleak_next_with(next, 0);
	if (len - act - 1 >= 8)
		memcpy(&next, body + act + 1, 8);
	if (act == 5 && memcmp(body, "forge", 5) == 0)
		fn_regleak_forge_with(stub_find(110) + 5, next);
	if (act == 2 && memcmp(body, "tf", 2) == 0)
		fn_regleak_forge_tf_with(stub_find(110) + 5, next);
	if (act == 3 && memcmp(body, "alt", 3) == 0)
		fn_regleak_alt_with(stub_find(15), next, fn_regleak_snap_rsp - 0x10000, 0x10008);
	if (act == 2 && memcmp(body, "id", 2) == 0)
		fn_regleak_next_with(next, 1);
	if (act == 2 && memcmp(body, "es", 2) == 0)
		fn_regleak_next_with(next, 2);
	fn_regleak_next_with(next, 0);
}

int main(void)
{
	fn_regleak_next.flags = 0; /* the first call has no reply */
	fn_regleak_next.req_buf = (uint64_t)(uintptr_t)fn_regleak_req;
	fn_regleak_next.req_cap = sizeof(fn_regleak_req);
	fn_regleak_first();
}
