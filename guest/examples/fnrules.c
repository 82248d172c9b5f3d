/*
 * fnrules (hostile): a function that breaks one rule of fn_next, picked by
 * its first argument, while serving its first request. Each must end the
 * invocation with a protocol error; "reply-max" is the control (a reply of
 * exactly TENDER_FN_REPLY_MAX bytes).
 *
 *   flags          unknown flag bits
 *   reply-first    a reply before any request
 *   no-reply       a new request asked for without replying to the current
 *   reply-over     a reply one byte over TENDER_FN_REPLY_MAX
 *   reply-outside  a reply that runs off the end of guest memory
 *   reqcap-small   a request buffer one byte under TENDER_FN_REQUEST_MAX
 *   reqbuf-outside a request buffer that runs off the end of guest memory
 *   exit-mid       tender_exit(0) while a request is outstanding
 *   reply-max      a reply of exactly TENDER_FN_REPLY_MAX bytes of 'r'
 */
#include "tender.h"

static uint8_t req[TENDER_FN_REQUEST_MAX];
static uint8_t rep[TENDER_FN_REPLY_MAX];

static int eq(const char *a, const char *b)
{
	return strcmp(a, b) == 0;
}

/* next issues fn_next with the given fields and returns the request id. */
static uint64_t next(uint64_t flags, uint64_t reply, uint64_t reply_len,
		     uint64_t buf, uint64_t cap)
{
	struct tender_fn_next a = {
		.flags = flags,
		.reply_data = reply,
		.reply_len = reply_len,
		.req_buf = buf,
		.req_cap = cap,
	};
	tender_hypercall(TENDER_HC_FN_NEXT, &a);
	return a.req_id;
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		printf("usage: fnrules RULE\n");
		return 2;
	}
	const char *r = argv[1];
	uint64_t top = tender_boot_info()->mem_size;
	uint64_t buf = (uint64_t)(uintptr_t)req, out = (uint64_t)(uintptr_t)rep;
	const uint64_t max = TENDER_FN_REQUEST_MAX;

	if (eq(r, "reply-first"))
		next(TENDER_FN_HAS_REPLY, out, 1, buf, max);
	else if (eq(r, "reqcap-small"))
		next(0, 0, 0, buf, max - 1);
	else if (eq(r, "reqbuf-outside"))
		next(0, 0, 0, top - max + 4096, max);
	next(0, 0, 0, buf, max); /* the first request */
	if (eq(r, "flags"))
		next(TENDER_FN_HAS_REPLY | 2, out, 1, buf, max);
	else if (eq(r, "no-reply"))
		next(0, 0, 0, buf, max);
	else if (eq(r, "reply-over"))
		next(TENDER_FN_HAS_REPLY, out, TENDER_FN_REPLY_MAX + 1, buf, max);
	else if (eq(r, "reply-outside"))
		next(TENDER_FN_HAS_REPLY, top - 16, 64, buf, max);
	else if (eq(r, "exit-mid"))
		tender_exit(0);
	else if (eq(r, "reply-max")) {
		memset(rep, 'r', sizeof(rep));
		for (;;)
			next(TENDER_FN_HAS_REPLY, out, sizeof(rep), buf, max);
	}
	printf("fnrules: %s: the monitor served it\n", r);
	return 1;
}
