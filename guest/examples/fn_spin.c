/* fn_spin (hostile): a function that loops forever, without a hypercall, when
 * its request body starts with "spin", and otherwise echoes the body. Only the
 * request's deadline ends the loop. */
#include "tender.h"

static void spin(const struct tender_fn_request *req,
		 struct tender_fn_reply *rep)
{
	if (req->len >= 4 && memcmp(req->body, "spin", 4) == 0) {
		for (;;)
			__asm__ __volatile__("" : : : "memory");
	}
	rep->body = (uint8_t *)(uintptr_t)req->body;
	rep->len = req->len;
}

int main(void)
{
	tender_fn_serve(spin);
}
