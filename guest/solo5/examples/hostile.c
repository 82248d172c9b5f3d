/*
 * hostile: misbehaves as its command line says, for the monitor to stop
 * (or, for the device cases, to answer "invalid"):
 *
 *   puts-ptr      puts from beyond the end of memory
 *   puts-len      puts with a length of 2^40
 *   puts-monitor  puts from the monitor's page at 0x1000
 *   arg-ptr       walltime with its structure at 0xfffff000
 *   arg-ro        walltime with its structure in read-only data
 *   halt-ptr      halt with its structure beyond memory
 *   halt-status   halt with status 300
 *   unknown       hypercall 20
 *   badport       outl to port 0x5ff
 *   execdata      jumps into a data buffer
 *   wrmsr         wrmsr to an MSR other than FS_BASE
 *   cr3           writes CR3
 *   lret          far return to selector 0x10, not 0x8
 *   hlt           executes hlt
 *   cli-loop      executes cli for ever (each one emulated)
 *   devices       block and network calls on handles with no device:
 *                 each must answer invalid; prints SUCCESS
 */
#include "s5.h"
#include "s5_manifest.h"

S5_MANIFEST(0);

static const struct s5_walltime ro_walltime;
static uint8_t data_code[16] = { 0xc3 };

int main(const char *cmdline)
{
	uint64_t end = s5_boot->mem_size;
	if (s5_streq(cmdline, "puts-ptr")) {
		volatile struct s5_puts p = { end + 0x1000, 4 };
		s5_hypercall(S5_HC_PUTS, &p);
	} else if (s5_streq(cmdline, "puts-len")) {
		volatile struct s5_puts p = { (uint64_t)(uintptr_t)cmdline, 1ull << 40 };
		s5_hypercall(S5_HC_PUTS, &p);
	} else if (s5_streq(cmdline, "puts-monitor")) {
		volatile struct s5_puts p = { 0x1000, 16 };
		s5_hypercall(S5_HC_PUTS, &p);
	} else if (s5_streq(cmdline, "arg-ptr")) {
		s5_hypercall(S5_HC_WALLTIME, (void *)(uintptr_t)0xfffff000u);
	} else if (s5_streq(cmdline, "arg-ro")) {
		s5_hypercall(S5_HC_WALLTIME, (void *)&ro_walltime);
	} else if (s5_streq(cmdline, "halt-ptr")) {
		s5_hypercall(S5_HC_HALT, (void *)(uintptr_t)(end + 0x2000));
	} else if (s5_streq(cmdline, "halt-status")) {
		s5_exit(300);
	} else if (s5_streq(cmdline, "unknown")) {
		volatile struct s5_walltime w;
		s5_hypercall(20, &w);
	} else if (s5_streq(cmdline, "badport")) {
		__asm__ volatile("outl %0, %1" : : "a"(0), "d"((uint16_t)0x5ff));
	} else if (s5_streq(cmdline, "execdata")) {
		((void (*)(void))(uintptr_t)data_code)();
	} else if (s5_streq(cmdline, "wrmsr")) {
		__asm__ volatile("wrmsr" : : "c"(0x10u), "a"(0), "d"(0));
	} else if (s5_streq(cmdline, "cr3")) {
		__asm__ volatile("movq %0, %%cr3" : : "r"(0x1000ull));
	} else if (s5_streq(cmdline, "lret")) {
		__asm__ volatile("pushq $0x10; leaq 1f(%%rip), %%rax; pushq %%rax; lretq; 1:" : : : "rax", "memory");
	} else if (s5_streq(cmdline, "cli-loop")) {
		for (;;)
			__asm__ volatile("cli");
	} else if (s5_streq(cmdline, "hlt")) {
		__asm__ volatile("hlt");
	} else if (s5_streq(cmdline, "devices")) {
		static uint8_t buf[512];
		volatile struct s5_blk b = { 1, 0, (uint64_t)(uintptr_t)buf, 512, -1 };
		s5_hypercall(S5_HC_BLKREAD, &b);
		int r1 = b.ret;
		b.ret = -1;
		s5_hypercall(S5_HC_BLKWRITE, &b);
		volatile struct s5_net n = { 0, (uint64_t)(uintptr_t)buf, 60, -1 };
		s5_hypercall(S5_HC_NETWRITE, &n);
		int r3 = n.ret;
		n.handle = 63;
		n.ret = -1;
		s5_hypercall(S5_HC_NETREAD, &n);
		if (r1 != S5_INVALID || b.ret != S5_INVALID || r3 != S5_INVALID || n.ret != S5_INVALID) {
			s5_puts("a call on a missing device did not answer invalid\n");
			return 1;
		}
		s5_puts("SUCCESS\n");
		return 0;
	} else {
		s5_puts("unknown case\n");
		return 1;
	}
	s5_puts("survived\n");
	return 99;
}
