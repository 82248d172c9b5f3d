/* fn_bases: a function that changes its FS and GS bases and reads them
 * back, to show whether the bases one request sets reach the next (the
 * fresh pool mode must reset them). It sets both at start-up, before its
 * first fn_next, so a reset must put back those values, not zero. The
 * request body selects what it does:
 *   "set"   sets the FS base to 0x1234000 and the GS base to 0x5678000
 *           (wrfsbase, wrgsbase) and returns "set";
 *   else    returns the two bases in hex, "FS GS".
 * It serves requests with its own fn_next loop, which, unlike
 * tender_fn_serve's, does not reload the data segment selectors: on CPUs
 * where loading the null selector clears a base, that reload alone would
 * hide a base one request left to the next. Where the CPU or host lacks
 * FSGSBASE, its first wrfsbase faults (#UD). */
#include "tender.h"

static uint8_t req_buf[TENDER_FN_REQUEST_MAX];
static uint8_t out[64];

static size_t put_hex(uint8_t *p, uint64_t v)
{
	static const char hex[] = "0123456789abcdef";
	size_t n = 0;
	int shift;

	for (shift = 60; shift > 0 && !(v >> shift); shift -= 4)
		;
	for (; shift >= 0; shift -= 4)
		p[n++] = (uint8_t)hex[(v >> shift) & 15];
	return n;
}

static void set_bases(uint64_t fs, uint64_t gs)
{
	__asm__ __volatile__("wrfsbase %0; wrgsbase %1" : : "r"(fs), "r"(gs));
}

int main(void)
{
	uint64_t flags = 0, len = 0;

	set_bases(0x2000000, 0x3000000);
	for (;;) {
		struct tender_fn_next next = {
			.flags = flags,
			.reply_data = (uint64_t)(uintptr_t)out,
			.reply_len = len,
			.req_buf = (uint64_t)(uintptr_t)req_buf,
			.req_cap = sizeof(req_buf),
		};
		uint64_t fs, gs;

		tender_hypercall(TENDER_HC_FN_NEXT, &next);
		flags = TENDER_FN_HAS_REPLY;
		if (next.req_len == 3 && memcmp(req_buf, "set", 3) == 0) {
			set_bases(0x1234000, 0x5678000);
			memcpy(out, "set", 3);
			len = 3;
			continue;
		}
		__asm__ __volatile__("rdfsbase %0; rdgsbase %1" : "=r"(fs), "=r"(gs));
		len = put_hex(out, fs);
		out[len++] = ' ';
		len += put_hex(out + len, gs);
	}
}
