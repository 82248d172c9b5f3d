/*
 * sha256.h: SHA-256 (FIPS 180-4), shared by the sha256 guest and its host
 * build. Uses only freestanding headers and no library calls.
 */
#ifndef TENDER_SHA256_H
#define TENDER_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define SHA256_BLOCK_SIZE 64
#define SHA256_DIGEST_SIZE 32

struct sha256_ctx {
	uint32_t state[8];
	uint64_t total;		 /* bytes hashed so far */
	size_t buffered;	 /* bytes waiting in block */
	uint8_t block[SHA256_BLOCK_SIZE];
};

void sha256_init(struct sha256_ctx *ctx);
void sha256_update(struct sha256_ctx *ctx, const void *data, size_t len);
void sha256_final(struct sha256_ctx *ctx, uint8_t digest[SHA256_DIGEST_SIZE]);

#endif /* TENDER_SHA256_H */
