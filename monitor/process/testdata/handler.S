# The stub's signal handler (handlerCode in stub.go), entered as
# handler(signo, siginfo, ucontext) on the signal stack with every signal
# blocked. It reports the exception in one system call that the seccomp
# filter hands to the monitor, and applies the answer: a non-negative one
# is how far to advance the guest's RIP. A negative one says more (the
# answer* constants in stub.go): with bit 62 set, a far return of a Solo5
# guest (RIP = the word at RSP, RSP += 16; the monitor checked both
# words); with bit 59 set, a reset (below); with bit 61 set, store the
# data segment selectors (and with bit 60 the FS and GS bases) in the
# save block at the bottom of the signal stack and make the same report
# again (the same system call with the same arguments: RIP does not move);
# otherwise bits 0-47 are an FS base to set (a Solo5 guest's wrmsr of
# FS_BASE) and bits 48-55 how far to advance RIP. Only the monitor of a
# kernel that enables FSGSBASE sets bit 60 or the FS base.
#
# Everything but a reset goes through RBX and RSP, which are the guest's
# own if the guest jumped here instead of faulting (it can run this page):
# that only changes the guest's own state, as its own instructions could.
# A reset uses neither. With bit 58 set it first makes the template (TMPL,
# which the monitor wrote: the reset block, then the snapshot's pages of
# the signal stack from the frame's first page to the top) read-only, in
# the one mprotect the filter allows, from here and with these arguments.
# It copies those pages back over the signal stack, loads RSP from the
# block (the snapshot's signal frame), the RFLAGS bits rt_sigreturn keeps
# from the live ones (ID, NT) from the block, puts the stub's signal stack
# back (the guest can set another through rt_sigreturn, and one that holds
# RSP refuses a change: RSP is 0 for the call), loads the selectors (and
# with bit 60 the bases) from the block and returns to the restorer, whose
# rt_sigreturn loads every other register from the frame.
	.equ ALT, 0x7e0000010000	# the save block: FS base, GS base,
					# DS, ES, FS, GS (16 bits each)
	.equ TMPL, 0x7e0000030000	# the reset block: as ALT's, then the
					# frame address, RFLAGS, where the
					# pages go and their length; the pages
					# at TMPL + 4096
	.equ TMPLSIZE, 0x10000
	.equ ALTSTACK, 0x7e0000000100	# the stub's stack_t
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
2:	movabs $ALT, %r11
	bt $59, %rax
	jc reset
	bt $61, %rax
	jc save
	mov %rax, %rcx
	shr $48, %rcx
	movzbl %cl, %ecx
	add %rcx, 168(%rbx)	# rip += the instruction's length
	shl $16, %rax
	shr $16, %rax
	wrfsbase %rax		# the FS base, which sigreturn leaves alone
	ret
save:
	mov %ds, 16(%r11)
	mov %es, 18(%r11)
	mov %fs, 20(%r11)
	mov %gs, 22(%r11)
	bt $60, %rax
	jnc 3f
	rdfsbase %rcx		# the bases, which sigreturn leaves alone
	mov %rcx, (%r11)
	rdgsbase %rcx
	mov %rcx, 8(%r11)
3:	mov $110, %eax		# the same report again (syscall kept the arguments)
	jmp report
reset:
	mov %rax, %rbx		# the answer
	bt $58, %rbx
	jnc 6f
	movabs $TMPL, %rdi	# mprotect(TMPL, TMPLSIZE, PROT_READ), once
	mov $TMPLSIZE, %esi
	mov $1, %edx
	mov $10, %eax
	syscall
	test %rax, %rax
	jnz 5f
6:	movabs $TMPL, %r11
	cld
	lea 4096(%r11), %rsi	# the snapshot's pages
	mov 40(%r11), %rdi	# over the frame's first page and up
	mov 48(%r11), %rcx
	rep movsb
	mov 24(%r11), %rsp	# the snapshot's frame
	push 32(%r11)
	popf
	mov %rsp, %r12
	xor %esp, %esp
	movabs $ALTSTACK, %rdi
	xor %esi, %esi
	mov $131, %eax		# sigaltstack(the stub's, NULL), which the filter allows from here
	syscall
	test %rax, %rax
	jnz 5f
	mov %r12, %rsp
	movabs $TMPL, %r11
	mov 16(%r11), %ds
	mov 18(%r11), %es
	mov 20(%r11), %fs
	mov 22(%r11), %gs
	bt $60, %rbx
	jnc 4f
	mov (%r11), %rcx
	wrfsbase %rcx
	mov 8(%r11), %rcx
	wrgsbase %rcx
4:	ret			# to the restorer, the frame's first word
5:	ud2
