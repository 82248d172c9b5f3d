/* fn_bases: a function that changes its FS and GS bases and reads them
 * back, to show whether the bases one request sets reach the next (the
 * fresh pool mode must reset them). It sets both at start-up, before its
 * first fn_next, so a reset must put back those values, not zero. The
 * request body selects what it does:
 *   "set"   sets the FS base to 0x1234000 and the GS base to 0x5678000
 *           (wrfsbase, wrgsbase) and returns "set";
 *   else    returns the two bases in hex, "FS GS".
 * It serves requests with its own fn_next loop, which does not touch the
 * data segment selectors: on CPUs where loading the null selector clears a
 * base, such a load alone would hide a base one request left to the next.
 * With the argument "serve" it serves through tender_fn_serve instead, to
 * show that the library leaves the bases alone. Where the CPU or host lacks
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

/* answer handles one request: "set", or anything else to read the bases
 * into out; it returns the reply's length. */
static size_t answer(const uint8_t *body, uint64_t n)
{
	uint64_t fs, gs;
	size_t len;

	if (n == 3 && memcmp(body, "set", 3) == 0) {
		set_bases(0x1234000, 0x5678000);
		memcpy(out, "set", 3);
		return 3;
	}
	__asm__ __volatile__("rdfsbase %0; rdgsbase %1" : "=r"(fs), "=r"(gs));
	len = put_hex(out, fs);
	out[len++] = ' ';
	len += put_hex(out + len, gs);
	return len;
}

static void handle(const struct tender_fn_request *req, struct tender_fn_reply *rep)
{
	rep->len = answer(req->body, req->len);
	memcpy(rep->body, out, rep->len);
}

int main(int argc, char **argv)
{
	uint64_t flags = 0, len = 0;

	set_bases(0x2000000, 0x3000000);
	if (argc > 1 && strcmp(argv[1], "serve") == 0)
		tender_fn_serve(handle);
	for (;;) {
		struct tender_fn_next next = {
			.flags = flags,
			.reply_data = (uint64_t)(uintptr_t)out,
			.reply_len = len,
			.req_buf = (uint64_t)(uintptr_t)req_buf,
			.req_cap = sizeof(req_buf),
		};

		tender_hypercall(TENDER_HC_FN_NEXT, &next);
		flags = TENDER_FN_HAS_REPLY;
		len = answer(req_buf, next.req_len);
	}
}
