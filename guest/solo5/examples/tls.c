/*
 * tls: thread-local variables through %fs, whose base the runtime set with
 * wrmsr(FS_BASE); prints SUCCESS.
 */
#include "s5.h"
#include "s5_manifest.h"

S5_MANIFEST(0);

static __thread volatile uint64_t tdata = 0x1122334455667788ull;
static __thread volatile uint64_t tbss;

int main(const char *cmdline)
{
	(void)cmdline;
	uint64_t self;
	__asm__ volatile("movq %%fs:0, %0" : "=r"(self));
	if (tdata != 0x1122334455667788ull || tbss != 0 || self == 0) {
		s5_puts("TLS not set up\n");
		return 1;
	}
	tbss = 42;
	tdata++;
	if (tbss != 42 || tdata != 0x1122334455667789ull) {
		s5_puts("TLS writes lost\n");
		return 1;
	}
	s5_puts("SUCCESS\n");
	return 0;
}
