# The stub's signal handler (handlerCode in stub.go), entered as
# handler(signo, siginfo, ucontext) on the signal stack with every signal
# blocked. It reports the exception in one system call that the seccomp
# filter hands to the monitor, and advances the guest's RIP by the answer.
# TestStubCode assembles this file and compares the bytes.
	.text
handler:
	mov %rdx, %rbx		# ucontext
	mov 16(%rsi), %rdx	# arg2 = si_addr
	movslq 8(%rsi), %rax	# si_code
	shl $32, %rax
	mov %edi, %edi
	or %rax, %rdi		# arg0 = si_code<<32 | signo
	mov 200(%rbx), %rsi	# mcontext trapno
	shl $32, %rsi
	mov 192(%rbx), %eax	# mcontext err
	or %rax, %rsi		# arg1 = trapno<<32 | error code
	mov 168(%rbx), %r10	# arg3 = rip
	mov 144(%rbx), %r8	# arg4 = rax
	mov 136(%rbx), %r9	# arg5 = rdx
	mov $110, %eax		# getppid, which the filter hands to the monitor
	syscall
	add %rax, 168(%rbx)	# rip += the monitor's answer
	ret			# to the restorer
