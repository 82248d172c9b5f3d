/*
 * syscall (hostile): asks for a host system call (getpid, 39) with the
 * syscall instruction. A guest has no kernel to call: the run ends with the
 * attempt reported as a system call, on every backend and host.
 */
#include "tender.h"

int main(void)
{
	long nr = 39;

	printf("syscall: getpid through syscall\n");
	__asm__ __volatile__("syscall" : "+a"(nr) : : "rcx", "r11", "memory");
	printf("syscall: the system call returned %ld\n", nr);
	return 1;
}
