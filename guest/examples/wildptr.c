/* wildptr (hostile): a console write whose data pointer lies far outside
 * guest memory. The monitor must end the run with an error. */
#include "tender.h"

int main(void)
{
	printf("wildptr: console write from 0xffff00000000\n");
	struct tender_console_write arg = {
		.data = 0xffff00000000ULL,
		.len = 16,
	};
	tender_hypercall(TENDER_HC_CONSOLE_WRITE, &arg);
	printf("wildptr: the monitor accepted the write\n");
	return 1;
}
