/* fn_echo: a function whose reply is its request body, unchanged. Zero-copy:
 * the reply points at the request buffer, which the monitor reads before it
 * writes the next request there. */
#include "tender.h"

static void echo(const struct tender_fn_request *req,
		 struct tender_fn_reply *rep)
{
	rep->body = (uint8_t *)(uintptr_t)req->body;
	rep->len = req->len;
}

int main(void)
{
	tender_fn_serve(echo);
}
