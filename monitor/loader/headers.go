package loader

import (
	"encoding/binary"
	"fmt"

	"github.com/tendervm/tender/hypercall"
	"github.com/tendervm/tender/monitor/internal/elf"
	"github.com/tendervm/tender/monitor/vcpu"
)

// CheckHeader validates the ELF header at the start of a file of size bytes,
// of which head holds at least the header, before the rest is read: a file
// that is too large or no guest executable is refused without reading it.
func CheckHeader(head []byte, size uint64) error {
	if size > MaxFileSize {
		return invalid("file is %d bytes, over the %d MiB limit", size, MaxFileSize>>20)
	}
	_, err := parseHeader(head, size)
	return err
}

// parseHeader validates the ELF header at the start of file, a file of size
// bytes, including that the program header table lies inside the file.
func parseHeader(file []byte, size uint64) (*elf.Header64, error) {
	if len(file) < ehdrSize {
		return nil, invalid("file is %d bytes, shorter than the %d-byte ELF header", len(file), ehdrSize)
	}
	var h elf.Header64
	copy(h.Ident[:], file[:elf.EI_NIDENT])
	le := binary.LittleEndian
	h.Type = le.Uint16(file[16:])
	h.Machine = le.Uint16(file[18:])
	h.Version = le.Uint32(file[20:])
	h.Entry = le.Uint64(file[24:])
	h.Phoff = le.Uint64(file[32:])
	h.Shoff = le.Uint64(file[40:])
	h.Flags = le.Uint32(file[48:])
	h.Ehsize = le.Uint16(file[52:])
	h.Phentsize = le.Uint16(file[54:])
	h.Phnum = le.Uint16(file[56:])
	h.Shentsize = le.Uint16(file[58:])
	h.Shnum = le.Uint16(file[60:])
	h.Shstrndx = le.Uint16(file[62:])

	id := &h.Ident
	if string(id[:4]) != elf.ELFMAG {
		return nil, invalid("bad magic %q: not an ELF file", id[:4])
	}
	if c := elf.Class(id[elf.EI_CLASS]); c != elf.ELFCLASS64 {
		return nil, invalid("class %v: only 64-bit (ELFCLASS64) executables are supported", c)
	}
	if d := elf.Data(id[elf.EI_DATA]); d != elf.ELFDATA2LSB {
		return nil, invalid("data encoding %v: only little-endian (ELFDATA2LSB) executables are supported", d)
	}
	if v := id[elf.EI_VERSION]; v != byte(elf.EV_CURRENT) {
		return nil, invalid("identification version %d, want %d", v, elf.EV_CURRENT)
	}
	if o := elf.OSABI(id[elf.EI_OSABI]); o != elf.ELFOSABI_NONE && o != elf.ELFOSABI_LINUX {
		return nil, invalid("OS ABI %v: only System V (0) and GNU/Linux (3) are supported", o)
	}
	if v := h.Version; v != uint32(elf.EV_CURRENT) {
		return nil, invalid("ELF version %d, want %d", v, elf.EV_CURRENT)
	}
	switch t := elf.Type(h.Type); t {
	case elf.ET_EXEC:
	case elf.ET_DYN:
		return nil, invalid("position-independent executable or shared object (ET_DYN): link the guest with -no-pie (-static)")
	default:
		return nil, invalid("file type %v: only executables (ET_EXEC) are supported", t)
	}
	if m := elf.Machine(h.Machine); m != elf.EM_X86_64 {
		return nil, invalid("machine %v: only x86-64 (EM_X86_64) is supported", m)
	}
	if h.Ehsize != ehdrSize {
		return nil, invalid("ELF header size %d, want %d", h.Ehsize, ehdrSize)
	}
	if h.Phentsize != phdrSize {
		return nil, invalid("program header size %d, want %d", h.Phentsize, phdrSize)
	}
	switch n := h.Phnum; {
	case n == 0:
		return nil, invalid("no program headers")
	case n == pnXNum:
		return nil, invalid("extended program header count (PN_XNUM) is not supported")
	case n > MaxProgHeaders:
		return nil, invalid("%d program headers, at most %d are supported", n, MaxProgHeaders)
	}
	tableSize := uint64(h.Phnum) * phdrSize // at most 64*56: no overflow
	if end, ok := add(h.Phoff, tableSize); !ok || end > size {
		return nil, invalid("program header table [%#x, +%#x) is outside the %#x-byte file", h.Phoff, tableSize, size)
	}
	return &h, nil
}

// decodeProg decodes the program header at the start of b, which holds at
// least phdrSize bytes.
func decodeProg(b []byte) elf.Prog64 {
	le := binary.LittleEndian
	return elf.Prog64{
		Type:   le.Uint32(b[0:]),
		Flags:  le.Uint32(b[4:]),
		Off:    le.Uint64(b[8:]),
		Vaddr:  le.Uint64(b[16:]),
		Paddr:  le.Uint64(b[24:]),
		Filesz: le.Uint64(b[32:]),
		Memsz:  le.Uint64(b[40:]),
		Align:  le.Uint64(b[48:]),
	}
}

// checkLoad validates PT_LOAD program header i on its own; how it relates to
// the other segments is checked by Parse.
func checkLoad(file []byte, i int, ph *elf.Prog64, memSize uint64) (loadSeg, error) {
	flags := elf.ProgFlag(ph.Flags)
	rng := fmt.Sprintf("[%#x, +%#x)", ph.Vaddr, ph.Memsz)
	if ph.Memsz == 0 {
		return loadSeg{}, invalid("segment %d at %#x is empty (p_memsz 0)", i, ph.Vaddr)
	}
	if ph.Filesz > ph.Memsz {
		return loadSeg{}, invalid("segment %d %s has p_filesz %#x larger than p_memsz %#x", i, rng, ph.Filesz, ph.Memsz)
	}
	data, err := fileRange(file, i, ph.Off, ph.Filesz)
	if err != nil {
		return loadSeg{}, err
	}
	if ph.Paddr != ph.Vaddr {
		return loadSeg{}, invalid("segment %d has p_paddr %#x different from p_vaddr %#x: guest memory is identity-mapped", i, ph.Paddr, ph.Vaddr)
	}
	if a := ph.Align; a > 1 && a&(a-1) != 0 {
		return loadSeg{}, invalid("segment %d has alignment %#x, which is not a power of two", i, a)
	}
	// The ELF rule (p_vaddr ≡ p_offset mod p_align) only matters to loaders
	// that map the file; we copy, but a mismatch still means a broken link.
	if ph.Align >= pageSize && ph.Vaddr%pageSize != ph.Off%pageSize {
		return loadSeg{}, invalid("segment %d has p_vaddr %#x and p_offset %#x not congruent modulo the page size %#x", i, ph.Vaddr, ph.Off, pageSize)
	}
	if ph.Vaddr < hypercall.ImageBase {
		return loadSeg{}, invalid("segment %d %s starts below the image base %#x: link the guest at %#x or above", i, rng, hypercall.ImageBase, hypercall.ImageBase)
	}
	end, ok := add(ph.Vaddr, ph.Memsz)
	if !ok {
		return loadSeg{}, invalid("segment %d %s: address plus size overflows", i, rng)
	}
	if end > memSize {
		return loadSeg{}, invalid("segment %d %s ends at %#x, beyond the %s of guest memory", i, rng, end, sizeString(memSize))
	}
	if flags&^(elf.PF_R|elf.PF_W|elf.PF_X) != 0 {
		return loadSeg{}, invalid("segment %d %s has unknown flag bits %#x", i, rng, uint32(flags&^(elf.PF_R|elf.PF_W|elf.PF_X)))
	}
	if flags&(elf.PF_R|elf.PF_W|elf.PF_X) == 0 {
		return loadSeg{}, invalid("segment %d %s has no permissions (none of PF_R, PF_W, PF_X)", i, rng)
	}
	if flags&elf.PF_W != 0 && flags&elf.PF_X != 0 {
		return loadSeg{}, invalid("segment %d %s is both writable and executable", i, rng)
	}
	perm := vcpu.Read
	if flags&elf.PF_W != 0 {
		perm |= vcpu.Write
	}
	if flags&elf.PF_X != 0 {
		perm |= vcpu.Exec
	}
	return loadSeg{
		Segment: Segment{Addr: ph.Vaddr, MemSize: ph.Memsz, Data: data, Perm: perm},
		index:   i,
	}, nil
}

// checkEntry requires the entry point to lie inside an executable segment.
func checkEntry(entry uint64, loads []loadSeg) error {
	for k := range loads {
		s := &loads[k]
		if entry < s.Addr || entry >= s.End() {
			continue
		}
		if s.Perm&vcpu.Exec == 0 {
			return invalid("entry point %#x is not inside an executable segment: it lies in segment %d [%#x, +%#x), which is %v",
				entry, s.index, s.Addr, s.MemSize, s.Perm)
		}
		return nil
	}
	return invalid("entry point %#x is not inside an executable segment (it is outside every segment)", entry)
}

// fileRange returns file[off:off+size] for program header i, with its capacity
// clipped, or an error if the range is not inside the file. An empty range
// refers to no bytes, so its offset is not checked: linkers give segments
// without file contents (such as .bss) offsets that may lie past the end.
func fileRange(file []byte, i int, off, size uint64) ([]byte, error) {
	if size == 0 {
		return nil, nil
	}
	end, ok := add(off, size)
	if !ok || end > uint64(len(file)) {
		return nil, invalid("segment %d file range [%#x, +%#x) is outside the %#x-byte file", i, off, size, len(file))
	}
	return file[off:end:end], nil
}
