/*
 * fpu: checks that SSE and AVX work inside the guest. Prints
 * "fpu sse=42 avx=84" and exits 0 when both results are right, else 1.
 *
 * The inputs are read from volatile memory and the arithmetic is done in
 * inline assembly, so nothing is folded at compile time.
 */
#include "tender.h"

typedef float v4sf __attribute__((vector_size(16)));
typedef float v8sf __attribute__((vector_size(32)));

static volatile float sse_in[4] = {1.5f, 2.5f, 3.5f, 4.5f};
static volatile double sse_square = 324.0;
static volatile float avx_in[8] = {1, 2, 3, 4, 5, 6, 7, 8};

/* (1.5+2.5+3.5+4.5)*2 + sqrt(324) = 24 + 18 = 42 */
__attribute__((noinline)) static int sse_test(void)
{
	v4sf a = {sse_in[0], sse_in[1], sse_in[2], sse_in[3]};
	v4sf two = {2.0f, 2.0f, 2.0f, 2.0f};
	double sq = sse_square, root;

	__asm__("mulps %1, %0" : "+x"(a) : "x"(two));
	__asm__("sqrtsd %1, %0" : "=x"(root) : "x"(sq));
	double sum = (double)(a[0] + a[1] + a[2] + a[3]) + root;
	return (int)(sum * 3.0 / 3.0);
}

/* (1+...+8)*2 + 8*1.5 = 72 + 12 = 84, on 256-bit vectors */
__attribute__((target("avx"), noinline)) static int avx_test(void)
{
	v8sf a = {avx_in[0], avx_in[1], avx_in[2], avx_in[3],
		  avx_in[4], avx_in[5], avx_in[6], avx_in[7]};
	v8sf two = {2, 2, 2, 2, 2, 2, 2, 2};
	v8sf half3 = {1.5f, 1.5f, 1.5f, 1.5f, 1.5f, 1.5f, 1.5f, 1.5f};
	v8sf prod, sum;

	__asm__("vmulps %2, %1, %0" : "=x"(prod) : "x"(a), "x"(two));
	__asm__("vaddps %2, %1, %0" : "=x"(sum) : "x"(prod), "x"(half3));
	float total = 0;
	for (int i = 0; i < 8; i++)
		total += sum[i];
	return (int)total;
}

int main(void)
{
	int sse = sse_test();
	int avx = avx_test();

	printf("fpu sse=%d avx=%d\n", sse, avx);
	return sse == 42 && avx == 84 ? 0 : 1;
}
