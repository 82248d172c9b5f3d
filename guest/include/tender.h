/*
 * tender.h: the guest-side API of the tender unikernel monitor.
 *
 * A tender guest is a freestanding static program. It has no system calls:
 * everything it asks of the monitor goes through a hypercall (see
 * tender_abi.h, generated from hypercall/abi.go). This header wraps those
 * hypercalls and declares the small C library in guest/lib.
 *
 * Only the compiler's freestanding headers are used.
 */
#ifndef TENDER_H
#define TENDER_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tender_abi.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Hypercalls.
 */

/*
 * tender_hypercall issues hypercall nr with the argument structure at arg.
 * The structure's guest-physical address travels in EAX, so it must lie below
 * 4 GiB (all guest memory does). The monitor may write results back into the
 * structure; the "memory" clobber makes the compiler store the structure
 * before the call and reload it afterwards.
 */
static inline void tender_hypercall(uint64_t nr, void *arg)
{
	__asm__ __volatile__("outl %%eax, %%dx"
			     :
			     : "a"((uint32_t)(uintptr_t)arg),
			       "d"((uint16_t)(TENDER_PIO_BASE + nr))
			     : "memory");
}

/* tender_rdtsc reads the time-stamp counter (no exit). */
static inline uint64_t tender_rdtsc(void)
{
	uint32_t lo, hi;
	__asm__ __volatile__("rdtsc" : "=a"(lo), "=d"(hi));
	return ((uint64_t)hi << 32) | lo;
}

/*
 * tender_console_write writes len bytes to the console, split into
 * hypercalls of at most TENDER_CONSOLE_WRITE_MAX bytes each.
 */
void tender_console_write(const void *data, size_t len);

/* tender_walltime_ns returns the host wall clock, ns since the Unix epoch
 * (one WALLTIME hypercall). */
uint64_t tender_walltime_ns(void);

/* tender_monotonic_ns returns nanoseconds since boot (boot_info->boot_tsc),
 * computed from rdtsc and boot_info->tsc_hz without any exit. */
uint64_t tender_monotonic_ns(void);

/* tender_walltime_tsc_ns returns boot_info->boot_walltime plus
 * tender_monotonic_ns(): wall-clock time without any exit (it does not
 * follow host clock adjustments made after boot). */
uint64_t tender_walltime_tsc_ns(void);

/* tender_exit ends the run with the given status. The status is passed to
 * the monitor unchanged; only 0..TENDER_EXIT_STATUS_MAX are valid. */
__attribute__((noreturn)) void tender_exit(int status);

/* tender_abort ends the run as aborted with msg (NUL-terminated; NULL is
 * treated as ""). */
__attribute__((noreturn)) void tender_abort(const char *msg);

/* tender_boot_info returns the boot information the guest was started with
 * (validated by the runtime before main runs). */
const struct tender_boot_info *tender_boot_info(void);

/*
 * Function invocations.
 *
 * A function guest serves requests instead of running once: its main calls
 * tender_fn_serve with a handler, and each FN_NEXT hypercall returns the
 * previous reply and fetches the next request (one exit per invocation).
 */

/* tender_fn_request is one request. body points into the runtime's request
 * buffer and stays valid until the handler returns. deadline_ns is the
 * wall-clock time (ns since the Unix epoch) by which the monitor wants the
 * reply, 0 for none; the monitor stops the guest then. */
struct tender_fn_request {
	uint64_t id;
	const uint8_t *body;
	size_t len;
	uint64_t deadline_ns;
};

/* tender_fn_reply is the handler's answer. The handler receives it preset to
 * status 0 and an empty body in the runtime's reply buffer (body, cap =
 * TENDER_FN_REPLY_MAX bytes, len 0). It either writes up to cap bytes into
 * body and sets len, or points body at other memory that outlives the handler
 * (static data, or req->body for a zero-copy echo; never the handler's own
 * stack) and sets len. A nonzero status reports an error to the caller; the
 * body may explain it. len is sent unchanged: a reply longer than
 * TENDER_FN_REPLY_MAX is rejected by the monitor, not truncated here. */
struct tender_fn_reply {
	uint64_t status;
	uint8_t *body;
	size_t len;
	size_t cap;
};

typedef void (*tender_fn_handler)(const struct tender_fn_request *req,
				  struct tender_fn_reply *rep);

/* tender_fn_serve calls handler once per request, forever. It never returns:
 * the monitor stops the guest when it has no more requests for it. */
__attribute__((noreturn)) void tender_fn_serve(tender_fn_handler handler);

/*
 * Devices.
 *
 * A guest declares every device it uses (network or block) in its image, with one ELF note
 * (owner "Tender", type TENDER_NOTE_TYPE_DEVICES) per device whose
 * descriptor is a struct tender_device_entry. The monitor attaches a host
 * device to each declared name (`tender run -net NAME=...`, `-block
 * NAME=...`) and refuses to
 * start the guest when a declared device is missing or an undeclared one is
 * given. A device's handle is the index of its note among all device notes,
 * in file order. The notes keep their declaration order within a source
 * file (no_reorder) and follow the link order across files; in any case
 * tender_net_handle finds a handle by name at run time, so a program never
 * needs to know that order.
 *
 *	TENDER_NET_DEVICE(net0, "net0");    (at file scope)
 *	...
 *	int h = tender_net_handle(net0);   (0 when it is the only device)
 *
 * TENDER_NET_DEVICE(var, "name") emits the note into the section
 * .note.tender.device, which the linker script (tender.ld) places in the
 * PT_NOTE segment right after the ABI note, between the symbols
 * __tender_devices_start and __tender_devices_end. It also defines
 * `static const char var[]` holding the name. The name must be a string
 * literal of 1 to TENDER_DEVICE_NAME_MAX characters.
 */

/* tender_device_note is one device note as laid out in the image. */
struct tender_device_note {
	uint32_t namesz; /* sizeof(TENDER_NOTE_NAME): 7 */
	uint32_t descsz; /* sizeof(struct tender_device_entry): 32 */
	uint32_t type;   /* TENDER_NOTE_TYPE_DEVICES */
	char name[8];    /* "Tender" + NUL, padded to 4 bytes */
	struct tender_device_entry desc;
};
TENDER_STATIC_ASSERT(sizeof(struct tender_device_note) == 52, "device note layout");

/* TENDER_DEVICE_NOTE emits one device note of device type devtype (see
 * TENDER_NET_DEVICE and TENDER_BLOCK_DEVICE). */
#define TENDER_DEVICE_NOTE(var, devname, devtype)                             \
	TENDER_STATIC_ASSERT(sizeof(devname) >= 2 &&                                \
			       sizeof(devname) <= TENDER_DEVICE_NAME_MAX + 1, \
		       "device name must have 1 to 23 characters");           \
	__attribute__((section(".note.tender.device"), aligned(4), used,      \
		       no_reorder))                                           \
	static const struct tender_device_note var##_tender_device_note = {   \
		.namesz = sizeof(TENDER_NOTE_NAME),                           \
		.descsz = sizeof(struct tender_device_entry),                 \
		.type = TENDER_NOTE_TYPE_DEVICES,                             \
		.name = TENDER_NOTE_NAME,                                     \
		.desc = {                                                     \
			.type = devtype,                                      \
			.reserved = 0,                                        \
			.name = devname,                                      \
		},                                                            \
	};                                                                    \
	__attribute__((unused)) static const char var[] = devname

#define TENDER_NET_DEVICE(var, devname) \
	TENDER_DEVICE_NOTE(var, devname, TENDER_DEVICE_NET)

/* TENDER_BLOCK_DEVICE(var, "name") declares a block device, attached with
 * `tender run -block name=PATH`. */
#define TENDER_BLOCK_DEVICE(var, devname) \
	TENDER_DEVICE_NOTE(var, devname, TENDER_DEVICE_BLOCK)

/* tender_device_handle returns the handle of the device of type devtype
 * (TENDER_DEVICE_NET or TENDER_DEVICE_BLOCK) declared with the given name,
 * or -1. It only reads the image's device notes (no exit). */
int tender_device_handle(uint32_t devtype, const char *name);

/* tender_net_handle returns the handle of the network device declared with
 * the given name, or -1 when the image declares no such network device. It
 * only reads the image's device notes (no exit). */
int tender_net_handle(const char *name);

/* The network hypercalls. Each returns the hypercall's result
 * (TENDER_RESULT_OK, _AGAIN, _INVALID, _TOO_LARGE, _TRUNCATED or _IO).
 *
 * tender_net_info fills *info (mac: low 48 bits, first octet in the least
 * significant byte; mtu: the largest IP packet, frames are up to mtu + 14
 * bytes). tender_net_write sends one Ethernet frame (no preamble, no FCS).
 * tender_net_read takes one received frame into buf without blocking: AGAIN
 * when none is pending; TRUNCATED when it was longer than cap (the frame is
 * dropped, *len is its length); *len is set for OK and TRUNCATED, else 0. */
uint64_t tender_net_info(int handle, struct tender_net_info *info);
uint64_t tender_net_write(int handle, const void *frame, size_t len);
uint64_t tender_net_read(int handle, void *buf, size_t cap, size_t *len);

/* tender_poll waits until a device has input or timeout_ns passes (the
 * monitor waits at most TENDER_POLL_MAX per call) and returns the ready
 * mask: bit i set when device i has input. 0 returns at once. */
uint64_t tender_poll(uint64_t timeout_ns);

/* tender_block_handle returns the handle of the block device declared with
 * the given name, or -1. */
int tender_block_handle(const char *name);

/* The block hypercalls. Each returns the hypercall's result
 * (TENDER_RESULT_OK, _INVALID, _TOO_LARGE, _IO or _READ_ONLY).
 *
 * tender_block_info fills *info (capacity in bytes, block_size, flags
 * TENDER_BLOCK_READ_ONLY). tender_block_read and tender_block_write move
 * len bytes between buf and the device at byte offset off: both multiples
 * of the block size, len at most TENDER_BLOCK_IO_MAX, inside the device.
 * A failed write (IO) may have written part of its blocks. */
uint64_t tender_block_info(int handle, struct tender_block_info *info);
uint64_t tender_block_read(int handle, uint64_t off, void *buf, size_t len);
uint64_t tender_block_write(int handle, uint64_t off, const void *buf,
			    size_t len);

/*
 * The program defines main, as int main(void) or int main(int argc,
 * char **argv); the runtime calls it with the command line split at spaces
 * (argv[0] is the program name, argv[argc] is NULL, at most 64 arguments).
 * Its return value becomes the exit status: values outside
 * 0..TENDER_EXIT_STATUS_MAX are reported as TENDER_EXIT_STATUS_MAX.
 */

/*
 * A small C library.
 */

void *memcpy(void *__restrict dst, const void *__restrict src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
int strcmp(const char *a, const char *b);
int strncmp(const char *a, const char *b, size_t n);
char *strchr(const char *s, int c);
unsigned long strtoul(const char *__restrict s, char **__restrict end, int base);
long strtol(const char *__restrict s, char **__restrict end, int base);
int atoi(const char *s);

/*
 * Formatted output. Supported: conversions d i u o x X c s p %, flags
 * '-' '0' '+' ' ' '#', width and precision (digits or '*'), length
 * modifiers hh h l ll z j t. %p prints 0x<hex>, or "(nil)" for NULL;
 * %s prints "(null)" for NULL.
 */
int vsnprintf(char *__restrict buf, size_t size, const char *__restrict fmt,
	      va_list ap) __attribute__((format(__printf__, 3, 0)));
int snprintf(char *__restrict buf, size_t size, const char *__restrict fmt, ...)
	__attribute__((format(__printf__, 3, 4)));

/* printf and vprintf format into a buffer and write it to the console in
 * one hypercall (output longer than the buffer, 1 KiB, takes several). */
int vprintf(const char *__restrict fmt, va_list ap)
	__attribute__((format(__printf__, 1, 0)));
int printf(const char *__restrict fmt, ...)
	__attribute__((format(__printf__, 1, 2)));

/* puts writes s and a newline to the console. */
int puts(const char *s);

#ifdef __cplusplus
}
#endif

#endif /* TENDER_H */
