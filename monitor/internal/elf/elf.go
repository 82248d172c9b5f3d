// Package elf holds the few ELF64 definitions the loader and the process backend need. The standard
// library's debug/elf has them too, but importing it links in and initialises
// DWARF and decompression code that a monitor starting in about a millisecond
// cannot afford.
package elf

import "fmt"

// Identification indexes and values.
const (
	EI_CLASS   = 4
	EI_DATA    = 5
	EI_VERSION = 6
	EI_OSABI   = 7
	EI_NIDENT  = 16
	ELFMAG     = "\x7fELF"
	EV_CURRENT = 1
)

// Class is EI_CLASS.
type Class byte

// ELFCLASS64 is the 64-bit class.
const ELFCLASS64 Class = 2

// String implements fmt.Stringer.
func (c Class) String() string {
	switch c {
	case 1:
		return "ELFCLASS32"
	case 2:
		return "ELFCLASS64"
	}
	return fmt.Sprintf("ELFCLASS(%d)", byte(c))
}

// Data is EI_DATA.
type Data byte

// ELFDATA2LSB is little-endian.
const ELFDATA2LSB Data = 1

// OSABI is EI_OSABI.
type OSABI byte

// OS ABIs the loader accepts.
const (
	ELFOSABI_NONE  OSABI = 0
	ELFOSABI_LINUX OSABI = 3
)

// Type is e_type.
type Type uint16

// File types.
const (
	ET_EXEC Type = 2
	ET_DYN  Type = 3
)

// String implements fmt.Stringer.
func (t Type) String() string {
	switch t {
	case 0:
		return "ET_NONE"
	case 1:
		return "ET_REL"
	case ET_EXEC:
		return "ET_EXEC"
	case ET_DYN:
		return "ET_DYN"
	case 4:
		return "ET_CORE"
	}
	return fmt.Sprintf("ET(%d)", uint16(t))
}

// Machine is e_machine.
type Machine uint16

// EM_X86_64 is x86-64.
const EM_X86_64 Machine = 62

// String implements fmt.Stringer.
func (m Machine) String() string {
	switch m {
	case 3:
		return "EM_386"
	case 40:
		return "EM_ARM"
	case EM_X86_64:
		return "EM_X86_64"
	case 183:
		return "EM_AARCH64"
	case 243:
		return "EM_RISCV"
	}
	return fmt.Sprintf("EM(%d)", uint16(m))
}

// ProgType is p_type.
type ProgType uint32

// Program header types.
const (
	PT_LOAD      ProgType = 1
	PT_DYNAMIC   ProgType = 2
	PT_INTERP    ProgType = 3
	PT_NOTE      ProgType = 4
	PT_SHLIB     ProgType = 5
	PT_TLS       ProgType = 7
	PT_GNU_STACK ProgType = 0x6474e551
)

// ProgFlag is p_flags.
type ProgFlag uint32

// Segment permission flags.
const (
	PF_X ProgFlag = 1
	PF_W ProgFlag = 2
	PF_R ProgFlag = 4
)

// Header64 is the ELF64 file header.
type Header64 struct {
	Ident     [EI_NIDENT]byte
	Type      uint16
	Machine   uint16
	Version   uint32
	Entry     uint64
	Phoff     uint64
	Shoff     uint64
	Flags     uint32
	Ehsize    uint16
	Phentsize uint16
	Phnum     uint16
	Shentsize uint16
	Shnum     uint16
	Shstrndx  uint16
}

// Prog64 is an ELF64 program header.
type Prog64 struct {
	Type   uint32
	Flags  uint32
	Off    uint64
	Vaddr  uint64
	Paddr  uint64
	Filesz uint64
	Memsz  uint64
	Align  uint64
}
