/*
 * hcloop: issues N console-write hypercalls of length 0 (argv[1], default
 * 1000), then exits 0. The benchmarks divide its run time by N to get the
 * cost of one hypercall round trip, as Solo5's figure for
 * solo5_console_write(len 0) is measured.
 */
#include "tender.h"

int main(int argc, char **argv)
{
	unsigned long n = argc > 1 ? strtoul(argv[1], NULL, 10) : 1000;
	static char byte;
	struct tender_console_write arg;

	for (unsigned long i = 0; i < n; i++) {
		arg.data = (uint64_t)(uintptr_t)&byte;
		arg.len = 0;
		tender_hypercall(TENDER_HC_CONSOLE_WRITE, &arg);
	}
	return 0;
}
