/* fn_xstate: a function that leaves data in register state the monitor may
 * not record, to show what a fresh reset puts back (everything: a request
 * must find none of it), and that tries to run bytes it chose through the
 * restore page of a fresh instance on KVM. The request body selects:
 *   "set:DATA"  copies up to 16 bytes of DATA into ZMM16, into bits 256-383
 *               of ZMM0 and into k1 (the first 8 bytes) where the CPU and
 *               the host enable AVX-512, and into YMM15's upper half where
 *               AVX is enabled; returns "set";
 *   "get"       returns those registers in hex, "zmm16 ZMM0-hi k1 ymm15-hi",
 *               or "none" where neither AVX nor AVX-512 is enabled;
 *   "jit"       calls into the restore page's data (0xA000), where the
 *               snapshot's image holds XMM8-15, which hold `mov $42,%eax;
 *               ret` since the snapshot: a fault is right, "jit=42" is
 *               not ("jit=none": the code is not there, nothing tried).
 * Anything else is echoed. */
#include "tender.h"

static uint8_t out[256];
static uint8_t buf[64] __attribute__((aligned(64)));

static void cpuid(uint32_t leaf, uint32_t sub, uint32_t r[4])
{
	__asm__ __volatile__("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(leaf), "c"(sub));
}

static uint64_t xcr0(void)
{
	uint32_t r[4], lo, hi;

	/* XSAVE, not OSXSAVE: some hosts (kvm_pvm) report OSXSAVE clear
	 * though CR4.OSXSAVE is set, and a hostile guest would not ask. */
	cpuid(1, 0, r);
	if (!(r[2] & (1u << 26)))
		return 0;
	__asm__ __volatile__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
	return (uint64_t)hi << 32 | lo;
}

static int avx512(void)
{
	uint32_t r[4];

	cpuid(7, 0, r);
	return (r[1] & (1u << 16)) && (xcr0() & 0xE6) == 0xE6;
}

static int avx(void) { return (xcr0() & 0x6) == 0x6; }

static size_t hex(uint8_t *p, const uint8_t *b, size_t n)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		p[2 * i] = (uint8_t)digits[b[i] >> 4];
		p[2 * i + 1] = (uint8_t)digits[b[i] & 15];
	}
	return 2 * n;
}

static void handle(const struct tender_fn_request *req,
		   struct tender_fn_reply *rep)
{
	size_t n = 0;

	rep->body = out;
	if (req->len >= 4 && memcmp(req->body, "set:", 4) == 0) {
		memset(buf, 0, sizeof(buf));
		memcpy(buf, req->body + 4, req->len - 4 < 16 ? req->len - 4 : 16);
		if (avx512())
			__asm__ __volatile__(
				"vmovdqu64 %0, %%zmm16\n"
				"vmovdqu %0, %%xmm1\n"
				"vinserti64x2 $2, %%xmm1, %%zmm0, %%zmm0\n"
				"kmovq %0, %%k1\n" ::"m"(buf) : "xmm0", "xmm1");
		if (avx())
			__asm__ __volatile__(
				"vmovdqu %0, %%xmm1\n"
				"vinserti128 $1, %%xmm1, %%ymm15, %%ymm15\n" ::"m"(buf) : "xmm1", "xmm15");
		memcpy(out, "set", 3);
		rep->len = 3;
	} else if (req->len == 3 && memcmp(req->body, "get", 3) == 0) {
		if (!avx()) {
			memcpy(out, "none", 4);
			rep->len = 4;
			return;
		}
		if (avx512()) {
			__asm__ __volatile__("vmovdqu64 %%zmm16, %0" : "=m"(buf));
			n += hex(out + n, buf, 16);
			out[n++] = ' ';
			__asm__ __volatile__("vextracti64x2 $2, %%zmm0, %0" : "=m"(buf));
			n += hex(out + n, buf, 16);
			out[n++] = ' ';
			__asm__ __volatile__("kmovq %%k1, %0" : "=m"(buf));
			n += hex(out + n, buf, 8);
			out[n++] = ' ';
		}
		__asm__ __volatile__("vextracti128 $1, %%ymm15, %0" : "=m"(buf));
		n += hex(out + n, buf, 16);
		rep->len = n;
	} else if (req->len == 3 && memcmp(req->body, "jit", 3) == 0) {
		/* The XMM registers the runtime left holding the code since
		 * the snapshot, in the restore page's data. */
		static const uint8_t code[6] = {0xb8, 42, 0, 0, 0, 0xc3};
		const uint8_t *p = (const uint8_t *)(uintptr_t)0xA000;
		int (*f)(void) = 0;
		for (size_t off = 0; off + 16 <= 0x1000; off += 16)
			if (memcmp(p + off, code, sizeof(code)) == 0) {
				f = (int (*)(void))(uintptr_t)(p + off);
				break;
			}
		if (!f) {
			memcpy(out, "jit=none", 8);
			rep->len = 8;
			return;
		}
		int v = f();
		memcpy(out, "jit=", 4);
		out[4] = (uint8_t)('0' + v / 10 % 10);
		out[5] = (uint8_t)('0' + v % 10);
		rep->len = 6;
	} else {
		rep->body = (uint8_t *)(uintptr_t)req->body;
		rep->len = req->len;
	}
}

int main(void)
{
	/* XMM8-15 hold `mov $42,%eax; ret` when the snapshot is taken (some
	 * at least: the runtime may use a few on its way to fn_next). */
	static const uint8_t code[16] = {0xb8, 42, 0, 0, 0, 0xc3};
	__asm__ __volatile__(
		"movdqu %0, %%xmm8\n movdqu %0, %%xmm9\n movdqu %0, %%xmm10\n movdqu %0, %%xmm11\n"
		"movdqu %0, %%xmm12\n movdqu %0, %%xmm13\n movdqu %0, %%xmm14\n movdqu %0, %%xmm15\n" ::"m"(code)
		: "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15");
	tender_fn_serve(handle);
}
