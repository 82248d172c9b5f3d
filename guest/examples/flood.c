/* flood (hostile): writes to the console forever. With no argument it
 * writes numbered lines, one console write per line; with a size argument
 * (at most TENDER_CONSOLE_WRITE_MAX) it writes blocks of that many bytes,
 * one console write each. Only the monitor's limits end the run. */
#include "tender.h"

static char block[TENDER_CONSOLE_WRITE_MAX];

int main(int argc, char **argv)
{
	if (argc > 1) {
		unsigned long n = strtoul(argv[1], NULL, 10);
		if (n == 0 || n > sizeof(block)) {
			printf("usage: flood [1..%d]\n", (int)sizeof(block));
			return 2;
		}
		printf("flood: writing blocks of %lu bytes forever\n", n);
		memset(block, 'f', n);
		for (;;) {
			struct tender_console_write a = {.data = (uint64_t)(uintptr_t)block, .len = n};
			tender_hypercall(TENDER_HC_CONSOLE_WRITE, &a);
		}
	}
	printf("flood: writing lines forever\n");
	for (uint64_t n = 0;; n++)
		printf("flood %llu\n", (unsigned long long)n);
}
