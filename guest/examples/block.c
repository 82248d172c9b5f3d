/*
 * block: reads, writes and reads back the block device "disk", and checks
 * that the monitor refuses bad requests with the documented results. The
 * first argument picks the scenario:
 *
 *   rw (default): the round trip and every refusal; leaves blocks 1 and 2
 *     filled with 'G', 'H', ... for the host to check
 *   ro: the device is read-only: reads work, a write is READ_ONLY
 *   io-read: reading the last block fails on the host (IO)
 *   io-write: writing block 0 fails on the host (IO)
 *
 * It prints "block: ok" and exits 0 when every check passed, else it says
 * which failed and exits 1.
 */
#include "tender.h"

TENDER_BLOCK_DEVICE(disk, "disk");

static uint8_t big[TENDER_BLOCK_IO_MAX];
static uint8_t big2[TENDER_BLOCK_IO_MAX];
static int failed;

static void expect(const char *what, uint64_t got, uint64_t want)
{
	if (got != want) {
		printf("block: FAIL %s: result %llu, want %llu\n", what,
		       (unsigned long long)got, (unsigned long long)want);
		failed = 1;
	}
}

static void refusals(int h, uint64_t cap, uint64_t bs)
{
	uint8_t *buf = big;

	expect("misaligned offset", tender_block_read(h, 1, buf, bs),
	       TENDER_RESULT_INVALID);
	expect("partial block", tender_block_read(h, 0, buf, bs + 1),
	       TENDER_RESULT_INVALID);
	expect("zero length", tender_block_write(h, 0, buf, 0),
	       TENDER_RESULT_INVALID);
	expect("at the end", tender_block_read(h, cap, buf, bs),
	       TENDER_RESULT_INVALID);
	expect("across the end", tender_block_write(h, cap - bs, buf, 2 * bs),
	       TENDER_RESULT_INVALID);
	expect("offset overflows", tender_block_read(h, 0 - bs, buf, 2 * bs),
	       TENDER_RESULT_INVALID);
	expect("longer than the maximum",
	       tender_block_read(h, 0, buf, TENDER_BLOCK_IO_MAX + bs),
	       TENDER_RESULT_TOO_LARGE);
	/* A wild length is refused before the buffer is looked at. */
	expect("wild length", tender_block_write(h, 0, buf, 1ULL << 63),
	       TENDER_RESULT_TOO_LARGE);
	expect("unknown handle", tender_block_read(h + 5, 0, buf, bs),
	       TENDER_RESULT_INVALID);
	expect("negative handle", tender_block_read(-1, 0, buf, bs),
	       TENDER_RESULT_INVALID);
	struct tender_block_info info;
	expect("info of an unknown handle", tender_block_info(h + 5, &info),
	       TENDER_RESULT_INVALID);
}

static void round_trip(int h, uint64_t cap, uint64_t bs)
{
	/* The host's data, in block 0. */
	char first[17];
	expect("read block 0", tender_block_read(h, 0, big, bs),
	       TENDER_RESULT_OK);
	memcpy(first, big, 16);
	first[16] = '\0';
	for (int i = 0; i < 16; i++)
		if (first[i] < ' ' || first[i] > '~')
			first[i] = '.';
	printf("block: block 0 starts with %s\n", first);

	/* Two blocks written in one call, read back in one. */
	for (uint64_t i = 0; i < 2 * bs; i++)
		big[i] = (uint8_t)('G' + i / bs);
	expect("write blocks 1-2", tender_block_write(h, bs, big, 2 * bs),
	       TENDER_RESULT_OK);
	memset(big2, 0, 2 * bs);
	expect("read blocks 1-2", tender_block_read(h, bs, big2, 2 * bs),
	       TENDER_RESULT_OK);
	if (memcmp(big, big2, 2 * bs) != 0) {
		printf("block: FAIL blocks 1-2 read back differ\n");
		failed = 1;
	}

	/* The largest transfer, at the end of a device that has room. */
	if (cap >= 2 * TENDER_BLOCK_IO_MAX) {
		uint64_t off = cap - TENDER_BLOCK_IO_MAX;
		for (uint64_t i = 0; i < TENDER_BLOCK_IO_MAX; i++)
			big[i] = (uint8_t)(i * 7 + i / bs);
		expect("write 1 MiB", tender_block_write(h, off, big, TENDER_BLOCK_IO_MAX),
		       TENDER_RESULT_OK);
		memset(big2, 0, TENDER_BLOCK_IO_MAX);
		expect("read 1 MiB", tender_block_read(h, off, big2, TENDER_BLOCK_IO_MAX),
		       TENDER_RESULT_OK);
		if (memcmp(big, big2, TENDER_BLOCK_IO_MAX) != 0) {
			printf("block: FAIL 1 MiB read back differs\n");
			failed = 1;
		}
	}
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "rw";
	int h = tender_block_handle(disk);
	struct tender_block_info info;

	if (h < 0 || tender_block_info(h, &info) != TENDER_RESULT_OK) {
		printf("block: FAIL no device %s\n", disk);
		return 1;
	}
	uint64_t cap = info.capacity, bs = info.block_size;
	printf("block: %s: capacity %llu, block size %llu, flags %llu\n", mode,
	       (unsigned long long)cap, (unsigned long long)bs,
	       (unsigned long long)info.flags);
	if (bs < TENDER_BLOCK_SIZE_MIN || bs > TENDER_BLOCK_SIZE_MAX ||
	    cap < 4 * bs || cap % bs != 0) {
		printf("block: FAIL unexpected geometry\n");
		return 1;
	}

	if (strcmp(mode, "rw") == 0) {
		expect("read-only flag", info.flags, 0);
		round_trip(h, cap, bs);
		refusals(h, cap, bs);
	} else if (strcmp(mode, "ro") == 0) {
		expect("read-only flag", info.flags, TENDER_BLOCK_READ_ONLY);
		expect("read", tender_block_read(h, bs, big, bs), TENDER_RESULT_OK);
		expect("write", tender_block_write(h, bs, big, bs),
		       TENDER_RESULT_READ_ONLY);
		/* A bad request is still INVALID, read-only or not. */
		expect("misaligned write", tender_block_write(h, 1, big, bs),
		       TENDER_RESULT_INVALID);
	} else if (strcmp(mode, "io-read") == 0) {
		expect("read the last block", tender_block_read(h, cap - bs, big, bs),
		       TENDER_RESULT_IO);
	} else if (strcmp(mode, "io-write") == 0) {
		expect("write block 0", tender_block_write(h, 0, big, bs),
		       TENDER_RESULT_IO);
	} else {
		printf("block: unknown mode %s\n", mode);
		return 2;
	}
	if (failed)
		return 1;
	printf("block: ok\n");
	return 0;
}
