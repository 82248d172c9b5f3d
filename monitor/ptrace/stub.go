package ptrace

import (
	"bytes"
	"encoding/binary"

	"github.com/tendervm/tender/monitor/internal/elf"
)

// The stub is the program the tracee executes. It is never really run: the
// tracer stops it right after execve, borrows its code page to make the
// tracee issue a few system calls, and then replaces its registers with the
// guest's. Everything it needs is in one read-only, executable page far above
// the guest's [0, 4 GiB) range:
//
//	stubBase+stubSyscall   0f 05   syscall   the gadget for injected calls
//	                       cc      int3      stops the tracee after the call
//	stubBase+stubEntry     cc      int3      the ELF entry point (never run)
//	                       0f 0b   ud2
//	stubBase+stubFprog     struct sock_fprog {len = 1, filter = stubBase+stubFilter}
//	stubBase+stubFilter    struct sock_filter {BPF_RET|BPF_K, 0, 0, SECCOMP_RET_TRAP}
//
// The seccomp program is part of the image, so it needs no writable page and
// no PTRACE_POKEDATA.
const (
	stubBase    = 0x7e0000000000
	stubSyscall = 0xc0 // offset of the syscall gadget
	stubEntry   = 0xc8 // offset of the entry point
	stubFprog   = 0xd0 // offset of the struct sock_fprog
	stubFilter  = 0xe0 // offset of the single struct sock_filter
	stubEnd     = 0xe8 // size of the file

	// stubTrapRIP is where the tracee stops after an injected system call:
	// just past the int3 that follows the gadget.
	stubTrapRIP = stubBase + stubSyscall + 3
)

// BPF and seccomp constants for the filter; x/sys/unix lacks some of them.
const (
	bpfRet         = 0x06       // BPF_RET class
	bpfK           = 0x00       // BPF_K source
	seccompRetTrap = 0x00030000 // SECCOMP_RET_TRAP: send SIGSYS, skip the call
)

// stubELF returns the stub executable: a static, non-PIE ELF64 with one
// PT_LOAD segment (R+X, one page at stubBase) and a PT_GNU_STACK header that
// keeps the stack non-executable and stops older kernels from applying
// READ_IMPLIES_EXEC, which would make every readable guest page executable.
func stubELF() []byte {
	const (
		ehSize = 64
		phSize = 56
		phNum  = 2
	)
	var b bytes.Buffer
	le := binary.LittleEndian
	hdr := elf.Header64{
		Type:      uint16(elf.ET_EXEC),
		Machine:   uint16(elf.EM_X86_64),
		Version:   uint32(elf.EV_CURRENT),
		Entry:     stubBase + stubEntry,
		Phoff:     ehSize,
		Ehsize:    ehSize,
		Phentsize: phSize,
		Phnum:     phNum,
	}
	copy(hdr.Ident[:], elf.ELFMAG)
	hdr.Ident[elf.EI_CLASS] = byte(elf.ELFCLASS64)
	hdr.Ident[elf.EI_DATA] = byte(elf.ELFDATA2LSB)
	hdr.Ident[elf.EI_VERSION] = byte(elf.EV_CURRENT)
	hdr.Ident[elf.EI_OSABI] = byte(elf.ELFOSABI_NONE)
	progs := [phNum]elf.Prog64{{
		Type:   uint32(elf.PT_LOAD),
		Flags:  uint32(elf.PF_R | elf.PF_X),
		Vaddr:  stubBase,
		Paddr:  stubBase,
		Filesz: stubEnd,
		Memsz:  pageSize,
		Align:  pageSize,
	}, {
		Type:  uint32(elf.PT_GNU_STACK),
		Flags: uint32(elf.PF_R | elf.PF_W),
		Align: 16,
	}}
	// Writes to a bytes.Buffer cannot fail.
	_ = binary.Write(&b, le, &hdr)
	_ = binary.Write(&b, le, &progs)

	img := make([]byte, stubEnd)
	copy(img, b.Bytes())
	copy(img[stubSyscall:], []byte{0x0f, 0x05, 0xcc}) // syscall; int3
	copy(img[stubEntry:], []byte{0xcc, 0x0f, 0x0b})   // int3; ud2
	le.PutUint16(img[stubFprog:], 1)                  // sock_fprog.len
	le.PutUint64(img[stubFprog+8:], stubBase+stubFilter)
	le.PutUint16(img[stubFilter:], bpfRet|bpfK) // sock_filter.code
	le.PutUint32(img[stubFilter+4:], seccompRetTrap)
	return img
}
