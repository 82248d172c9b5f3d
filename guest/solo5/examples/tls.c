/*
 * tls: thread-local variables through %fs, whose base the runtime set with
 * wrmsr(FS_BASE); prints SUCCESS.
 */
#include "s5.h"
#include "s5_manifest.h"

S5_MANIFEST(0);

static __thread volatile uint64_t tdata = 0x1122334455667788ull;
static __thread volatile uint64_t tbss, tbss2;
/* 16-byte aligned, so that the TLS segment's size (40 bytes) is not a
 * multiple of its alignment: the runtime must place the block where the
 * linker's offsets look for it. */
static __thread volatile uint64_t tarr[2] __attribute__((aligned(16))) = { 0xa1, 0xb2 };

int main(const char *cmdline)
{
	(void)cmdline;
	uint64_t self;
	__asm__ volatile("movq %%fs:0, %0" : "=r"(self));
	if (tdata != 0x1122334455667788ull || tbss != 0 || self == 0 ||
	    tbss2 != 0 || tarr[0] != 0xa1 || tarr[1] != 0xb2) {
		s5_puts("TLS not set up\n");
		return 1;
	}
	tbss = 42;
	tbss2 = 43;
	tdata++;
	if (tbss != 42 || tbss2 != 43 || tdata != 0x1122334455667789ull || tarr[1] != 0xb2) {
		s5_puts("TLS writes lost\n");
		return 1;
	}
	s5_puts("SUCCESS\n");
	return 0;
}
