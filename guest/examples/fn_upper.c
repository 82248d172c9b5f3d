/* fn_upper: a function whose reply is its request body with the ASCII
 * letters a-z turned into A-Z; every other byte is passed through. */
#include "tender.h"

static void upper(const struct tender_fn_request *req,
		  struct tender_fn_reply *rep)
{
	const uint8_t *in = req->body;
	uint8_t *out = rep->body;
	size_t n = req->len;

	/* Cannot happen while requests and replies share a size limit. */
	if (n > rep->cap) {
		static const char msg[] =
			"fn_upper: request longer than the reply buffer";
		rep->status = 1;
		rep->body = (uint8_t *)(uintptr_t)msg;
		rep->len = sizeof(msg) - 1;
		return;
	}
	for (size_t i = 0; i < n; i++) {
		uint8_t c = in[i];
		out[i] = c >= 'a' && c <= 'z' ? (uint8_t)(c - ('a' - 'A')) : c;
	}
	rep->len = n;
}

int main(void)
{
	tender_fn_serve(upper);
}
