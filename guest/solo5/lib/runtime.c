/*
 * runtime.c: boot, TLS and hypercall wrappers of the Solo5-ABI test
 * runtime (see s5.h).
 */
#include "s5.h"

const struct s5_boot_info *s5_boot;

/* The TLS template, from the linker script. */
extern char __tdata_start[], __tdata_end[], __tbss_end[];

/* One thread's TLS block (variant II: the data, then the thread pointer,
 * whose first word points to itself). */
static uint64_t tls_area[512] __attribute__((aligned(64)));

size_t s5_strlen(const char *s)
{
	size_t n = 0;
	while (s[n])
		n++;
	return n;
}

int s5_streq(const char *a, const char *b)
{
	while (*a && *a == *b)
		a++, b++;
	return *a == *b;
}

void s5_putn(const char *s, size_t n)
{
	volatile struct s5_puts p = { (uint64_t)(uintptr_t)s, n };
	s5_hypercall(S5_HC_PUTS, &p);
}

void s5_puts(const char *s) { s5_putn(s, s5_strlen(s)); }

void s5_putu(uint64_t v)
{
	char b[24];
	int i = sizeof b;
	do {
		b[--i] = '0' + v % 10;
		v /= 10;
	} while (v);
	s5_putn(b + i, sizeof b - i);
}

uint64_t s5_walltime(void)
{
	volatile struct s5_walltime w = { 0 };
	s5_hypercall(S5_HC_WALLTIME, &w);
	return w.nsecs;
}

/* s5_tsc_ns converts TSC ticks to nanoseconds at the rate the boot
 * information gives, in two parts so that no product overflows. */
uint64_t s5_tsc_ns(uint64_t ticks)
{
	uint64_t hz = s5_boot->cpu_cycle_freq;
	if (hz == 0)
		return 0;
	return ticks / hz * 1000000000ull + ticks % hz * 1000000000ull / hz;
}

int s5_poll(uint64_t timeout_nsecs, uint64_t *ready)
{
	volatile struct s5_poll p = { timeout_nsecs, 0, -1 };
	s5_hypercall(S5_HC_POLL, &p);
	if (ready)
		*ready = p.ready_set;
	return p.ret;
}

void s5_set_tls_base(uint64_t base)
{
	__asm__ volatile("wrmsr" : : "c"(0xc0000100u), "a"((uint32_t)base), "d"((uint32_t)(base >> 32)));
}

void s5_exit(int status)
{
	volatile struct s5_halt h = { 0, status };
	for (;;)
		s5_hypercall(S5_HC_HALT, &h);
}

void s5_abort(void) { s5_exit(255); }

static void tls_init(void)
{
	size_t tdata = __tdata_end - __tdata_start, size = __tbss_end - __tdata_start;
	size_t aligned = (size + 63) & ~(size_t)63;
	if (aligned + 8 > sizeof tls_area)
		s5_abort(); /* the block and its self-pointer must fit */
	char *block = (char *)tls_area;
	char *tp = block + aligned;
	for (size_t i = 0; i < size; i++)
		block[aligned - size + i] = i < tdata ? __tdata_start[i] : 0;
	*(uint64_t *)tp = (uint64_t)(uintptr_t)tp;
	s5_set_tls_base((uint64_t)(uintptr_t)tp);
}

__attribute__((noreturn)) void s5_start(const struct s5_boot_info *bi);

void s5_start(const struct s5_boot_info *bi)
{
	uint32_t mxcsr = 0x1f80;
	__asm__ volatile("fninit; ldmxcsr %0" : : "m"(mxcsr));
	s5_boot = bi;
	tls_init();
	s5_exit(main((const char *)(uintptr_t)bi->cmdline));
}
