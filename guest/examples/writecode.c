/* writecode (hostile): writes a byte into its own code (the first byte of
 * main), which lies in the read-only, executable text segment. The guest
 * takes a page fault. */
#include "tender.h"

int main(void)
{
	printf("writecode: writing into main's code\n");
	volatile uint8_t *code = (volatile uint8_t *)(uintptr_t)&main;
	*code = 0x90;
	printf("writecode: the text segment is writable\n");
	return 1;
}
