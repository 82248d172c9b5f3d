/*
 * portio (hostile): port I/O to the exit hypercall's port that is not
 * `outl %eax, %dx`. The form is the first argument:
 *
 *   outsl      outsl (string output of one 32-bit word)
 *   repoutsl1  rep outsl with ECX = 1
 *   repoutsl4  rep outsl with ECX = 4
 *   outb       outb %al, %dx
 *   outw       outw %ax, %dx
 *   inl        inl %dx, %eax
 *
 * EAX and every word a string output reads hold the address of an exit
 * argument with status 0, so a monitor that served any of them as the exit
 * hypercall would end the run with status 0 instead of refusing it.
 */
#include "tender.h"

int main(int argc, char **argv)
{
	static struct tender_exit arg; /* status 0 */
	static uint32_t words[4];
	uint32_t a = (uint32_t)(uintptr_t)&arg;
	uint16_t port = (uint16_t)(TENDER_PIO_BASE + TENDER_HC_EXIT);
	const uint32_t *src = words;
	uint64_t n;

	for (int i = 0; i < 4; i++)
		words[i] = a;
	if (argc != 2) {
		printf("usage: portio outsl|repoutsl1|repoutsl4|outb|outw|inl\n");
		return 2;
	}
	const char *form = argv[1];
	printf("portio: %s to port %#x\n", form, port);
	if (strcmp(form, "outsl") == 0) {
		__asm__ __volatile__("outsl" : "+S"(src) : "a"(a), "d"(port) : "memory");
	} else if (strcmp(form, "repoutsl1") == 0 || strcmp(form, "repoutsl4") == 0) {
		n = form[8] == '1' ? 1 : 4;
		__asm__ __volatile__("rep outsl" : "+S"(src), "+c"(n) : "a"(a), "d"(port) : "memory");
	} else if (strcmp(form, "outb") == 0) {
		__asm__ __volatile__("outb %%al, %%dx" : : "a"(a), "d"(port) : "memory");
	} else if (strcmp(form, "outw") == 0) {
		__asm__ __volatile__("outw %%ax, %%dx" : : "a"(a), "d"(port) : "memory");
	} else if (strcmp(form, "inl") == 0) {
		__asm__ __volatile__("inl %%dx, %%eax" : "+a"(a) : "d"(port) : "memory");
	} else {
		printf("portio: unknown form %s\n", form);
		return 2;
	}
	printf("portio: %s went through\n", form);
	return 1;
}
