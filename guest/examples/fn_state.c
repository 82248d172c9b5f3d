/* fn_state: a function that keeps state between its invocations, to show
 * what one invocation leaves for the next (the fresh pool mode must leave
 * nothing). The request body selects what it does:
 *   "count"      returns how many "count" requests this instance has seen,
 *                in decimal, from a static counter;
 *   "stash:DATA" stores DATA in a global and returns what the previous
 *                "stash:" request stored (empty at first);
 *   "sse-set"    leaves a pattern in XMM15 and returns "set";
 *   "sse-get"    returns XMM15's 16 bytes in hex;
 *   "seg-set"    loads another selector into GS (the null one, or SS's
 *                when GS is null) and returns "set";
 *   "seg-get"    returns GS's selector in decimal;
 *   "scribble"   returns "clean" if no page of a 128 KiB static array holds
 *                a mark yet, else "dirty", then marks every page (more
 *                pages than a reset copies back: it drops them instead);
 *   "residue"    returns the nonzero bytes the request buffer (which the
 *                library hands over whole) holds past this request's body,
 *                up to 256: what a longer earlier request left there;
 *   "clock"      returns the wall-clock time in ns, in decimal, as the
 *                guest reads it from its TSC (no exit);
 *   "fault"      writes to address 0;
 *   "spin"       loops forever;
 *   "violate"    asks for a request without replying (a protocol error).
 * Anything else is echoed. */
#include "tender.h"

static uint64_t count;
static uint8_t stash[256];
static size_t stash_len;
static uint8_t out[256];
static uint8_t scribble[32][4096];

static size_t put_uint(uint8_t *p, uint64_t v)
{
	char tmp[20];
	size_t n = 0, i;

	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	for (i = 0; i < n; i++)
		p[i] = (uint8_t)tmp[n - 1 - i];
	return n;
}

static int is(const struct tender_fn_request *req, const char *s, size_t n)
{
	return req->len >= n && memcmp(req->body, s, n) == 0;
}

static void handle(const struct tender_fn_request *req,
		   struct tender_fn_reply *rep)
{
	rep->body = out;
	if (is(req, "count", 5)) {
		rep->len = put_uint(out, ++count);
	} else if (is(req, "stash:", 6)) {
		size_t n = req->len - 6;

		if (n > sizeof(stash))
			n = sizeof(stash);
		memcpy(out, stash, stash_len);
		rep->len = stash_len;
		memcpy(stash, req->body + 6, n);
		stash_len = n;
	} else if (is(req, "sse-set", 7)) {
		static const uint8_t pattern[16] = "tender-sse-leak!";

		__asm__ __volatile__("movdqu %0, %%xmm15" : : "m"(pattern) : "xmm15");
		memcpy(out, "set", 3);
		rep->len = 3;
	} else if (is(req, "sse-get", 7)) {
		static const char hex[] = "0123456789abcdef";
		uint8_t v[16];
		int i;

		__asm__ __volatile__("movdqu %%xmm15, %0" : "=m"(v));
		for (i = 0; i < 16; i++) {
			out[2 * i] = (uint8_t)hex[v[i] >> 4];
			out[2 * i + 1] = (uint8_t)hex[v[i] & 15];
		}
		rep->len = 32;
	} else if (is(req, "seg-set", 7)) {
		uint16_t gs, ss;

		__asm__ __volatile__("mov %%gs, %0; mov %%ss, %1" : "=r"(gs), "=r"(ss));
		gs = gs ? 0 : ss;
		__asm__ __volatile__("mov %0, %%gs" : : "r"(gs));
		memcpy(out, "set", 3);
		rep->len = 3;
	} else if (is(req, "seg-get", 7)) {
		uint16_t gs;

		__asm__ __volatile__("mov %%gs, %0" : "=r"(gs));
		rep->len = put_uint(out, gs);
	} else if (is(req, "scribble", 8)) {
		int i, dirty = 0;

		for (i = 0; i < 32; i++) {
			dirty |= scribble[i][i] != 0;
			scribble[i][i] = 1;
		}
		memcpy(out, dirty ? "dirty" : "clean", 5);
		rep->len = 5;
	} else if (is(req, "residue", 7)) {
		size_t i, n = 0;

		for (i = req->len; i < TENDER_FN_REQUEST_MAX && n < sizeof(out); i++)
			if (req->body[i])
				out[n++] = req->body[i];
		rep->len = n;
	} else if (is(req, "clock", 5)) {
		rep->len = put_uint(out, tender_walltime_tsc_ns());
	} else if (is(req, "fault", 5)) {
		*(volatile uint64_t *)0 = 1;
	} else if (is(req, "spin", 4)) {
		for (;;)
			__asm__ __volatile__("" ::: "memory");
	} else if (is(req, "violate", 7)) {
		struct tender_fn_next next = {
			.req_buf = (uint64_t)(uintptr_t)out,
			.req_cap = TENDER_FN_REQUEST_MAX,
		};

		tender_hypercall(TENDER_HC_FN_NEXT, &next);
	} else {
		rep->body = (uint8_t *)(uintptr_t)req->body;
		rep->len = req->len;
	}
}

int main(void)
{
	tender_fn_serve(handle);
}
