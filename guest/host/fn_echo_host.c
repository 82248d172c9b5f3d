/*
 * fn_echo_host: the Linux-process counterpart of the fn_echo guest, for
 * benchmarks. It reads its standard input to the end (at most
 * TENDER_FN_REQUEST_MAX bytes, the function request limit), writes it to
 * standard output and exits 0. Longer input: a message on standard error and
 * exit 1; a read or write error: exit 1. Static, with the host C library;
 * fn_echo_host_nolibc.c is the same program without it.
 */
#include <errno.h>
#include <stdio.h>
#include <unistd.h>

#include "tender_abi.h"

/* One byte more than the limit, to tell "exactly the limit" from "more". */
static unsigned char buf[TENDER_FN_REQUEST_MAX + 1];

int main(void)
{
	size_t len = 0;

	for (;;) {
		ssize_t n = read(0, buf + len, sizeof(buf) - len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			perror("fn_echo_host: read");
			return 1;
		}
		if (n == 0)
			break;
		len += (size_t)n;
		if (len > TENDER_FN_REQUEST_MAX) {
			fprintf(stderr, "fn_echo_host: input longer than %llu bytes\n",
				(unsigned long long)TENDER_FN_REQUEST_MAX);
			return 1;
		}
	}
	for (size_t done = 0; done < len;) {
		ssize_t n = write(1, buf + done, len - done);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			perror("fn_echo_host: write");
			return 1;
		}
		done += (size_t)n;
	}
	return 0;
}
