/* exit: exits with the status its command line gives (decimal). */
#include "s5.h"
#include "s5_manifest.h"

S5_MANIFEST(0);

int main(const char *cmdline)
{
	int st = 0;
	for (; *cmdline >= '0' && *cmdline <= '9'; cmdline++)
		st = st * 10 + (*cmdline - '0');
	return st;
}
