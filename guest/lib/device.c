/*
 * device.c: device handles and the network hypercalls.
 *
 * The device notes a program declares with TENDER_NET_DEVICE and
 * TENDER_BLOCK_DEVICE all land in the
 * input section .note.tender.device, which tender.ld places (after the ABI
 * note, inside the PT_NOTE segment) between __tender_devices_start and
 * __tender_devices_end. A device's handle is its index among the device
 * notes, which is exactly the order the monitor reads them in, so looking a
 * name up here gives the handle the monitor assigned.
 */
#include "tender.h"

extern const struct tender_device_note __tender_devices_start[];
extern const struct tender_device_note __tender_devices_end[];

int tender_device_handle(uint32_t devtype, const char *name)
{
	uintptr_t p = (uintptr_t)__tender_devices_start;
	uintptr_t end = (uintptr_t)__tender_devices_end;
	int index = 0;

	if (name == NULL)
		return -1;
	size_t len = strlen(name);
	if (len == 0 || len > TENDER_DEVICE_NAME_MAX)
		return -1;
	/* Every note in the section was made by TENDER_DEVICE_NOTE, so each is
	 * exactly one struct tender_device_note; anything else stops the walk
	 * rather than being misread. */
	for (; end - p >= sizeof(struct tender_device_note);
	     p += sizeof(struct tender_device_note), index++) {
		const struct tender_device_note *n =
			(const struct tender_device_note *)p;

		if (n->namesz != sizeof(TENDER_NOTE_NAME) ||
		    n->descsz != sizeof(struct tender_device_entry) ||
		    n->type != TENDER_NOTE_TYPE_DEVICES)
			return -1;
		if (n->desc.type != devtype)
			continue;
		if (memcmp(n->desc.name, name, len) == 0 &&
		    n->desc.name[len] == '\0')
			return index;
	}
	return -1;
}

int tender_net_handle(const char *name)
{
	return tender_device_handle(TENDER_DEVICE_NET, name);
}

uint64_t tender_net_info(int handle, struct tender_net_info *info)
{
	*info = (struct tender_net_info){
		.handle = (uint64_t)(int64_t)handle,
		.result = TENDER_RESULT_INVALID, /* if the monitor leaves it */
	};
	tender_hypercall(TENDER_HC_NET_INFO, info);
	return info->result;
}

uint64_t tender_net_write(int handle, const void *frame, size_t len)
{
	struct tender_net_write arg = {
		.handle = (uint64_t)(int64_t)handle,
		.data = (uint64_t)(uintptr_t)frame,
		.len = len,
		.result = TENDER_RESULT_IO, /* if the monitor leaves it alone */
	};

	tender_hypercall(TENDER_HC_NET_WRITE, &arg);
	return arg.result;
}

uint64_t tender_net_read(int handle, void *buf, size_t cap, size_t *len)
{
	struct tender_net_read arg = {
		.handle = (uint64_t)(int64_t)handle,
		.data = (uint64_t)(uintptr_t)buf,
		.cap = cap,
		.len = 0,
		.result = TENDER_RESULT_IO,
	};

	tender_hypercall(TENDER_HC_NET_READ, &arg);
	*len = arg.result == TENDER_RESULT_OK ||
			       arg.result == TENDER_RESULT_TRUNCATED
		       ? (size_t)arg.len
		       : 0;
	return arg.result;
}

uint64_t tender_poll(uint64_t timeout_ns)
{
	struct tender_poll arg = {
		.timeout = timeout_ns,
	};

	tender_hypercall(TENDER_HC_POLL, &arg);
	return arg.ready;
}
