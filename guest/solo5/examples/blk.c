/*
 * blk: declares block device "storage" and works on it as its command
 * line says:
 *
 *   (none)         checks the completed manifest (attached, capacity, block
 *                  size), prints the first 16 bytes of block 0, writes a
 *                  pattern to the first and last blocks, reads them back,
 *                  checks that each bad request answers invalid, SUCCESS
 *   ro             a write answers invalid, a read works, SUCCESS
 *   io-read        reading the last block answers unspecified, SUCCESS
 *   io-write       writing block 0 answers unspecified, SUCCESS
 *   read-text      block_read into the guest's own text
 *   read-bootinfo  block_read into the read-only boot information
 *   write-wild     block_write from beyond the end of memory
 *   tender-nr      hypercall 11, tender's own block_read, which a Solo5
 *                  guest does not have
 *
 * blknet.c builds the same with a network device declared first, so that
 * "storage" has handle 2 and handle 1 is a network device.
 */
#include "s5.h"
#include "s5_manifest.h"

#ifdef BLK_WITH_NET
S5_MANIFEST(2, S5_NET("service0"), S5_BLOCK("storage"));
enum { BLK = 2, NET = 1 };
#else
S5_MANIFEST(1, S5_BLOCK("storage"));
enum { BLK = 1, NET = 0 };
#endif

static uint8_t buf[32768] __attribute__((aligned(64)));

static int blk(unsigned nr, uint64_t handle, uint64_t off, uint64_t data, uint64_t len)
{
	volatile struct s5_blk b = { handle, off, data, len, -1 };
	s5_hypercall(nr, &b);
	return b.ret;
}

static int blk_buf(unsigned nr, uint64_t handle, uint64_t off, uint64_t len)
{
	return blk(nr, handle, off, (uint64_t)(uintptr_t)buf, len);
}

static int fail(const char *what, int ret)
{
	s5_puts("blk: ");
	s5_puts(what);
	s5_puts(": ret ");
	s5_putu((uint64_t)ret);
	s5_puts("\n");
	return 1;
}

static uint8_t pattern(uint64_t block, uint64_t i) { return (uint8_t)(i * 7 + block * 13 + 1); }

static int write_check(uint64_t bs, uint64_t block)
{
	for (uint64_t i = 0; i < bs; i++)
		buf[i] = pattern(block, i);
	int r = blk_buf(S5_HC_BLKWRITE, BLK, block * bs, bs);
	if (r != S5_OK)
		return fail("write", r);
	for (uint64_t i = 0; i < bs; i++)
		buf[i] = 0;
	r = blk_buf(S5_HC_BLKREAD, BLK, block * bs, bs);
	if (r != S5_OK)
		return fail("read back", r);
	for (uint64_t i = 0; i < bs; i++)
		if (buf[i] != pattern(block, i))
			return fail("read back a different block", 0);
	return 0;
}

/* refusals: every request here must answer invalid and touch nothing. */
static int refusals(uint64_t cap, uint64_t bs)
{
	static const struct { const char *what; unsigned nr; uint64_t handle, off, len; } bad[] = {
		{ "read at capacity", S5_HC_BLKREAD, BLK, 0, 0 },
		{ "write at capacity", S5_HC_BLKWRITE, BLK, 0, 0 },
		{ "read at 2^64 - bs", S5_HC_BLKREAD, BLK, 1, 0 },
		{ "misaligned read", S5_HC_BLKREAD, BLK, 2, 0 },
		{ "misaligned write", S5_HC_BLKWRITE, BLK, 2, 0 },
		{ "read of two blocks", S5_HC_BLKREAD, BLK, 3, 2 },
		{ "read of half a block", S5_HC_BLKREAD, BLK, 3, 3 },
		{ "read of 0 bytes", S5_HC_BLKREAD, BLK, 3, 4 },
		{ "write of 0 bytes", S5_HC_BLKWRITE, BLK, 3, 4 },
		{ "reserved handle 0", S5_HC_BLKREAD, 0, 3, 0 },
		{ "unknown handle", S5_HC_BLKREAD, BLK + 1, 3, 0 },
		{ "handle 2^63", S5_HC_BLKWRITE, 1ull << 63, 3, 0 },
		{ "network handle (0 without one)", S5_HC_BLKREAD, NET, 3, 0 },
	};
	for (unsigned i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		/* off: 0 capacity, 1 2^64 - bs, 2 bs + 1, 3 0;
		 * len: 0 bs, 2 2*bs, 3 bs/2, 4 0. */
		uint64_t off = bad[i].off == 0 ? cap : bad[i].off == 1 ? -bs : bad[i].off == 2 ? bs + 1 : 0;
		uint64_t len = bad[i].len == 0 ? bs : bad[i].len == 2 ? 2 * bs : bad[i].len == 3 ? bs / 2 : 0;
		buf[0] = 0xa5;
		int r = blk_buf(bad[i].nr, bad[i].handle, off, len);
		if (r != S5_INVALID || buf[0] != 0xa5)
			return fail(bad[i].what, r);
	}
	return 0;
}

int main(const char *cmdline)
{
	const struct s5_mft *m = (const struct s5_mft *)(uintptr_t)s5_boot->mft;
	const struct s5_mft_entry *e = &m->e[BLK];
	uint64_t cap = e->u.blk.capacity, bs = e->u.blk.block_size;
	if (m->version != 1 || m->entries != BLK + 1 || !e->attached || e->type != 1 ||
	    !s5_streq(e->name, "storage") || bs < 512 || bs > sizeof buf || (bs & (bs - 1)) ||
	    cap < bs || cap % bs != 0) {
		s5_puts("blk: bad manifest\n");
		return 1;
	}
	s5_puts("blk: capacity ");
	s5_putu(cap);
	s5_puts(", block size ");
	s5_putu(bs);
	s5_puts("\n");
	uint64_t last = cap / bs - 1;
	int r;
	if (s5_streq(cmdline, "ro")) {
		if ((r = blk_buf(S5_HC_BLKWRITE, BLK, 0, bs)) != S5_INVALID)
			return fail("write to a read-only device", r);
		if ((r = blk_buf(S5_HC_BLKREAD, BLK, 0, bs)) != S5_OK)
			return fail("read of a read-only device", r);
	} else if (s5_streq(cmdline, "io-read")) {
		if ((r = blk_buf(S5_HC_BLKREAD, BLK, last * bs, bs)) != S5_UNSPEC)
			return fail("read of a shrunk file", r);
	} else if (s5_streq(cmdline, "io-write")) {
		if ((r = blk_buf(S5_HC_BLKWRITE, BLK, 0, bs)) != S5_UNSPEC)
			return fail("write to a closed file", r);
	} else if (s5_streq(cmdline, "read-text")) {
		blk(S5_HC_BLKREAD, BLK, 0, (uint64_t)(uintptr_t)main, bs);
		return fail("survived", 0);
	} else if (s5_streq(cmdline, "read-bootinfo")) {
		blk(S5_HC_BLKREAD, BLK, 0, (uint64_t)(uintptr_t)s5_boot, bs);
		return fail("survived", 0);
	} else if (s5_streq(cmdline, "write-wild")) {
		blk(S5_HC_BLKWRITE, BLK, 0, s5_boot->mem_size + 0x1000, bs);
		return fail("survived", 0);
	} else if (s5_streq(cmdline, "tender-nr")) {
		static volatile uint64_t io[8] = { 0, 0, (uint64_t)(uintptr_t)buf, 512 };
		s5_hypercall(11, io);
		return fail("survived", 0);
	} else if (*cmdline) {
		s5_puts("blk: unknown case\n");
		return 1;
	} else {
		if ((r = blk_buf(S5_HC_BLKREAD, BLK, 0, bs)) != S5_OK)
			return fail("read of block 0", r);
		s5_puts("blk: block 0 starts with ");
		s5_putn((const char *)buf, 16);
		s5_puts("\n");
		if (write_check(bs, 0) || write_check(bs, last) || refusals(cap, bs))
			return 1;
	}
	s5_puts("SUCCESS\n");
	return 0;
}
