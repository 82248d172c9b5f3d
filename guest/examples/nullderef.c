/* nullderef (hostile): reads address 0, which is not mapped for the guest.
 * The guest takes a page fault. */
#include "tender.h"

/* Read through a volatile pointer so the compiler can neither see that it
 * is null nor drop the load. */
static volatile uintptr_t target = 0;

int main(void)
{
	printf("nullderef: reading address 0\n");
	uint64_t v = *(volatile uint64_t *)target;
	printf("nullderef: read 0x%llx from address 0\n",
	       (unsigned long long)v);
	return 1;
}
