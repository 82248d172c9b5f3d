/* spin (hostile): loops forever without a hypercall. Only the monitor's
 * time limit ends the run. */
#include "tender.h"

int main(void)
{
	printf("spin: looping forever\n");
	for (;;)
		__asm__ __volatile__("" : : : "memory");
}
