/*
 * block.c: the block device hypercalls.
 *
 * Each wrapper presets the result the guest sees should the monitor leave
 * the structure alone, so a caller never reads its own input as success.
 */
#include "tender.h"

int tender_block_handle(const char *name)
{
	return tender_device_handle(TENDER_DEVICE_BLOCK, name);
}

uint64_t tender_block_info(int handle, struct tender_block_info *info)
{
	*info = (struct tender_block_info){
		.handle = (uint64_t)(int64_t)handle,
		.result = TENDER_RESULT_INVALID,
	};
	tender_hypercall(TENDER_HC_BLOCK_INFO, info);
	return info->result;
}

static uint64_t block_io(uint64_t nr, int handle, uint64_t off,
			 const void *buf, size_t len)
{
	struct tender_block_io arg = {
		.handle = (uint64_t)(int64_t)handle,
		.offset = off,
		.data = (uint64_t)(uintptr_t)buf,
		.len = len,
		.result = TENDER_RESULT_IO,
	};

	tender_hypercall(nr, &arg);
	return arg.result;
}

uint64_t tender_block_read(int handle, uint64_t off, void *buf, size_t len)
{
	return block_io(TENDER_HC_BLOCK_READ, handle, off, buf, len);
}

uint64_t tender_block_write(int handle, uint64_t off, const void *buf,
			    size_t len)
{
	return block_io(TENDER_HC_BLOCK_WRITE, handle, off, buf, len);
}
