/*
 * sha256: hashes N MiB (argument, default 1) of generated data, where byte i
 * is i % 251, and prints "sha256 <N>MiB <digest in hex>". The data is made
 * 64 KiB at a time. Also built as a Linux program
 * (bin/guest/host/sha256_host, -DTENDER_HOST) to compare with.
 */
#ifdef TENDER_HOST
#include <stdio.h>
#include <stdlib.h>
#else
#include "tender.h"
#endif
#include "sha256.h"

#define CHUNK (64u << 10)
#define MAX_MIB (1ul << 20) /* 1 TiB */

static uint8_t chunk[CHUNK];

static int usage(void)
{
	printf("usage: sha256 [MIB]\n");
	return 2;
}

int main(int argc, char **argv)
{
	unsigned long mib = 1;

	if (argc > 2)
		return usage();
	if (argc == 2) {
		char *end;
		if (argv[1][0] < '0' || argv[1][0] > '9')
			return usage();
		mib = strtoul(argv[1], &end, 10);
		if (*end != '\0' || mib > MAX_MIB)
			return usage();
	}

	struct sha256_ctx ctx;
	uint64_t total = (uint64_t)mib << 20;
	unsigned v = 0; /* next byte value: (offset % 251) */

	sha256_init(&ctx);
	for (uint64_t done = 0; done < total; done += CHUNK) {
		for (size_t i = 0; i < CHUNK; i++) {
			chunk[i] = (uint8_t)v;
			if (++v == 251)
				v = 0;
		}
		sha256_update(&ctx, chunk, CHUNK);
	}

	uint8_t digest[SHA256_DIGEST_SIZE];
	char hex[2 * SHA256_DIGEST_SIZE + 1];
	static const char digits[] = "0123456789abcdef";

	sha256_final(&ctx, digest);
	for (int i = 0; i < SHA256_DIGEST_SIZE; i++) {
		hex[2 * i] = digits[digest[i] >> 4];
		hex[2 * i + 1] = digits[digest[i] & 15];
	}
	hex[2 * SHA256_DIGEST_SIZE] = '\0';
	printf("sha256 %luMiB %s\n", mib, hex);
	return 0;
}
