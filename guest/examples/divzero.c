/* divzero (hostile): integer division by zero. The guest takes #DE. */
#include "tender.h"

static volatile int dividend = 42;
static volatile int divisor = 0;

int main(void)
{
	printf("divzero: dividing by zero\n");
	int q = dividend / divisor;
	printf("divzero: 42/0 = %d\n", q);
	return 1;
}
