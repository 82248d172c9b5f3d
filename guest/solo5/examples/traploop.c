/*
 * traploop: executes N (its command line, decimal) privileged
 * instructions one trap each (a cli, then a branch the monitor does not
 * pass over), then puts "traps N" and exits 0. Under tender each cli
 * traps to the monitor, which emulates it: the guest times the round
 * trip of the trap path (BenchmarkSolo5Trap).
 */
#include "s5.h"
#include "s5_manifest.h"

S5_MANIFEST(0);

int main(const char *cmdline)
{
	uint64_t n = 0;
	for (; *cmdline >= '0' && *cmdline <= '9'; cmdline++)
		n = n * 10 + (uint64_t)(*cmdline - '0');
	for (uint64_t i = 0; i < n; i++)
		__asm__ volatile("cli" : : : "memory");
	s5_puts("traps ");
	s5_putu(n);
	s5_puts("\n");
	return 0;
}
