/* fn_sha256: a function whose reply is the SHA-256 digest of its request
 * body as 64 lowercase hex digits, without a newline. */
#include "tender.h"
#include "sha256.h"

static void digest_hex(const struct tender_fn_request *req,
		       struct tender_fn_reply *rep)
{
	static const char digits[] = "0123456789abcdef";
	struct sha256_ctx ctx;
	uint8_t digest[SHA256_DIGEST_SIZE];

	sha256_init(&ctx);
	sha256_update(&ctx, req->body, req->len);
	sha256_final(&ctx, digest);
	for (int i = 0; i < SHA256_DIGEST_SIZE; i++) {
		rep->body[2 * i] = (uint8_t)digits[digest[i] >> 4];
		rep->body[2 * i + 1] = (uint8_t)digits[digest[i] & 15];
	}
	rep->len = 2 * SHA256_DIGEST_SIZE;
}

int main(void)
{
	tender_fn_serve(digest_hex);
}
