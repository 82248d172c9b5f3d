/* abort: ends the run through the ABORT hypercall. With the argument "long"
 * the message is 5000 bytes ('a' for the first TENDER_ABORT_MSG_MAX, then
 * 'b'): the monitor keeps only the first TENDER_ABORT_MSG_MAX. */
#include "tender.h"

static char msg[5001];

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "long") == 0) {
		memset(msg, 'a', TENDER_ABORT_MSG_MAX);
		memset(msg + TENDER_ABORT_MSG_MAX, 'b', sizeof(msg) - 1 - TENDER_ABORT_MSG_MAX);
		tender_abort(msg);
	}
	tender_abort("deliberate abort from guest");
}
