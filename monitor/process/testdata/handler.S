# The stub's signal handler (handlerCode in stub.go), entered as
# handler(signo, siginfo, ucontext) on the signal stack with every signal
# blocked. It reports the exception in one system call that the seccomp
# filter hands to the monitor, and applies the answer: a non-negative one
# is how far to advance the guest's RIP. A negative one emulates a
# privileged instruction of a Solo5 guest: with bit 62 set, a far return
# (RIP = the word at RSP, RSP += 16; the monitor checked both words);
# otherwise bits 0-47 are the FS base to set (wrmsr of FS_BASE) and bits
# 48-55 how far to advance RIP.
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
2:	mov %rax, %rcx
	shr $48, %rcx
	movzbl %cl, %ecx
	add %rcx, 168(%rbx)	# rip += the instruction's length
	shl $16, %rax
	shr $16, %rax
	wrfsbase %rax		# the FS base, which sigreturn leaves alone
	ret
