/* invalidop (hostile): executes ud2. The guest takes #UD. */
#include "tender.h"

int main(void)
{
	printf("invalidop: executing ud2\n");
	__asm__ __volatile__("ud2");
	printf("invalidop: ud2 did not fault\n");
	return 1;
}
