/*
 * maxrss: run a program and report its peak resident set size, for
 * tender bench's memory column.
 *
 *	maxrss FD PROGRAM [ARGS...]
 *
 * Forks, executes PROGRAM with ARGS and this program's environment (standard
 * input, output and error inherited), waits for it, writes its ru_maxrss
 * (KiB, in decimal, then a newline) to descriptor FD and exits with its exit
 * status, or 128 plus the signal that killed it.
 *
 * Why a program of its own: Linux records the peak of the address space a
 * process leaves at execve in that process's ru_maxrss, and Go starts child
 * processes with vfork semantics, so a child of tender-bench would report
 * tender-bench's own resident set. A child forked from this program starts
 * from this program's address space, a few pages, and reports (as wait4
 * does) the largest peak among it and the descendants it waited for.
 *
 * No C library: raw system calls, its own _start, a few KiB.
 */
#include <stddef.h>
#include <stdint.h>

#define SYS_write 1
#define SYS_fork 57
#define SYS_execve 59
#define SYS_wait4 61
#define SYS_exit_group 231
#define EINTR 4

static long sys4(long nr, long a, long b, long c, long d)
{
	long ret;
	register long r10 __asm__("r10") = d;

	__asm__ __volatile__("syscall"
			     : "=a"(ret)
			     : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10)
			     : "rcx", "r11", "memory");
	return ret;
}

__attribute__((noreturn)) static void sys_exit(int status)
{
	for (;;)
		sys4(SYS_exit_group, status, 0, 0, 0);
}

static size_t length(const char *s)
{
	size_t n = 0;

	while (s[n])
		n++;
	return n;
}

static void say(const char *s)
{
	sys4(SYS_write, 2, (long)s, (long)length(s), 0);
}

/* struct rusage: two struct timevals, then ru_maxrss. */
struct rusage_head {
	long utime[2];
	long stime[2];
	long maxrss;
	long rest[14];
};

__attribute__((noreturn, used)) void maxrss_main(long *sp);

__attribute__((noreturn, used)) void maxrss_main(long *sp)
{
	long argc = sp[0];
	char **argv = (char **)(sp + 1);
	char **envp = argv + argc + 1;
	long fd = 0;

	if (argc < 3) {
		say("usage: maxrss FD PROGRAM [ARGS...]\n");
		sys_exit(2);
	}
	for (const char *p = argv[1]; *p; p++) {
		if (*p < '0' || *p > '9' || fd > 100000) {
			say("maxrss: FD is not a descriptor number\n");
			sys_exit(2);
		}
		fd = fd * 10 + (*p - '0');
	}

	long pid = sys4(SYS_fork, 0, 0, 0, 0);
	if (pid < 0) {
		say("maxrss: fork failed\n");
		sys_exit(126);
	}
	if (pid == 0) {
		sys4(SYS_execve, (long)argv[2], (long)(argv + 2), (long)envp, 0);
		say("maxrss: cannot execute ");
		say(argv[2]);
		say("\n");
		sys_exit(127);
	}

	int status = 0;
	struct rusage_head ru;
	long r;
	do
		r = sys4(SYS_wait4, pid, (long)&status, 0, (long)&ru);
	while (r == -EINTR);
	if (r < 0) {
		say("maxrss: wait4 failed\n");
		sys_exit(126);
	}

	char buf[24];
	size_t i = sizeof(buf);
	unsigned long v = (unsigned long)ru.maxrss;
	buf[--i] = '\n';
	do {
		buf[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	sys4(SYS_write, fd, (long)(buf + i), (long)(sizeof(buf) - i), 0);

	if ((status & 0x7f) == 0)
		sys_exit((status >> 8) & 0xff);
	sys_exit(128 + (status & 0x7f));
}

/* The kernel enters with argc at (%rsp); pass that address on, with the
 * stack aligned as a call expects. */
__asm__(".text\n"
	".globl _start\n"
	".type _start, @function\n"
	"_start:\n"
	"\txor %ebp, %ebp\n"
	"\tmov %rsp, %rdi\n"
	"\tand $-16, %rsp\n"
	"\tcall maxrss_main\n"
	"\tud2\n"
	".size _start, . - _start\n");
