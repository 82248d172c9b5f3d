/*
 * s5_manifest.h: S5_MANIFEST(n, entries...) declares a guest's MFT1
 * manifest note with n entries after the reserved one, each
 * S5_NET("name") or S5_BLOCK("name"). Every guest declares one,
 * S5_MANIFEST(0) for no devices: a Solo5 executable without a manifest
 * note is refused, as by solo5-hvt.
 */
#ifndef S5_MANIFEST_H
#define S5_MANIFEST_H

#include <stdint.h>

struct s5_mft_file_entry {
	char name[68];
	uint32_t type;
	uint8_t rest[32];
};

#define S5_NET(n)   { .name = n, .type = 2 }
#define S5_BLOCK(n) { .name = n, .type = 1 }

#define S5_MANIFEST(n, ...) \
	const struct { \
		uint32_t namesz, descsz, type; \
		char name[8]; \
		uint32_t pad; \
		uint32_t version, entries; \
		struct s5_mft_file_entry e[(n) + 1]; \
	} __attribute__((aligned(8))) s5_manifest_note \
	__attribute__((section(".note.solo5.manifest"), used)) = { \
		6, 4 + 8 + ((n) + 1) * 104, 0x3154464d, "Solo5", 0, 1, (n) + 1, \
		{ { .type = 1u << 30 }, __VA_ARGS__ } }

#endif
