/*
 * putsloop: makes N console writes (solo5 puts) of 0 bytes (its command
 * line, decimal; default 1000), then prints, in one more write, the time
 * from the return of the first to the return of the last by its own clock
 * (the TSC at the rate the boot information gives, no exit): "putsloop: N
 * calls, T ns first to last". It is tender's hcloop for a Solo5 guest
 * (BenchmarkSolo5Console divides T by N-1 for both).
 */
#include "s5.h"
#include "s5_manifest.h"

S5_MANIFEST(0);

static char line[80];
static size_t used;

static void add(const char *s)
{
	while (*s && used < sizeof line)
		line[used++] = *s++;
}

static void addu(uint64_t v)
{
	char b[24];
	int i = sizeof b - 1;
	b[i] = '\0';
	do {
		b[--i] = '0' + v % 10;
		v /= 10;
	} while (v);
	add(b + i);
}

int main(const char *cmdline)
{
	uint64_t n = 0;
	if (*cmdline == '\0')
		n = 1000;
	for (; *cmdline >= '0' && *cmdline <= '9'; cmdline++)
		n = n * 10 + (uint64_t)(*cmdline - '0');
	uint64_t first = 0;
	for (uint64_t i = 0; i < n; i++) {
		s5_putn("", 0);
		if (i == 0)
			first = s5_rdtsc();
	}
	uint64_t ns = n > 0 ? s5_tsc_ns(s5_rdtsc() - first) : 0;
	add("putsloop: ");
	addu(n);
	add(" calls, ");
	addu(ns);
	add(" ns first to last\n");
	s5_putn(line, used);
	return 0;
}
