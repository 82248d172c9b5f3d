/*
 * fn_echo_host_nolibc: fn_echo_host without a C library, for benchmarks: the
 * smallest Linux process that does the same work. Raw system calls, its own
 * _start, no startup code, static, no dynamic loader.
 *
 * Reads standard input to the end (at most TENDER_FN_REQUEST_MAX bytes),
 * writes it to standard output and exits 0. Longer input: a message on
 * standard error and exit 1; a read or write error: exit 1.
 */
#include <stddef.h>
#include <stdint.h>

#include "tender_abi.h"

#define SYS_read 0
#define SYS_write 1
#define SYS_exit_group 231
#define EINTR 4

static long sys3(long nr, long a, long b, long c)
{
	long ret;

	__asm__ __volatile__("syscall"
			     : "=a"(ret)
			     : "a"(nr), "D"(a), "S"(b), "d"(c)
			     : "rcx", "r11", "memory");
	return ret;
}

__attribute__((noreturn)) static void sys_exit(int status)
{
	for (;;)
		sys3(SYS_exit_group, status, 0, 0);
}

/* write_all writes len bytes at p to fd; it returns 0, or -1 on an error. */
static int write_all(int fd, const unsigned char *p, size_t len)
{
	while (len > 0) {
		long n = sys3(SYS_write, fd, (long)p, (long)len);
		if (n == -EINTR)
			continue;
		if (n < 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* One byte more than the limit, to tell "exactly the limit" from "more". */
static unsigned char buf[TENDER_FN_REQUEST_MAX + 1];

__attribute__((noreturn, used)) void echo_main(void);

__attribute__((noreturn, used)) void echo_main(void)
{
	static const char too_long[] =
		"fn_echo_host_nolibc: input longer than 1048576 bytes\n";
	_Static_assert(TENDER_FN_REQUEST_MAX == 1048576, "message above");
	size_t len = 0;

	for (;;) {
		long n = sys3(SYS_read, 0, (long)(buf + len),
			      (long)(sizeof(buf) - len));
		if (n == -EINTR)
			continue;
		if (n < 0)
			sys_exit(1);
		if (n == 0)
			break;
		len += (size_t)n;
		if (len > TENDER_FN_REQUEST_MAX) {
			write_all(2, (const unsigned char *)too_long,
				  sizeof(too_long) - 1);
			sys_exit(1);
		}
	}
	sys_exit(write_all(1, buf, len) == 0 ? 0 : 1);
}

/* The kernel enters with RSP 16-byte aligned (argc at (%rsp)); the call
 * pushes the return address as the ABI expects. */
__asm__(".text\n"
	".globl _start\n"
	".type _start, @function\n"
	"_start:\n"
	"\txor %ebp, %ebp\n"
	"\tand $-16, %rsp\n"
	"\tcall echo_main\n"
	"\tud2\n"
	".size _start, . - _start\n");
