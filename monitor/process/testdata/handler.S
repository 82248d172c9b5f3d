# The stub's signal handler (handlerCode in stub.go), entered as
# handler(signo, siginfo, ucontext) on the signal stack with every signal
# blocked. It reports the exception in one system call that the seccomp
# filter hands to the monitor, and applies the answer: a non-negative one
# is how far to advance the guest's RIP. A negative one emulates a
# privileged instruction of a Solo5 guest: with bit 62 set, a far return
# (RIP = the word at RSP, RSP += 16; the monitor checked both words);
# with bit 61 set, the FS and GS bases: bits 48-55 are how far to advance
# RIP, and the bases are loaded from the bottom of the signal stack, or,
# with bit 60 set too, stored there and the report is made again (the
# same system call with the same arguments: RIP does not move); otherwise
# bits 0-47 are the FS base to set (wrmsr of FS_BASE) and bits 48-55 how
# far to advance RIP. Only the monitor of a kernel that enables FSGSBASE
# answers with bit 61 or sets the FS base.
	.equ ALT, 0x7e0000010000
# TestStubCode assembles this file and compares the bytes.
	.text
handler:
	mov %rdx, %rbx		# ucontext
	mov 16(%rsi), %rdx	# arg2 = si_addr
	cmpl $0x80, 8(%rsi)	# SI_KERNEL (#GP) has no address:
	cmove 160(%rbx), %rdx	# arg2 = rsp instead
	movslq 8(%rsi), %rax	# si_code
	shl $32, %rax
	mov %edi, %edi
	or %rax, %rdi		# arg0 = si_code<<32 | signo
	mov 200(%rbx), %rsi	# mcontext trapno
	shl $48, %rsi
	movzwl 192(%rbx), %eax	# mcontext err (16 bits in every exception)
	or %rax, %rsi
	mov 152(%rbx), %eax	# ecx (wrmsr's MSR)
	shl $16, %rax
	or %rax, %rsi		# arg1 = trapno<<48 | ecx<<16 | error code
	mov 168(%rbx), %r10	# arg3 = rip
	mov 144(%rbx), %r8	# arg4 = rax
	mov 136(%rbx), %r9	# arg5 = rdx
	mov $110, %eax		# getppid, which the filter hands to the monitor
report:
	syscall
	test %rax, %rax
	js 1f
	add %rax, 168(%rbx)	# rip += the monitor's answer
	ret			# to the restorer
1:	bt $62, %rax
	jnc 2f
	mov 160(%rbx), %rcx	# the guest's rsp
	mov (%rcx), %rdx
	mov %rdx, 168(%rbx)	# rip = the return address
	addq $16, 160(%rbx)	# pop it and the code selector
	ret
2:	bt $61, %rax
	jnc 4f
	movabs $ALT, %r11
	bt $60, %rax
	jc 3f
	mov (%r11), %rcx
	wrfsbase %rcx		# the bases, which sigreturn leaves alone
	mov 8(%r11), %rcx
	wrgsbase %rcx
	shr $48, %rax
	movzbl %al, %eax
	add %rax, 168(%rbx)	# rip += the instruction's length
	ret
3:	rdfsbase %rcx
	mov %rcx, (%r11)
	rdgsbase %rcx
	mov %rcx, 8(%r11)
	mov $110, %eax		# the same report again (syscall kept the arguments)
	jmp report
4:	mov %rax, %rcx
	shr $48, %rcx
	movzbl %cl, %ecx
	add %rcx, 168(%rbx)	# rip += the instruction's length
	shl $16, %rax
	shr $16, %rax
	wrfsbase %rax		# the FS base, which sigreturn leaves alone
	ret
