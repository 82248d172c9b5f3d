/* abort: says so, then halts with the abort status (255). */
#include "s5.h"
#include "s5_manifest.h"

S5_MANIFEST(0);

int main(const char *cmdline)
{
	(void)cmdline;
	s5_puts("about to abort\n");
	s5_abort();
}
