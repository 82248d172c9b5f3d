/* badport (hostile): outb to port 0x80, outside the hypercall port range.
 * The I/O permission bitmap denies it, so the guest takes #GP. */
#include "tender.h"

int main(void)
{
	printf("badport: outb to port 0x80\n");
	__asm__ __volatile__("outb %%al, $0x80" : : "a"(0) : "memory");
	printf("badport: the port write went through\n");
	return 1;
}
