package x86

import (
	"encoding/binary"

	"github.com/tendervm/tender/monitor/guestmem"
	"github.com/tendervm/tender/monitor/vcpu"
)

// RestoreAddr is the page a fresh guest's vCPU re-enters through after a
// reset (BuildFresh maps it user read-execute, never writable): a few
// instructions that load the snapshot's x87/SSE/AVX state and jump to the
// snapshot's RIP. Loading that state with an instruction at CPL 3 costs
// nanoseconds, where KVM_SET_FPU or KVM_SET_XSAVE costs an ioctl that
// loads the vCPU (about 5 µs on kvm_pvm). The page holds the snapshot's
// own state, nothing the guest could not read in its registers.
const RestoreAddr = 0x9000

// Offsets in the restore page: the code, then the snapshot's RIP, RAX and
// RDX (xrstor takes its component mask in EDX:EAX), then the register
// image, 64-byte aligned as xrstor needs.
const (
	restoreRIP   = 0x3E0
	restoreRAX   = 0x3E8
	restoreRDX   = 0x3F0
	restoreImage = 0x400
	// RestoreImageMax is the most of an XSAVE image the page holds: the
	// legacy area, the header and AVX (576+256 bytes, the standard
	// format's fixed offsets), the components tender enables.
	RestoreImageMax = 0x400
)

// RestorePage returns the restore page for a snapshot at rip with the
// given RAX and RDX. With rfbm 0, image is an FXSAVE image (512 bytes)
// loaded by fxrstor64; otherwise it is an XSAVE image in the standard
// format, loaded by xrstor64 for the components in rfbm.
func RestorePage(rip, rax, rdx uint64, image []byte, rfbm uint64) []byte {
	p := make([]byte, 0x1000)
	code := p[:0]
	// rel is the displacement of a RIP-relative operand at off from the
	// end of an instruction of n bytes that starts at len(code).
	rel := func(off, n int) []byte {
		return binary.LittleEndian.AppendUint32(nil, uint32(int32(off-(len(code)+n))))
	}
	if rfbm == 0 {
		code = append(code, append([]byte{0x48, 0x0f, 0xae, 0x0d}, rel(restoreImage, 8)...)...) // fxrstor64 image(%rip)
	} else {
		code = append(code, 0xb8) // mov $rfbm, %eax
		code = binary.LittleEndian.AppendUint32(code, uint32(rfbm))
		code = append(code, 0xba) // mov $rfbm>>32, %edx
		code = binary.LittleEndian.AppendUint32(code, uint32(rfbm>>32))
		code = append(code, append([]byte{0x48, 0x0f, 0xae, 0x2d}, rel(restoreImage, 8)...)...) // xrstor64 image(%rip)
		code = append(code, append([]byte{0x48, 0x8b, 0x05}, rel(restoreRAX, 7)...)...)         // mov rax(%rip), %rax
		code = append(code, append([]byte{0x48, 0x8b, 0x15}, rel(restoreRDX, 7)...)...)         // mov rdx(%rip), %rdx
	}
	_ = append(code, append([]byte{0xff, 0x25}, rel(restoreRIP, 6)...)...) // jmp *rip(%rip)
	binary.LittleEndian.PutUint64(p[restoreRIP:], rip)
	binary.LittleEndian.PutUint64(p[restoreRAX:], rax)
	binary.LittleEndian.PutUint64(p[restoreRDX:], rdx)
	img := p[restoreImage : restoreImage+RestoreImageMax]
	copy(img, image)
	if rfbm != 0 {
		// The XSAVE header: xrstor64 faults on a component in XSTATE_BV
		// that XCR0 lacks (KVM's image may name one the vCPU's CPUID
		// has, such as PKRU), and on a compacted or reserved bit.
		const header = 512
		bv := binary.LittleEndian.Uint64(img[header:]) & rfbm
		clear(img[header : header+64])
		binary.LittleEndian.PutUint64(img[header:], bv)
	}
	return p
}

// BuildFresh is Build for a guest that will be snapshot and reset: it also
// maps the restore page (RestoreAddr), which the snapshot writes.
func BuildFresh(mem *guestmem.Memory, regions []vcpu.Region) error {
	return buildMaps(mem, regions, []mapping{{RestoreAddr, page4K, vcpu.Read | vcpu.Exec, true}})
}
