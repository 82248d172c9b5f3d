/* hello: prints a greeting and its command line, exits 0; with the
 * command line "mem", prints the memory size the boot information gives
 * and the address of a local variable (on the stack, at the top of
 * memory) too. */
#include "s5.h"
#include "s5_manifest.h"

S5_MANIFEST(0);

int main(const char *cmdline)
{
	s5_puts("Hello, Solo5 from tender! cmdline: ");
	s5_puts(cmdline);
	if (s5_streq(cmdline, "mem")) {
		volatile int local = 0;
		s5_puts("\nmem_size ");
		s5_putu(s5_boot->mem_size);
		s5_puts(", stack near ");
		s5_putu((uint64_t)(uintptr_t)&local >> 20 << 20);
	}
	s5_puts("\nSUCCESS\n");
	return 0;
}
