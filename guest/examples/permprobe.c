/*
 * permprobe (hostile): names, in one hypercall, memory it may not access
 * itself, and asks the monitor to read or write it on its behalf. The first
 * argument picks the probe. Every probe must end the run with a protocol
 * error before the monitor touches that memory; "ok" probes are controls the
 * monitor must serve.
 *
 *   console-gdt, console-idt, console-kstack, console-pagetables,
 *   console-hole: console_write from the monitor's structures (KVM) or
 *     unmapped low memory, or the hole between the command line and the image
 *   console-text-ok, console-rodata-ok: console_write from readable pages
 *   walltime-text, walltime-rodata, walltime-bootinfo: walltime's result
 *     written into read-only or executable pages
 *   walltime-stack-ok: the control
 *   abort-idt: an abort message read from the IDT
 *   fn-reqbuf-text: a request buffer over the guest's own code; if the
 *     monitor wrote a request there, the guest would call it
 *   fn-reqbuf-zero: a request buffer at guest-physical 0 (the GDT/IDT under
 *     KVM)
 *   fn-reply-idt, fn-reply-pagetables: a reply copied from the IDT or the
 *     page tables
 *   fn-args-rodata: fn_next's argument structure in read-only data
 */
#include "tender.h"

static const char rodata_msg[] = "permprobe: read from rodata\n";
static const struct tender_walltime rodata_wt = {0};
static uint8_t reqbuf[TENDER_FN_REQUEST_MAX];

/* A function that lies in text, at least 1 MiB before the end of the image
 * is not guaranteed; the monitor refuses the first byte anyway. */
__attribute__((noinline)) static int text_target(void)
{
	return 7;
}

static void console_at(uint64_t addr, uint64_t len)
{
	struct tender_console_write a = {.data = addr, .len = len};
	tender_hypercall(TENDER_HC_CONSOLE_WRITE, &a);
}

static void walltime_at(void *where)
{
	tender_hypercall(TENDER_HC_WALLTIME, where);
}

/* fn_next asks for a request into buf, first replying from reply if set. */
static void fn_next(struct tender_fn_next *a, uint64_t buf, uint64_t reply)
{
	*a = (struct tender_fn_next){.req_buf = buf, .req_cap = TENDER_FN_REQUEST_MAX};
	if (reply) {
		a->flags = TENDER_FN_HAS_REPLY;
		a->reply_data = reply;
		a->reply_len = 256;
	}
	tender_hypercall(TENDER_HC_FN_NEXT, a);
}

static int eq(const char *a, const char *b)
{
	return strcmp(a, b) == 0;
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		printf("usage: permprobe PROBE\n");
		return 2;
	}
	const char *p = argv[1];
	printf("permprobe: %s\n", p);
	struct tender_fn_next next;
	struct tender_walltime wt;
	uint64_t text = (uint64_t)(uintptr_t)&text_target;

	if (eq(p, "console-gdt"))
		console_at(0x1000, 64);
	else if (eq(p, "console-idt"))
		console_at(0x2000, 64);
	else if (eq(p, "console-kstack"))
		console_at(0x7f00, 256);
	else if (eq(p, "console-pagetables"))
		console_at(0x20000, 64);
	else if (eq(p, "console-hole"))
		console_at(TENDER_IMAGE_BASE - 64, 64);
	else if (eq(p, "console-text-ok"))
		console_at(text, 1);
	else if (eq(p, "console-rodata-ok"))
		console_at((uint64_t)(uintptr_t)rodata_msg, sizeof(rodata_msg) - 1);
	else if (eq(p, "walltime-text"))
		walltime_at((void *)(uintptr_t)text);
	else if (eq(p, "walltime-rodata"))
		walltime_at((void *)(uintptr_t)&rodata_wt);
	else if (eq(p, "walltime-bootinfo"))
		walltime_at((void *)(uintptr_t)TENDER_BOOT_INFO_ADDR);
	else if (eq(p, "walltime-stack-ok")) {
		walltime_at(&wt);
		printf("permprobe: walltime %s\n", wt.nsecs ? "set" : "zero");
	} else if (eq(p, "abort-idt")) {
		struct tender_abort a = {.msg = 0x2000, .len = 64};
		tender_hypercall(TENDER_HC_ABORT, &a);
	} else if (eq(p, "fn-reqbuf-text")) {
		fn_next(&next, text, 0);
		printf("permprobe: calling the request\n");
		return text_target();
	} else if (eq(p, "fn-reqbuf-zero")) {
		fn_next(&next, 0, 0);
		__asm__ volatile("int3");
	} else if (eq(p, "fn-reply-idt") || eq(p, "fn-reply-pagetables")) {
		fn_next(&next, (uint64_t)(uintptr_t)reqbuf, 0);
		fn_next(&next, (uint64_t)(uintptr_t)reqbuf, eq(p, "fn-reply-idt") ? 0x2000 : 0x20000);
	} else if (eq(p, "fn-args-rodata")) {
		tender_hypercall(TENDER_HC_FN_NEXT, (void *)(uintptr_t)&rodata_wt);
	} else {
		printf("permprobe: unknown probe %s\n", p);
		return 2;
	}
	printf("permprobe: %s: the monitor served it\n", p);
	return 0;
}
