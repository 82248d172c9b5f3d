/*
 * permnet (hostile): network hypercalls that name memory the guest may not
 * access as asked. The first argument picks the probe; each must end the
 * run with a protocol error before the monitor reads or writes that memory.
 *
 *   netwrite-idt: a frame read from the IDT (KVM) or unmapped low memory
 *   netread-text: a frame received into the guest's own code
 *   netread-bootinfo: a frame received into the read-only boot information
 *   netinfo-rodata: net_info's answer written into read-only data
 *   netread-ok: the control (a frame received into the stack)
 */
#include "tender.h"

TENDER_NET_DEVICE(net0, "net0");

static const struct tender_net_info rodata_info = {0};

__attribute__((noinline)) static int text_target(void)
{
	return 7;
}

static int eq(const char *a, const char *b)
{
	return strcmp(a, b) == 0;
}

static void net_read_into(uint64_t buf, uint64_t cap)
{
	struct tender_net_read a = {.handle = 0, .data = buf, .cap = cap};
	tender_hypercall(TENDER_HC_NET_READ, &a);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		printf("usage: permnet PROBE\n");
		return 2;
	}
	const char *p = argv[1];
	printf("permnet: %s\n", p);
	uint8_t frame[1514];

	if (eq(p, "netwrite-idt")) {
		struct tender_net_write a = {.handle = 0, .data = 0x2000, .len = 64};
		tender_hypercall(TENDER_HC_NET_WRITE, &a);
	} else if (eq(p, "netread-text"))
		net_read_into((uint64_t)(uintptr_t)&text_target, sizeof(frame));
	else if (eq(p, "netread-bootinfo"))
		net_read_into(TENDER_BOOT_INFO_ADDR, sizeof(frame));
	else if (eq(p, "netinfo-rodata"))
		tender_hypercall(TENDER_HC_NET_INFO, (void *)(uintptr_t)&rodata_info);
	else if (eq(p, "netread-ok"))
		net_read_into((uint64_t)(uintptr_t)frame, sizeof(frame));
	else {
		printf("permnet: unknown probe %s\n", p);
		return 2;
	}
	printf("permnet: %s: the monitor served it\n", p);
	return 0;
}
