/*
 * exit: exits with the status given as the first argument (default 0).
 *
 * The status is handed to tender_exit unchanged, so any value 0..2^31-1 is
 * accepted here and values above TENDER_EXIT_STATUS_MAX reach the monitor,
 * which must refuse them. Anything that is not a plain decimal number prints
 * the usage and exits with status 2.
 */
#include "tender.h"

static int usage(void)
{
	printf("usage: exit [STATUS]\n");
	return 2;
}

int main(int argc, char **argv)
{
	if (argc > 2)
		return usage();
	if (argc < 2)
		tender_exit(0);

	const char *s = argv[1];
	char *end;
	if (*s < '0' || *s > '9')
		return usage();
	unsigned long v = strtoul(s, &end, 10);
	if (*end != '\0' || v > 0x7fffffffUL)
		return usage();
	tender_exit((int)v);
}
