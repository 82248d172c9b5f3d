/* hello: the smallest guest. Also built as a static Linux program
 * (bin/guest/host/hello_host, -DTENDER_HOST) for benchmark comparison. */
#ifdef TENDER_HOST
#include <stdio.h>
#else
#include "tender.h"
#endif

int main(void)
{
	printf("hello from tender guest\n");
	return 0;
}
