/* unknownhc (hostile): hypercall 31, a port inside the hypercall range with
 * no hypercall behind it, with a valid argument structure. The monitor must
 * end the run with an error. */
#include "tender.h"

int main(void)
{
	printf("unknownhc: hypercall 31\n");
	struct tender_walltime arg = {0};
	tender_hypercall(31, &arg);
	printf("unknownhc: the monitor accepted hypercall 31\n");
	return 1;
}
