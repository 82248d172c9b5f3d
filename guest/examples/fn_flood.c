/* fn_flood (hostile): a function that writes numbered console lines forever
 * when its request body starts with "flood", and otherwise prints one line
 * naming the request and echoes its body. Only the request's deadline, or the
 * console limit, ends the flood. */
#include "tender.h"

static void flood(const struct tender_fn_request *req,
		  struct tender_fn_reply *rep)
{
	if (req->len >= 5 && memcmp(req->body, "flood", 5) == 0) {
		for (uint64_t n = 0;; n++)
			printf("fn_flood %llu\n", (unsigned long long)n);
	}
	printf("fn_flood: request %llu, %llu bytes\n",
	       (unsigned long long)req->id, (unsigned long long)req->len);
	rep->body = (uint8_t *)(uintptr_t)req->body;
	rep->len = req->len;
}

int main(void)
{
	tender_fn_serve(flood);
}
