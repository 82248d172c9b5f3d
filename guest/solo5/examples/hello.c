/* hello: prints a greeting and its command line, exits 0. */
#include "s5.h"
#include "s5_manifest.h"

S5_MANIFEST(0);

int main(const char *cmdline)
{
	s5_puts("Hello, Solo5 from tender! cmdline: ");
	s5_puts(cmdline);
	s5_puts("\nSUCCESS\n");
	return 0;
}
