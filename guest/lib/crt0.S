/*
 * crt0.S: the guest entry point.
 *
 * The monitor enters _start at CPL 3 with RDI = address of the boot info,
 * RSP = boot_info->stack_top (16-byte aligned) and every other register zero.
 * _start marks the outermost frame, puts the FPU and SSE control state in
 * their default configuration and calls tender_start(boot_info), which never
 * returns.
 */
	.section .text.start, "ax", @progbits
	.globl	_start
	.type	_start, @function
_start:
	xorl	%ebp, %ebp		/* outermost frame for debuggers */
	andq	$-16, %rsp		/* already aligned; be safe */
	fninit				/* x87: default control word */
	pushq	$0x1f80			/* MXCSR: all exceptions masked, */
	ldmxcsr	(%rsp)			/* round to nearest */
	popq	%rax
	xorl	%eax, %eax
	call	tender_start		/* RDI still holds the boot info */
1:	ud2				/* not reached */
	jmp	1b
	.size	_start, . - _start

	.section .note.GNU-stack, "", @progbits
