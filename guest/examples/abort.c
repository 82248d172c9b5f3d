/* abort: ends the run through the ABORT hypercall. */
#include "tender.h"

int main(void)
{
	tender_abort("deliberate abort from guest");
}
