/*
 * time: the wall clock moves forward across a poll of 10 ms, which
 * returns with no device ready; prints SUCCESS.
 */
#include "s5.h"
#include "s5_manifest.h"

S5_MANIFEST(0);

int main(const char *cmdline)
{
	(void)cmdline;
	uint64_t t0 = s5_walltime(), ready = 1;
	if (t0 < 1600000000ull * 1000000000ull) {
		s5_puts("walltime before 2020\n");
		return 1;
	}
	if (s5_poll(10 * 1000 * 1000, &ready) != S5_OK || ready != 0) {
		s5_puts("poll failed\n");
		return 1;
	}
	uint64_t t1 = s5_walltime();
	if (t1 < t0 + 10 * 1000 * 1000) {
		s5_puts("poll returned early\n");
		return 1;
	}
	s5_puts("SUCCESS\n");
	return 0;
}
