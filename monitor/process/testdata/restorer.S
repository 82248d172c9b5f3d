# The stub's signal restorer (restorerCode in stub.go): rt_sigreturn.
	.text
restorer:
	mov $15, %eax
	syscall
	ud2
