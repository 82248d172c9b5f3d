/* hostcall (hostile): executes the x86-64 syscall instruction with the host
 * system call number given as its argument (default 39, getpid). Under KVM
 * the instruction faults; the process backend reports the attempt, whether
 * or not the number is one the confined monitor may make itself. */
#include "tender.h"

int main(int argc, char **argv)
{
	unsigned long nr = 39;
	if (argc > 1)
		nr = strtoul(argv[1], 0, 10);
	printf("hostcall: system call %lu\n", nr);
	long ret;
	__asm__ __volatile__("syscall" : "=a"(ret) : "a"(nr) : "rcx", "r11", "memory");
	printf("hostcall: it returned %ld\n", ret);
	return 1;
}
