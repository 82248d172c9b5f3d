/*
 * start.S: the entry point of a Solo5-ABI guest. Entered in 64-bit mode
 * with RDI = boot information, it does what a Solo5 guest's start code
 * does before C runs: load its own GDT, far-return into its code
 * selector 0x8, reload the data segments, load a task register and an
 * IDT. Under tender these privileged instructions trap and the monitor
 * emulates them; the tables below are never used by the CPU. The moves
 * between them are in the encodings Solo5's start code uses, which the
 * monitor on KVM runs for the guest within the lgdt's trap.
 */
	.section .text.start, "ax", @progbits
	.globl	_start
	.type	_start, @function
_start:
	movq	%rdi, %r12		/* boot info, kept across the set-up */
	/* The CPU reads four words for a far return to another privilege
	 * level before it refuses it: keep them inside memory. */
	subq	$64, %rsp
	lgdt	s5_gdt_ptr(%rip)
	pushq	$0x8
	pushq	$1f			/* the forms Solo5's start code uses */
	lretq
1:	movl	$0x10, %eax
	movl	%eax, %ds
	movl	%eax, %es
	movl	%eax, %ss
	movl	$0x18, %eax
	ltr	%ax
	lidt	s5_idt_ptr(%rip)
	xorl	%ebp, %ebp
	andq	$-16, %rsp
	movq	%r12, %rdi
	call	s5_start
2:	hlt
	jmp	2b
	.size	_start, . - _start

	.section .rodata.s5tables, "a", @progbits
	.balign	16
s5_gdt:
	.quad	0
	.quad	0x00af9b000000ffff	/* 0x08: code */
	.quad	0x00cf93000000ffff	/* 0x10: data */
	.quad	0, 0			/* 0x18: TSS (unused) */
s5_gdt_end:
	.balign	16
s5_idt:
	.fill	64, 8, 0
s5_idt_end:
	.balign	8
s5_gdt_ptr:
	.word	s5_gdt_end - s5_gdt - 1
	.quad	s5_gdt
	.balign	8
s5_idt_ptr:
	.word	s5_idt_end - s5_idt - 1
	.quad	s5_idt

	.section .note.GNU-stack, "", @progbits
