/* fn_poke (hostile): a function that writes and reads any address it is
 * given, to show that nothing outside its own memory keeps what a request
 * wrote (a fresh instance must not pass it to the next request). The
 * request body selects what it does:
 *   "poke:HEX"  writes the 8 bytes "pokemark" at address HEX and returns
 *               "poked";
 *   "peek:HEX"  returns the 8 bytes at address HEX.
 * Anything else is echoed. An address that is not mapped writable (or
 * readable) in the guest faults (#PF). */
#include "tender.h"

static const char mark[8] = "pokemark";

/* hex parses the hexadecimal digits of p[0..n), stopping at the first
 * other byte. */
static uint64_t hex(const uint8_t *p, size_t n)
{
	uint64_t v = 0;
	size_t i;

	for (i = 0; i < n; i++) {
		uint8_t c = p[i];

		if (c >= '0' && c <= '9')
			v = v << 4 | (uint64_t)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v = v << 4 | (uint64_t)(c - 'a' + 10);
		else
			break;
	}
	return v;
}

static void poke(const struct tender_fn_request *req,
		 struct tender_fn_reply *rep)
{
	int is_poke = req->len >= 5 && memcmp(req->body, "poke:", 5) == 0;
	int is_peek = req->len >= 5 && memcmp(req->body, "peek:", 5) == 0;

	if (!is_poke && !is_peek) {
		rep->body = (uint8_t *)(uintptr_t)req->body;
		rep->len = req->len;
		return;
	}
	volatile uint8_t *p = (volatile uint8_t *)(uintptr_t)hex(req->body + 5, req->len - 5);
	size_t i;

	for (i = 0; i < sizeof(mark); i++) {
		if (is_poke)
			p[i] = (uint8_t)mark[i];
		else
			rep->body[i] = p[i];
	}
	if (is_poke) {
		memcpy(rep->body, "poked", 5);
		rep->len = 5;
	} else {
		rep->len = sizeof(mark);
	}
}

int main(void)
{
	tender_fn_serve(poke);
}
