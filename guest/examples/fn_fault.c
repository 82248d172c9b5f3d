/* fn_fault (hostile): a function that reads address 0 (a page fault) when its
 * request body starts with "fault", and otherwise echoes the body. If the
 * monitor wrongly lets the read succeed, the reply has status 1 and says so. */
#include "tender.h"

/* Read through a volatile pointer so the compiler can neither see that it
 * is null nor drop the load. */
static volatile uintptr_t target = 0;

static void fault(const struct tender_fn_request *req,
		  struct tender_fn_reply *rep)
{
	if (req->len >= 5 && memcmp(req->body, "fault", 5) == 0) {
		uint64_t v = *(volatile uint64_t *)target;
		int n = snprintf((char *)rep->body, rep->cap,
				 "fn_fault: read 0x%llx from address 0",
				 (unsigned long long)v);
		rep->status = 1;
		rep->len = (size_t)n;
		return;
	}
	rep->body = (uint8_t *)(uintptr_t)req->body;
	rep->len = req->len;
}

int main(void)
{
	tender_fn_serve(fault);
}
