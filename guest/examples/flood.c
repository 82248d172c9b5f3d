/* flood (hostile): writes numbered lines to the console forever, one
 * console write per line. Only the monitor's limits end the run. */
#include "tender.h"

int main(void)
{
	printf("flood: writing lines forever\n");
	for (uint64_t n = 0;; n++)
		printf("flood %llu\n", (unsigned long long)n);
}
