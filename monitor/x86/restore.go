package x86

import (
	"encoding/binary"

	"github.com/tendervm/tender/monitor/guestmem"
	"github.com/tendervm/tender/monitor/vcpu"
)

// RestoreAddr is the page a fresh guest's vCPU re-enters through after a
// reset (BuildFresh maps it user read-execute, never writable): a few
// instructions that load the snapshot's x87/SSE/AVX state from
// RestoreDataAddr and jump to the snapshot's RIP. Loading that state with an
// instruction at CPL 3 costs nanoseconds, where KVM_SET_FPU or KVM_SET_XSAVE
// costs an ioctl that loads the vCPU (about 5 µs on kvm_pvm). The code page
// holds only the monitor's instructions: the snapshot's register values,
// which the guest chose, lie in the data page, which is never executable.
const RestoreAddr = 0x9000

// RestoreDataAddr is the restore page's data (user read-only, no execute):
// the snapshot's RIP, RAX and RDX (xrstor takes its component mask in
// EDX:EAX), then the register image, 64-byte aligned as xrstor needs.
const RestoreDataAddr = 0xA000

const (
	restoreRIP   = 0x00
	restoreRAX   = 0x08
	restoreRDX   = 0x10
	restoreImage = 0x40
	// RestoreImageMax is the most of an XSAVE image the page holds: the
	// legacy area, the header and AVX (576+256 bytes, the standard
	// format's fixed offsets), the components tender enables and records.
	RestoreImageMax = 0x400
	// restoreMask is the least xrstor64 mask: x87, SSE and AVX, which the
	// image holds, and the user components a host may enable beyond XCR0
	// as tender set it (kvm_pvm runs a guest under the host's XCR0): MPX,
	// AVX-512 (opmask, ZMM_Hi256, Hi16_ZMM) and PKRU (RestoreMask).
	restoreMask = 0x2FF
	// xfdComponents are AMX's tile configuration and data, which the host
	// kernel keeps disarmed (XFD) for a process that did not ask for them,
	// tender's: the guest cannot use them, and xrstor64 of a disarmed
	// component raises #NM.
	xfdComponents = 1<<17 | 1<<18
)

// RestoreMask is the xrstor64 mask of the restore page of a guest whose
// XCR0 is xcr0 (0 where unknown): restoreMask and every other component
// xcr0 enables, but AMX's. The image's XSTATE_BV names only x87, SSE and
// AVX, so xrstor64 puts every other component of the mask back into its
// initial state: nothing a request leaves in them reaches the next.
func RestoreMask(xcr0 uint64) uint64 { return restoreMask | xcr0&^xfdComponents }

// RestorePage returns the restore page's code (for RestoreAddr) and data
// (for RestoreDataAddr) for a snapshot at rip with the given RAX and RDX.
// With mask 0, image is an FXSAVE image (512 bytes) loaded by fxrstor64;
// otherwise it is an XSAVE image in the standard format, of which xrstor64
// loads x87, SSE and AVX, and initialises the other components of mask
// (RestoreMask). None of its instructions changes RFLAGS.
func RestorePage(rip, rax, rdx uint64, image []byte, mask uint64) (code, data []byte) {
	c := make([]byte, 0x1000)
	d := make([]byte, 0x1000)
	code = c[:0]
	// rel is the displacement of a RIP-relative operand at data offset
	// off from the end of an instruction of n bytes that starts at
	// len(code) in the code page.
	rel := func(off, n int) []byte {
		return binary.LittleEndian.AppendUint32(nil, uint32(int32(RestoreDataAddr+off-(RestoreAddr+len(code)+n))))
	}
	if mask == 0 {
		code = append(code, append([]byte{0x48, 0x0f, 0xae, 0x0d}, rel(restoreImage, 8)...)...) // fxrstor64 image(%rip)
	} else {
		code = append(code, 0xb8) // mov $mask, %eax
		code = binary.LittleEndian.AppendUint32(code, uint32(mask))
		code = append(code, 0xba) // mov $mask>>32, %edx (xor would change RFLAGS)
		code = binary.LittleEndian.AppendUint32(code, uint32(mask>>32))
		code = append(code, append([]byte{0x48, 0x0f, 0xae, 0x2d}, rel(restoreImage, 8)...)...) // xrstor64 image(%rip)
		code = append(code, append([]byte{0x48, 0x8b, 0x05}, rel(restoreRAX, 7)...)...)         // mov rax(%rip), %rax
		code = append(code, append([]byte{0x48, 0x8b, 0x15}, rel(restoreRDX, 7)...)...)         // mov rdx(%rip), %rdx
	}
	_ = append(code, append([]byte{0xff, 0x25}, rel(restoreRIP, 6)...)...) // jmp *rip(%rip)
	binary.LittleEndian.PutUint64(d[restoreRIP:], rip)
	binary.LittleEndian.PutUint64(d[restoreRAX:], rax)
	binary.LittleEndian.PutUint64(d[restoreRDX:], rdx)
	img := d[restoreImage : restoreImage+RestoreImageMax]
	copy(img, image)
	if mask != 0 {
		// The XSAVE header: only what the image holds is loaded (the
		// rest of the mask is initialised), and no compacted format or
		// reserved bit, on which xrstor64 faults.
		const header = 512
		bv := binary.LittleEndian.Uint64(img[header:]) & 0x7
		clear(img[header : header+64])
		binary.LittleEndian.PutUint64(img[header:], bv)
	}
	return c, d
}

// BuildFresh is Build for a guest that will be snapshot and reset: it also
// maps the restore page's code (RestoreAddr, read-execute) and data
// (RestoreDataAddr, read-only), which the snapshot writes.
func BuildFresh(mem *guestmem.Memory, regions []vcpu.Region) error {
	return buildMaps(mem, regions, []mapping{
		{RestoreAddr, page4K, vcpu.Read | vcpu.Exec, true},
		{RestoreDataAddr, page4K, vcpu.Read, true},
	})
}
