/*
 * hcloop: issues N console-write hypercalls (argv[1], default 1000) of LEN
 * bytes each (argv[2], default 0, at most 4096), then prints the time from
 * the return of the first to the return of the last, by its own clock
 * (rdtsc, no exit), and exits 0: "hcloop: N calls, T ns first to last". The
 * benchmarks divide T by N-1 to get the cost of one hypercall round trip
 * and nothing else, as Solo5's figure for solo5_console_write(len 0) is
 * measured; a non-zero LEN measures the console path with output.
 */
#include "tender.h"

int main(int argc, char **argv)
{
	unsigned long n = argc > 1 ? strtoul(argv[1], NULL, 10) : 1000;
	unsigned long len = argc > 2 ? strtoul(argv[2], NULL, 10) : 0;
	static char line[4096];
	struct tender_console_write arg;

	if (len > sizeof(line))
		len = sizeof(line);
	memset(line, 'x', len);
	if (len > 0)
		line[len - 1] = '\n';
	uint64_t first = 0;
	for (unsigned long i = 0; i < n; i++) {
		arg.data = (uint64_t)(uintptr_t)line;
		arg.len = len;
		tender_hypercall(TENDER_HC_CONSOLE_WRITE, &arg);
		if (i == 0)
			first = tender_monotonic_ns();
	}
	uint64_t last = tender_monotonic_ns();
	printf("hcloop: %lu calls, %llu ns first to last\n", n,
	       (unsigned long long)(last - first));
	return 0;
}
