/*
 * notes.S: the notes that make this a Solo5 hvt executable: ABI1 (target
 * hvt, version 2) and an OpenBSD ident note. The manifest note is the
 * guest's own (S5_MANIFEST, s5_manifest.h).
 */
	.section .note.solo5.abi, "a", @note
	.balign	4
	.long	6, 16, 0x31494241	/* namesz, descsz, "ABI1" */
	.asciz	"Solo5"
	.balign	4
	.long	1, 2, 0, 0		/* target hvt, version 2 */

	.section .note.openbsd.ident, "a", @note
	.balign	4
	.long	8, 4, 1
	.asciz	"OpenBSD"
	.balign	4
	.long	0

	.section .interp, "a", @progbits
	.asciz	"/nonexistent/solo5/"

	.section .note.GNU-stack, "", @progbits
