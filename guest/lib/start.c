/*
 * start.c: from the entry point to main.
 *
 * tender_start checks the boot info, copies the command line into a writable
 * buffer, splits it into argv and calls main. main's return value becomes the
 * exit status.
 */
#include "tender.h"

#define MAX_ARGS 64

/* Defined by the program, with or without parameters. */
int main(int argc, char **argv);

static const struct tender_boot_info *boot_info;
static char cmdline_copy[TENDER_CMDLINE_MAX];
static char *argv_table[MAX_ARGS + 1];

const struct tender_boot_info *tender_boot_info(void)
{
	return boot_info;
}

/* split_cmdline splits buf in place at spaces into argv (NULL-terminated)
 * and returns argc. Runs of spaces are treated as one separator. */
static int split_cmdline(char *buf, char **argv)
{
	int argc = 0;
	char *p = buf;

	for (;;) {
		while (*p == ' ')
			p++;
		if (*p == '\0')
			break;
		if (argc == MAX_ARGS)
			tender_abort("tender: too many command-line arguments "
				     "(at most 64)");
		argv[argc++] = p;
		while (*p != '\0' && *p != ' ')
			p++;
		if (*p == ' ')
			*p++ = '\0';
	}
	if (argc == 0) /* no program name: give main an empty one */
		argv[argc++] = buf;
	argv[argc] = NULL;
	return argc;
}

__attribute__((noreturn, used)) void
tender_start(const struct tender_boot_info *bi);

__attribute__((noreturn, used)) void
tender_start(const struct tender_boot_info *bi)
{
	if (bi == NULL)
		tender_abort("tender: no boot info (RDI is 0)");
	if (bi->magic != TENDER_BOOT_INFO_MAGIC)
		tender_abort("tender: bad boot info magic");
	if (bi->version != TENDER_ABI_VERSION)
		tender_abort("tender: boot info ABI version is not the one "
			     "this guest was built for");
	if (bi->tsc_hz == 0)
		tender_abort("tender: boot info has no TSC frequency");
	if (bi->cmdline_len >= TENDER_CMDLINE_MAX)
		tender_abort("tender: command line too long");
	if (bi->cmdline == 0 && bi->cmdline_len != 0)
		tender_abort("tender: command line has no address");
	boot_info = bi;

	size_t len = (size_t)bi->cmdline_len;
	if (len != 0)
		memcpy(cmdline_copy, (const char *)(uintptr_t)bi->cmdline, len);
	cmdline_copy[len] = '\0';

	int argc = split_cmdline(cmdline_copy, argv_table);
	int status = main(argc, argv_table);
	/* A failure must never turn into success: every status outside the
	 * valid range is reported as the largest one. */
	if (status < 0 || status > (int)TENDER_EXIT_STATUS_MAX)
		status = (int)TENDER_EXIT_STATUS_MAX;
	tender_exit(status);
}
