/*
 * note.c: the ELF note that identifies a tender guest.
 *
 * The monitor looks for a note with owner "Tender" and type
 * TENDER_NOTE_TYPE_ABI whose descriptor is a struct tender_abi_note. The
 * linker script places .note.tender in the read-only segment and gives it its
 * own PT_NOTE program header.
 */
#include "tender_abi.h"

struct tender_elf_note {
	uint32_t namesz;
	uint32_t descsz;
	uint32_t type;
	char name[8]; /* "Tender" + NUL, padded to 4 bytes */
	struct tender_abi_note desc;
};

_Static_assert(sizeof(TENDER_NOTE_NAME) == 7, "note name length");
_Static_assert(sizeof(struct tender_elf_note) == 28, "note layout");

__attribute__((section(".note.tender"), aligned(4), used))
static const struct tender_elf_note tender_note = {
	.namesz = sizeof(TENDER_NOTE_NAME),
	.descsz = sizeof(struct tender_abi_note),
	.type = TENDER_NOTE_TYPE_ABI,
	.name = TENDER_NOTE_NAME,
	.desc = {
		.version = TENDER_ABI_VERSION,
		.reserved = 0,
	},
};
