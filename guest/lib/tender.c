/*
 * tender.c: the hypercall wrappers and the clocks.
 */
#include "tender.h"

void tender_console_write(const void *data, size_t len)
{
	const char *p = data;

	while (len > 0) {
		size_t n = len < TENDER_CONSOLE_WRITE_MAX
				   ? len
				   : (size_t)TENDER_CONSOLE_WRITE_MAX;
		struct tender_console_write arg = {
			.data = (uint64_t)(uintptr_t)p,
			.len = n,
		};
		tender_hypercall(TENDER_HC_CONSOLE_WRITE, &arg);
		p += n;
		len -= n;
	}
}

uint64_t tender_walltime_ns(void)
{
	struct tender_walltime arg = {0};

	tender_hypercall(TENDER_HC_WALLTIME, &arg);
	return arg.nsecs;
}

/* muldiv returns a * b / c for a < c: the 128-bit product is divided with
 * one divq, whose quotient (< b) cannot overflow. */
static inline uint64_t muldiv(uint64_t a, uint64_t b, uint64_t c)
{
	unsigned __int128 p = (unsigned __int128)a * b;
	uint64_t lo = (uint64_t)p, hi = (uint64_t)(p >> 64), q, r;

	__asm__("divq %4" : "=a"(q), "=d"(r) : "a"(lo), "d"(hi), "rm"(c));
	return q;
}

uint64_t tender_monotonic_ns(void)
{
	const struct tender_boot_info *bi = tender_boot_info();
	uint64_t now = tender_rdtsc();
	uint64_t hz = bi->tsc_hz; /* checked non-zero at boot */
	uint64_t ticks = now - bi->boot_tsc;

	if ((int64_t)ticks < 0) /* TSC behind boot_tsc (not synchronised) */
		ticks = 0;

	return (ticks / hz) * 1000000000ULL +
	       muldiv(ticks % hz, 1000000000ULL, hz);
}

uint64_t tender_walltime_tsc_ns(void)
{
	return tender_boot_info()->boot_walltime + tender_monotonic_ns();
}

__attribute__((noreturn)) void tender_exit(int status)
{
	struct tender_exit arg = {
		.status = (uint64_t)(int64_t)status,
	};

	tender_hypercall(TENDER_HC_EXIT, &arg);
	for (;;) /* the monitor never resumes us; fault if it does */
		__asm__ __volatile__("ud2");
}

__attribute__((noreturn)) void tender_abort(const char *msg)
{
	if (msg == NULL)
		msg = "";
	struct tender_abort arg = {
		.msg = (uint64_t)(uintptr_t)msg,
		.len = strlen(msg),
	};

	tender_hypercall(TENDER_HC_ABORT, &arg);
	for (;;)
		__asm__ __volatile__("ud2");
}
