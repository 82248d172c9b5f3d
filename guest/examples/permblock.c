/*
 * permblock (hostile): block hypercalls that name memory the guest may not
 * access as asked, or none at all. The first argument picks the probe;
 * each must end the run with a protocol error before the monitor reads or
 * writes that memory (and before it touches the device).
 *
 *   read-text: a block read into the guest's own code
 *   read-bootinfo: a block read into the read-only boot information
 *   write-idt: a block written from the IDT (KVM) or unmapped low memory
 *   read-wild: a block read into an address far outside guest memory
 *   read-past-end: a read whose buffer starts in memory and runs past its end
 *   info-rodata: block_info's answer written into read-only data
 *   read-ok: the control (a block read into the stack)
 */
#include "tender.h"

TENDER_BLOCK_DEVICE(disk, "disk");

static const struct tender_block_info rodata_info = {0};

__attribute__((noinline)) static int text_target(void)
{
	return 7;
}

static int eq(const char *a, const char *b)
{
	return strcmp(a, b) == 0;
}

static void block_io(uint64_t nr, uint64_t buf, uint64_t len)
{
	struct tender_block_io a = {.handle = 0, .offset = 0, .data = buf, .len = len};
	tender_hypercall(nr, &a);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		printf("usage: permblock PROBE\n");
		return 2;
	}
	const char *p = argv[1];
	printf("permblock: %s\n", p);
	uint8_t block[512];
	uint64_t mem = tender_boot_info()->mem_size;

	if (eq(p, "read-text"))
		block_io(TENDER_HC_BLOCK_READ, (uint64_t)(uintptr_t)&text_target, 512);
	else if (eq(p, "read-bootinfo"))
		block_io(TENDER_HC_BLOCK_READ, TENDER_BOOT_INFO_ADDR, 512);
	else if (eq(p, "write-idt"))
		block_io(TENDER_HC_BLOCK_WRITE, 0x2000, 512);
	else if (eq(p, "read-wild"))
		block_io(TENDER_HC_BLOCK_READ, 0xffff00000000ULL, 512);
	else if (eq(p, "read-past-end"))
		block_io(TENDER_HC_BLOCK_READ, mem - 512, 1024);
	else if (eq(p, "info-rodata"))
		tender_hypercall(TENDER_HC_BLOCK_INFO, (void *)(uintptr_t)&rodata_info);
	else if (eq(p, "read-ok"))
		block_io(TENDER_HC_BLOCK_READ, (uint64_t)(uintptr_t)block, sizeof(block));
	else {
		printf("permblock: unknown probe %s\n", p);
		return 2;
	}
	printf("permblock: %s: the monitor served it\n", p);
	return 0;
}
