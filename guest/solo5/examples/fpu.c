/* fpu: SSE arithmetic (mulps, divps) gives the right answer; SUCCESS. */
#include "s5.h"
#include "s5_manifest.h"

S5_MANIFEST(0);

int main(const char *cmdline)
{
	(void)cmdline;
	float a[4] __attribute__((aligned(16))) = { 1.5f, 2.0f, 3.0f, 4.0f };
	float b[4] __attribute__((aligned(16))) = { 2.0f, 0.5f, 3.0f, 0.25f };
	__asm__ volatile("movaps %0, %%xmm0; movaps %1, %%xmm1; mulps %%xmm1, %%xmm0; divps %%xmm1, %%xmm0; mulps %%xmm1, %%xmm0; movaps %%xmm0, %0"
			 : "+m"(a) : "m"(b) : "xmm0", "xmm1");
	if (a[0] != 3.0f || a[1] != 1.0f || a[2] != 9.0f || a[3] != 1.0f) {
		s5_puts("wrong SSE result\n");
		return 1;
	}
	s5_puts("SUCCESS\n");
	return 0;
}
