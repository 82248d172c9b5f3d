/*
 * compute: runs N rounds (its command line, decimal; default 1000000) of
 * a 64-bit xorshift, timed by itself, and prints
 * "compute: N rounds, X, T ns" (X the final state, in hex). Also built as
 * a Linux program (bin/guest/host/compute_host, -DTENDER_HOST, N its first
 * argument) from this same file, so the loop is the same C under tender
 * and natively (BenchmarkSolo5Compute). The guest times the loop with the
 * TSC at the rate the boot information gives, the Linux program with
 * CLOCK_MONOTONIC: neither counts its start or exit.
 */
#ifdef TENDER_HOST
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#else
#include "s5.h"
#include "s5_manifest.h"

S5_MANIFEST(0);
#endif

/* The state depends on every round before, so no round can be skipped,
 * reordered or vectorised. */
__attribute__((noinline)) static uint64_t xorshift(uint64_t rounds)
{
	uint64_t x = 88172645463325252ull;
	for (uint64_t i = 0; i < rounds; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
	}
	return x;
}

#ifdef TENDER_HOST
static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int main(int argc, char **argv)
{
	uint64_t n = argc > 1 ? strtoull(argv[1], NULL, 10) : 1000000;
	uint64_t t0 = now_ns();
	uint64_t x = xorshift(n);
	uint64_t ns = now_ns() - t0;
	printf("compute: %llu rounds, %llx, %llu ns\n", (unsigned long long)n,
	       (unsigned long long)x, (unsigned long long)ns);
	return 0;
}
#else
static void puthex(uint64_t v)
{
	char b[16];
	int i = sizeof b;
	do {
		b[--i] = "0123456789abcdef"[v & 15];
		v >>= 4;
	} while (v);
	s5_putn(b + i, sizeof b - i);
}

int main(const char *cmdline)
{
	uint64_t n = 0;
	if (*cmdline == '\0')
		n = 1000000;
	for (; *cmdline >= '0' && *cmdline <= '9'; cmdline++)
		n = n * 10 + (uint64_t)(*cmdline - '0');
	uint64_t t0 = s5_rdtsc();
	uint64_t x = xorshift(n);
	uint64_t ns = s5_tsc_ns(s5_rdtsc() - t0);
	s5_puts("compute: ");
	s5_putu(n);
	s5_puts(" rounds, ");
	puthex(x);
	s5_puts(", ");
	s5_putu(ns);
	s5_puts(" ns\n");
	return 0;
}
#endif
