// Package x86 builds the CPU structures a guest runs under: page tables, GDT,
// IDT, TSS with its I/O permission bitmap, exception stubs and a kernel stack.
// They live in guest memory below hypercall.ImageBase, in pages the guest
// cannot reach (supervisor-only or not mapped), so a guest at CPL 3 can neither
// change its own permissions nor the monitor's view of its faults. The one
// exception, for fresh guests only, is the restore page (RestoreAddr), which
// the guest may read and execute but not write.
//
// Exceptions raised at CPL 3 switch to the kernel stack (TSS.RSP0) and enter a
// CPL-0 stub that reports the vector to the monitor with `outb %al, %dx` on
// FaultPort (the #GP stub with `outb %al, $GPPort`: GPReportRIP). The monitor reads the
// exception frame at a fixed address and ends the run; only the #GP stub
// returns to the guest, after the monitor emulated a Solo5 guest's
// privileged instruction.
package x86

import (
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/tendervm/tender/hypercall"
	"github.com/tendervm/tender/monitor/guestmem"
	"github.com/tendervm/tender/monitor/vcpu"
)

// Monitor-private guest-physical layout (all below hypercall.BootInfoAddr or
// between the command line and hypercall.ImageBase).
const (
	GDTAddr       = 0x1000
	IDTAddr       = 0x2000
	TSSAddr       = 0x3000
	StubAddr      = 0x4000
	KStackBottom  = 0x5000
	KStackTop     = 0x8000 // TSS.RSP0
	PML4Addr      = 0x20000
	pdptAddr      = 0x21000
	pdAddr        = 0x22000 // four page directories: 4 GiB
	ptAddr        = 0x26000
	ptEnd         = 0xA0000
	maxPageTables = (ptEnd - ptAddr) / hypercall.PageSize
)

// MemMax is the most guest memory the page tables map: four page
// directories.
const MemMax = 4 << 30

// SyscallSentinel is the address MSR_LSTAR holds: a page below
// hypercall.BootInfoAddr that no mapping ever covers. EFER.SCE is clear, so
// on hardware `syscall` raises #UD; a host that runs it anyway (kvm_pvm
// fetches from LSTAR at CPL 3) ends in an instruction-fetch page fault at
// this address, with RCX holding the address after the `syscall`, which the
// monitor reports as the system call it was.
const SyscallSentinel = 0xF000

// FaultPort is the port the exception stubs report on. It lies outside the
// guest's I/O permission bitmap, so only CPL-0 code (the stubs) can use it.
// The bitmap opens PIOBase .. PIOBase+Count+2 to the guest.
const FaultPort = hypercall.PIOBase + 0xFF

// GPPort is the port the #GP stub reports on, one an immediate operand can
// name, which the guest's I/O permission bitmap closes too.
const GPPort = 0x7F

// NumVectors is the number of exception vectors with a stub.
const NumVectors = 32

// Segment selectors of the GDT built here.
const (
	KernelCS = 0x08
	KernelDS = 0x10
	UserDS   = 0x18 | 3
	UserCS   = 0x20 | 3
	TSSSel   = 0x28
	// GDTLimit is the GDT's limit: six 8-byte descriptors plus the 16-byte TSS
	// descriptor.
	GDTLimit = 7*8 - 1
	// IDTLimit covers the NumVectors exception gates.
	IDTLimit = NumVectors*16 - 1
)

const (
	tssSize      = 104
	ioBitmapSize = FaultPort/8 + 1 + 1 // every port up to FaultPort, then the 0xFF terminator
	// TSSLimit is the limit of the TSS including its I/O permission bitmap.
	TSSLimit = tssSize + ioBitmapSize - 1
)

// Frame layout. With RSP0 16-byte aligned, an exception from CPL 3 pushes SS,
// RSP, RFLAGS, CS and RIP downwards from KStackTop, then an error code for
// some vectors; the stub then pushes the guest's RAX and RDX, which it is
// about to clobber, so the monitor can still decode a faulting in/out (the
// #GP stub clobbers neither).
const (
	// RIPAddr is where the faulting RIP lies, whatever the vector.
	RIPAddr = KStackTop - 5*8
	// ErrorCodeAddr is where the error code lies, for vectors that have one.
	ErrorCodeAddr = KStackTop - 6*8
)

// SavedRAXAddr and SavedRDXAddr locate the guest RAX and RDX the stub saved
// for vector v, any but #GP (whose stub saves none: see GPReportRIP).
func SavedRAXAddr(v uint8) uint64 {
	if HasErrorCode(v) {
		return KStackTop - 7*8
	}
	return KStackTop - 6*8
}

// SavedRDXAddr locates the guest RDX the stub saved for vector v (see
// SavedRAXAddr).
func SavedRDXAddr(v uint8) uint64 { return SavedRAXAddr(v) - 8 }

// Page-table entry bits.
const (
	ptePresent  = 1 << 0
	pteWrite    = 1 << 1
	pteUser     = 1 << 2
	pteAccessed = 1 << 5
	pteDirty    = 1 << 6
	ptePS       = 1 << 7
	pteNX       = 1 << 63
	addrMask    = 0x000F_FFFF_FFFF_F000
)

const (
	page4K = 0x1000
	page2M = 0x200000
)

// mapping is one page-aligned range with its leaf permissions.
type mapping struct {
	addr, size uint64
	perm       vcpu.Perm
	user       bool
}

// supervisor mappings: reachable only at CPL 0.
func supervisorMappings() []mapping {
	return []mapping{
		{GDTAddr, page4K, vcpu.Read, false},
		{IDTAddr, page4K, vcpu.Read, false},
		{TSSAddr, page4K, vcpu.Read, false},
		{StubAddr, page4K, vcpu.Read | vcpu.Exec, false},
		{KStackBottom, KStackTop - KStackBottom, vcpu.Read | vcpu.Write, false},
	}
}

// Build writes page tables, GDT, IDT, TSS, stubs into mem for a guest whose
// user mappings are regions. Regions must be page-aligned, sorted, disjoint and
// at or above hypercall.BootInfoAddr.
func Build(mem *guestmem.Memory, regions []vcpu.Region) error {
	return buildMaps(mem, regions, nil)
}

// buildMaps is Build with the monitor's extra user mappings.
func buildMaps(mem *guestmem.Memory, regions []vcpu.Region, extra []mapping) error {
	maps := append(supervisorMappings(), extra...)
	for i, r := range regions {
		if r.Addr%page4K != 0 || r.Size%page4K != 0 || r.Size == 0 {
			return fmt.Errorf("x86: region %d [%#x, +%#x) is not page-aligned", i, r.Addr, r.Size)
		}
		if r.Addr < hypercall.BootInfoAddr || r.Addr+r.Size < r.Addr || r.Addr+r.Size > mem.Size() {
			return fmt.Errorf("x86: region %d [%#x, +%#x) outside the guest's part of memory", i, r.Addr, r.Size)
		}
		if i > 0 && regions[i-1].Addr+regions[i-1].Size > r.Addr {
			return fmt.Errorf("x86: region %d overlaps region %d", i, i-1)
		}
		maps = append(maps, mapping{r.Addr, r.Size, r.Perm, true})
	}
	if err := buildPageTables(mem, maps); err != nil {
		return err
	}
	if err := mem.Write(GDTAddr, gdt()); err != nil {
		return err
	}
	if err := mem.Write(IDTAddr, idt()); err != nil {
		return err
	}
	if err := mem.Write(TSSAddr, tss()); err != nil {
		return err
	}
	return mem.Write(StubAddr, stubs())
}

func leafBits(m mapping) uint64 {
	e := uint64(ptePresent | pteAccessed | pteDirty)
	if m.perm&vcpu.Write != 0 {
		e |= pteWrite
	}
	if m.user {
		e |= pteUser
	}
	if m.perm&vcpu.Exec == 0 {
		e |= pteNX
	}
	return e
}

// buildPageTables identity-maps maps. A 2 MiB chunk wholly covered by one
// mapping gets a 2 MiB page; a chunk with several mappings or holes gets a page
// table of 4 KiB pages; an untouched chunk stays not-present.
func buildPageTables(mem *guestmem.Memory, maps []mapping) error {
	slices.SortFunc(maps, func(a, b mapping) int { return cmpU64(a.addr, b.addr) })
	size := mem.Size()
	if size > MemMax {
		return fmt.Errorf("x86: %d bytes of guest memory exceed the 4 GiB the page tables map", size)
	}
	const table = 0x1000
	if err := mem.Zero(PML4Addr, ptEnd-PML4Addr); err != nil {
		return err
	}
	dirBits := uint64(ptePresent | pteWrite | pteUser | pteAccessed)
	if err := mem.PutUint64(PML4Addr, pdptAddr|dirBits); err != nil {
		return err
	}
	for i := uint64(0); i < 4; i++ {
		if err := mem.PutUint64(pdptAddr+8*i, (pdAddr+table*i)|dirBits); err != nil {
			return err
		}
	}
	nextPT := uint64(ptAddr)
	mi := 0
	for chunk := uint64(0); chunk < size; chunk += page2M {
		end := chunk + page2M
		for mi < len(maps) && maps[mi].addr+maps[mi].size <= chunk {
			mi++
		}
		var in []mapping
		for j := mi; j < len(maps) && maps[j].addr < end; j++ {
			in = append(in, maps[j])
		}
		pde := pdAddr + (chunk/page2M)*8
		switch {
		case len(in) == 0:
			continue
		case len(in) == 1 && in[0].addr <= chunk && in[0].addr+in[0].size >= end:
			if err := mem.PutUint64(pde, chunk|leafBits(in[0])|ptePS); err != nil {
				return err
			}
			continue
		}
		if nextPT >= ptEnd {
			return fmt.Errorf("x86: the image needs more than %d page tables (%d MiB in 4 KiB pages)", maxPageTables, maxPageTables*2)
		}
		pt := nextPT
		nextPT += table
		if err := mem.PutUint64(pde, pt|dirBits); err != nil {
			return err
		}
		for _, m := range in {
			lo, hi := max(m.addr, chunk), min(m.addr+m.size, end)
			for a := lo; a < hi; a += page4K {
				if err := mem.PutUint64(pt+((a-chunk)/page4K)*8, a|leafBits(m)); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// segDesc encodes a flat code or data descriptor with the given access byte and
// flags nibble (G, D/B, L).
func segDesc(access, flags uint64) uint64 {
	return 0xFFFF | access<<40 | 0xF<<48 | flags<<52
}

func gdt() []byte {
	b := make([]byte, GDTLimit+1)
	put := func(sel int, v uint64) { binary.LittleEndian.PutUint64(b[sel&^7:], v) }
	put(KernelCS, segDesc(0x9B, 0xA)) // present, DPL 0, code exec/read accessed; G, L
	put(KernelDS, segDesc(0x93, 0xC)) // present, DPL 0, data read/write accessed; G, D
	put(UserDS, segDesc(0xF3, 0xC))   // DPL 3 data
	put(UserCS, segDesc(0xFB, 0xA))   // DPL 3 64-bit code
	// 64-bit TSS descriptor, type 0xB (busy, as KVM loads TR directly).
	base, limit := uint64(TSSAddr), uint64(TSSLimit)
	lo := limit&0xFFFF | (base&0xFFFFFF)<<16 | uint64(0x8B)<<40 | (limit>>16&0xF)<<48 | (base>>24&0xFF)<<56
	put(TSSSel, lo)
	put(TSSSel+8, base>>32)
	return b
}

func idt() []byte {
	b := make([]byte, IDTLimit+1)
	for v := range NumVectors {
		off := uint64(StubAddr + v*stubSize)
		lo := off&0xFFFF | uint64(KernelCS)<<16 | uint64(0x8E)<<40 | (off>>16&0xFFFF)<<48 // present, DPL 0, interrupt gate
		binary.LittleEndian.PutUint64(b[v*16:], lo)
		binary.LittleEndian.PutUint64(b[v*16+8:], off>>32)
	}
	return b
}

func tss() []byte {
	b := make([]byte, TSSLimit+1)
	binary.LittleEndian.PutUint64(b[4:], KStackTop) // RSP0
	binary.LittleEndian.PutUint16(b[102:], tssSize) // I/O map base
	bm := b[tssSize:]
	for i := range bm {
		bm[i] = 0xFF // deny
	}
	// The CPU checks one bit per byte accessed, so a 4-byte out to the last
	// hypercall port also needs the three ports after it open. Those extra
	// ports reach the monitor as bad I/O, never as hypercalls.
	for p := hypercall.PIOBase; p < hypercall.PIOBase+hypercall.Count+3; p++ {
		bm[p/8] &^= 1 << (p % 8)
	}
	return b
}

const stubSize = 16

// GPReportRIP is the RIP of a vCPU stopped in the #GP stub: the stub is
// `outb %al, $GPPort` (an exit to the monitor that only CPL-0 code, i.e. a
// stub, can cause; AL is not looked at), followed by the resume path,
// `add $8, %rsp` (the error code) and iretq. It writes no general register,
// so the monitor reads the guest's registers as they were at the fault, and
// the trap runs three CPL-0 instructions (which kvm_pvm emulates one by one)
// instead of ten. It reports with out, not hlt, because a vCPU with its local
// APIC in the kernel halts there instead of exiting. The monitor re-enters
// the vCPU after a #GP only when it has emulated the instruction (a Solo5
// guest's privileged set-up) and rewritten the frame's RIP and RSP; the
// out then completes and the stub returns. Any other fault ends the run,
// and every other stub ends in hlt after its report.
const GPReportRIP = StubAddr + VecGP*stubSize

// FrameRSPAddr is where the guest's RSP lies in the exception frame.
const FrameRSPAddr = KStackTop - 2*8

// stubs returns one 16-byte stub per vector:
//
//	50           push %rax
//	52           push %rdx
//	b0 VV        mov  $vector, %al
//	66 ba PP PP  mov  $FaultPort, %dx
//	ee           out  %al, %dx
//	f4           hlt
//	cc ...       int3 padding
//
// but for #GP (see GPReportRIP):
//
//	e6 7f        out  %al, $GPPort
//	48 83 c4 08  add $8, %rsp
//	48 cf        iretq
func stubs() []byte {
	b := make([]byte, 0, NumVectors*stubSize)
	for v := range NumVectors {
		s := []byte{0x50, 0x52, 0xB0, byte(v), 0x66, 0xBA, byte(FaultPort & 0xFF), byte(FaultPort >> 8), 0xEE, 0xF4}
		if v == VecGP {
			s = []byte{0xE6, GPPort, 0x48, 0x83, 0xC4, 0x08, 0x48, 0xCF}
		}
		for len(s) < stubSize {
			s = append(s, 0xCC)
		}
		b = append(b, s...)
	}
	return b
}
