/* overlong (hostile): a console write of a valid buffer with a length of
 * 1 TiB. The monitor must end the run with an error. */
#include "tender.h"

static const char msg[] = "overlong\n";

int main(void)
{
	printf("overlong: console write of length 1<<40\n");
	struct tender_console_write arg = {
		.data = (uint64_t)(uintptr_t)msg,
		.len = 1ULL << 40,
	};
	tender_hypercall(TENDER_HC_CONSOLE_WRITE, &arg);
	printf("overlong: the monitor accepted the write\n");
	return 1;
}
