# The stub's set-up routine (stubSetup in stub.go), which the tracer runs
# once, with one stop at the int3 at its end. On entry r13 is the number of
# guest regions in the table at TABLE (address, size, prot: 8 bytes each).
# At the int3 r12 is 0 and rax the seccomp listener's descriptor, or r12 is
# the number of the step that failed (r13 the regions left to map, for step
# 12) and rax its -errno. Nothing here touches the stack, which step 13
# unmaps. TestStubCode assembles this file and compares the bytes.
	.equ STUB, 0x7e0000000000
	.equ FPROG, STUB + 0xd0
	.equ SIGACT, STUB + 0xe0
	.equ ALTSTACK, STUB + 0x100
	.equ SIGMASK, STUB + 0x118
	.equ ALT, STUB + 0x10000
	.equ ALTSIZE, 0x10000
	.equ TABLE, STUB + 0x2000
	.equ TOP, 0x7ffffffff000

	.macro check
	cmp $-4095, %rax
	jae fail
	.endm

	.macro sigaction step, sig
	mov $\step, %r12d
	mov $\sig, %edi
	movabs $SIGACT, %rsi
	xor %edx, %edx
	mov $8, %r10d
	mov $13, %eax		# rt_sigaction
	syscall
	check
	.endm

	.text
setup:
	movabs $TABLE, %rbx
	mov $12, %r12d		# map each guest region from the guest memfd
maps:
	test %r13, %r13
	jz mapped
	mov (%rbx), %rdi
	mov 8(%rbx), %rsi
	mov 16(%rbx), %rdx
	mov $0x100001, %r10d	# MAP_SHARED|MAP_FIXED_NOREPLACE
	mov $3, %r8d		# the guest memfd
	mov %rdi, %r9		# at its own offset
	mov $9, %eax
	syscall
	check
	add $24, %rbx
	dec %r13
	jmp maps
mapped:
	mov $13, %r12d		# munmap from the region table to the top of
	movabs $TABLE, %rdi	# the address space: the table, the initial
	movabs $TOP - TABLE, %rsi # stack, the vDSO (stub.go says why)
	mov $11, %eax
	syscall
	check
	mov $1, %r12d		# mmap the signal stack
	movabs $ALT, %rdi
	mov $ALTSIZE, %esi
	mov $3, %edx		# PROT_READ|PROT_WRITE
	mov $0x100022, %r10d	# MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED_NOREPLACE
	mov $-1, %r8
	xor %r9d, %r9d
	mov $9, %eax
	syscall
	check
	mov $2, %r12d		# close_range(0, ~0U, 0): every descriptor
	xor %edi, %edi
	mov $0xffffffff, %esi
	xor %edx, %edx
	mov $436, %eax
	syscall
	check
	mov $3, %r12d		# sigaltstack
	movabs $ALTSTACK, %rdi
	xor %esi, %esi
	mov $131, %eax
	syscall
	check
	sigaction 4, 11		# SIGSEGV
	sigaction 5, 7		# SIGBUS
	sigaction 6, 4		# SIGILL
	sigaction 7, 8		# SIGFPE
	sigaction 8, 5		# SIGTRAP
	mov $9, %r12d		# rt_sigprocmask(SIG_SETMASK, every other signal)
	mov $2, %edi
	movabs $SIGMASK, %rsi
	xor %edx, %edx
	mov $8, %r10d
	mov $14, %eax
	syscall
	check
	mov $10, %r12d		# prctl(PR_SET_NO_NEW_PRIVS, 1)
	mov $38, %edi
	mov $1, %esi
	xor %edx, %edx
	xor %r10d, %r10d
	xor %r8d, %r8d
	mov $157, %eax
	syscall
	check
	mov $11, %r12d		# seccomp(SET_MODE_FILTER, NEW_LISTENER, filter)
	mov $1, %edi
	mov $8, %esi
	movabs $FPROG, %rdx
	mov $317, %eax
	syscall
	check
	xor %r12d, %r12d
fail:
	int3
