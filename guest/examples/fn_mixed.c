/*
 * fn_mixed: a function whose request picks its behaviour, for soak tests
 * that mix outcomes on one pool: a body starting with "fault" reads address
 * 0 (a page fault), "spin" loops until the monitor stops it, "print" writes
 * the body to the console first; anything else is echoed.
 */
#include "tender.h"

static int starts(const struct tender_fn_request *req, const char *p)
{
	size_t n = strlen(p);
	return req->len >= n && memcmp(req->body, p, n) == 0;
}

static void mixed(const struct tender_fn_request *req,
		  struct tender_fn_reply *rep)
{
	if (starts(req, "fault"))
		rep->status = *(volatile uint64_t *)(uintptr_t)0;
	if (starts(req, "spin"))
		for (;;)
			__asm__ __volatile__("" : : : "memory");
	if (starts(req, "print"))
		tender_console_write(req->body, req->len);
	rep->body = (uint8_t *)(uintptr_t)req->body;
	rep->len = req->len;
}

int main(void)
{
	tender_fn_serve(mixed);
}
