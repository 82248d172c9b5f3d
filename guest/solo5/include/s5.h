/*
 * s5.h: a minimal runtime for guests of the Solo5 hvt ABI (version 2),
 * written for tender's tests from the ABI's published facts
 * (docs/solo5.md). It is not Solo5: it only behaves like a Solo5 guest
 * towards the monitor (boot, privileged set-up, hypercalls).
 */
#ifndef S5_H
#define S5_H

#include <stddef.h>
#include <stdint.h>

/* Boot information, at the address the guest finds in RDI. */
struct s5_boot_info {
	uint64_t mem_size;
	uint64_t kernel_end;
	uint64_t cpu_cycle_freq;
	uint64_t cmdline;
	uint64_t mft;
	uint32_t host_features;
	uint32_t guest_features;
	uint64_t net_ring;
};

/* Manifest entry, as the monitor completes it. */
struct s5_mft_entry {
	char name[68];
	uint32_t type;
	union {
		struct { uint64_t capacity; uint16_t block_size; } blk;
		struct { uint8_t mac[6]; uint16_t mtu; } net;
	} u;
	uint64_t private_;
	uint8_t attached;
};

struct s5_mft {
	uint32_t version;
	uint32_t entries;
	struct s5_mft_entry e[];
};

enum { S5_OK = 0, S5_AGAIN = 1, S5_INVALID = 2, S5_UNSPEC = 3 };
enum {
	S5_HC_WALLTIME = 1, S5_HC_PUTS, S5_HC_POLL, S5_HC_BLKWRITE,
	S5_HC_BLKREAD, S5_HC_NETWRITE, S5_HC_NETREAD, S5_HC_HALT
};

struct s5_walltime { uint64_t nsecs; };
struct s5_puts { uint64_t data; uint64_t len; };
struct s5_poll { uint64_t timeout_nsecs; uint64_t ready_set; int ret; };
struct s5_blk { uint64_t handle; uint64_t offset; uint64_t data; uint64_t len; int ret; };
struct s5_net { uint64_t handle; uint64_t data; uint64_t len; int ret; };
struct s5_halt { uint64_t cookie; int exit_status; };

/* s5_hypercall issues hypercall nr with its argument structure at arg. */
static inline void s5_hypercall(unsigned nr, volatile void *arg)
{
	__asm__ volatile("outl %0, %1"
			 : : "a"((uint32_t)(uintptr_t)arg), "d"((uint16_t)(0x500 + nr))
			 : "memory");
}

/* s5_rdtsc reads the time-stamp counter (no exit, no trap). */
static inline uint64_t s5_rdtsc(void)
{
	uint32_t lo, hi;
	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return (uint64_t)hi << 32 | lo;
}

/* Provided by the runtime. */
extern const struct s5_boot_info *s5_boot;
void s5_puts(const char *s);
void s5_putn(const char *s, size_t n);
void s5_putu(uint64_t v);
uint64_t s5_walltime(void);
uint64_t s5_tsc_ns(uint64_t ticks);
int s5_poll(uint64_t timeout_nsecs, uint64_t *ready);
void s5_set_tls_base(uint64_t base);
__attribute__((noreturn)) void s5_exit(int status);
__attribute__((noreturn)) void s5_abort(void);
size_t s5_strlen(const char *s);
int s5_streq(const char *a, const char *b);

/* Each guest defines main; its return value is the exit status. */
int main(const char *cmdline);

#endif
