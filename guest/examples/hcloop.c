/*
 * hcloop: issues N console-write hypercalls (argv[1], default 1000) of LEN
 * bytes each (argv[2], default 0, at most 4096), then exits 0. The
 * benchmarks divide its run time by N to get the cost of one hypercall round
 * trip, as Solo5's figure for solo5_console_write(len 0) is measured; a
 * non-zero LEN measures the console path with output.
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
	for (unsigned long i = 0; i < n; i++) {
		arg.data = (uint64_t)(uintptr_t)line;
		arg.len = len;
		tender_hypercall(TENDER_HC_CONSOLE_WRITE, &arg);
	}
	return 0;
}
