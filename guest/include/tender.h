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
 * The program defines main, as int main(void) or int main(int argc,
 * char **argv); the runtime calls it with the command line split at spaces
 * (argv[0] is the program name, argv[argc] is NULL, at most 64 arguments).
 * Its return value becomes the exit status: values outside
 * 0..TENDER_EXIT_STATUS_MAX are reported as TENDER_EXIT_STATUS_MAX.
 */

/*
 * A small C library.
 */

void *memcpy(void *restrict dst, const void *restrict src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
int strcmp(const char *a, const char *b);
int strncmp(const char *a, const char *b, size_t n);
char *strchr(const char *s, int c);
unsigned long strtoul(const char *restrict s, char **restrict end, int base);
long strtol(const char *restrict s, char **restrict end, int base);
int atoi(const char *s);

/*
 * Formatted output. Supported: conversions d i u o x X c s p %, flags
 * '-' '0' '+' ' ' '#', width and precision (digits or '*'), length
 * modifiers hh h l ll z j t. %p prints 0x<hex>, or "(nil)" for NULL;
 * %s prints "(null)" for NULL.
 */
int vsnprintf(char *restrict buf, size_t size, const char *restrict fmt,
	      va_list ap) __attribute__((format(__printf__, 3, 0)));
int snprintf(char *restrict buf, size_t size, const char *restrict fmt, ...)
	__attribute__((format(__printf__, 3, 4)));

/* printf and vprintf format into a buffer and write it to the console in
 * one hypercall (output longer than the buffer, 1 KiB, takes several). */
int vprintf(const char *restrict fmt, va_list ap)
	__attribute__((format(__printf__, 1, 0)));
int printf(const char *restrict fmt, ...)
	__attribute__((format(__printf__, 1, 2)));

/* puts writes s and a newline to the console. */
int puts(const char *s);

#ifdef __cplusplus
}
#endif

#endif /* TENDER_H */
