/*
 * net_deaf: declares network device "net0", then never reads or polls it,
 * spinning instead. The tests flood it with frames: the monitor must stay
 * bounded and still stop it on time.
 */
#include "tender.h"

TENDER_NET_DEVICE(net0, "net0");

int main(void)
{
	printf("net_deaf: never reads %s\n", net0);
	for (;;)
		__asm__ volatile("" ::: "memory");
}
