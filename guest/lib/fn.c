/*
 * fn.c: the function-invocation loop.
 *
 * One FN_NEXT hypercall per invocation both hands the monitor the previous
 * reply and receives the next request, written straight into a static buffer
 * the handler reads in place. Nothing is copied on the guest side, and
 * nothing is written to the console.
 *
 * The two 1 MiB buffers are in bss: the loader zeroes them, and under KVM
 * their pages cost nothing until first touched.
 */
#include "tender.h"

/* Loads segment register reg with want unless it holds it already: reading a
 * selector is nearly free, but a load costs about 45 ns on the hosts tender
 * was measured on (issue 11), and loading the null selector into FS or GS
 * clears its base on some CPUs (AMD), a base the guest may have set. */
#define SEG_RELOAD(reg, want)                                                  \
	do {                                                                   \
		uint16_t cur_;                                                 \
		__asm__ __volatile__("mov %%" #reg ", %0" : "=r"(cur_));       \
		if (cur_ != (want))                                            \
			__asm__ __volatile__("mov %0, %%" #reg : : "r"(want)); \
	} while (0)

static uint8_t fn_request_buf[TENDER_FN_REQUEST_MAX];
static uint8_t fn_reply_buf[TENDER_FN_REPLY_MAX];

__attribute__((noreturn)) void tender_fn_serve(tender_fn_handler handler)
{
	struct tender_fn_reply rep = {0};
	uint64_t flags = 0; /* the first call has no reply to return */
	uint16_t ds, es, fs, gs;

	/* A request can load other data segment selectors at CPL 3, and some
	 * hosts (kvm_pvm) keep them where the monitor cannot reset them: each
	 * request gets the ones of the first fn_next back, so that a fresh
	 * instance starts from its snapshot's. */
	__asm__ __volatile__("mov %%ds, %0; mov %%es, %1; mov %%fs, %2; mov %%gs, %3"
			     : "=r"(ds), "=r"(es), "=r"(fs), "=r"(gs));

	for (;;) {
		/* Every input field is set afresh, so nothing depends on what
		 * the monitor leaves in the structure. */
		struct tender_fn_next next = {
			.flags = flags,
			.reply_status = rep.status,
			.reply_data = (uint64_t)(uintptr_t)rep.body,
			.reply_len = rep.len,
			.req_buf = (uint64_t)(uintptr_t)fn_request_buf,
			.req_cap = sizeof(fn_request_buf),
		};

		tender_hypercall(TENDER_HC_FN_NEXT, &next);
		SEG_RELOAD(ds, ds);
		SEG_RELOAD(es, es);
		SEG_RELOAD(fs, fs);
		SEG_RELOAD(gs, gs);
		if (next.req_len > sizeof(fn_request_buf))
			tender_abort("tender: fn_next request longer than the "
				     "request buffer");

		struct tender_fn_request req = {
			.id = next.req_id,
			.body = fn_request_buf,
			.len = (size_t)next.req_len,
			.deadline_ns = next.req_deadline,
		};
		rep = (struct tender_fn_reply){
			.status = 0,
			.body = fn_reply_buf,
			.len = 0,
			.cap = sizeof(fn_reply_buf),
		};
		handler(&req, &rep);
		flags = TENDER_FN_HAS_REPLY;
	}
}
