package x86

// MaxInsnLen is the longest x86 instruction.
const MaxInsnLen = 15

// opcode skips the legacy and REX prefixes of the instruction at the start of
// code and returns the first opcode byte, its offset, and whether an
// operand-size prefix (0x66) was present. ok is false when code holds no
// opcode within MaxInsnLen bytes.
func opcode(code []byte) (op byte, at int, opsize16 bool, ok bool) {
	for i := 0; i < len(code) && i < MaxInsnLen; i++ {
		switch b := code[i]; {
		case b == 0x66:
			opsize16 = true
		case b == 0x67, b == 0xf0, b == 0xf2, b == 0xf3, // address size, lock, rep
			b == 0x26, b == 0x2e, b == 0x36, b == 0x3e, b == 0x64, b == 0x65: // segments
		case b&0xf0 == 0x40:
			// REX: in effect only immediately before the opcode (callers
			// read code[at-1]); one followed by another prefix is
			// ignored, as the CPU does.
		default:
			return b, i, opsize16, true
		}
	}
	return 0, 0, false, false
}

// PortIO is a decoded port I/O instruction.
type PortIO struct {
	Port uint16
	Size uint8 // operand size in bytes: 1, 2 or 4
	Out  bool
	Str  bool // ins or outs
	Len  int  // instruction length in bytes
}

// Hypercall reports whether the instruction is `outl %eax, %dx` (opcode EF
// with a 32-bit operand) to a port in [base, base+count).
func (io PortIO) Hypercall(base, count uint16) bool {
	return io.Out && !io.Str && io.Size == 4 && io.Port >= base && io.Port-base < count
}

// DecodePortIO decodes code as a port I/O instruction (in, out, ins, outs),
// whose port is dx unless the instruction has an immediate port. ok is false
// for any other instruction. Both backends use it: KVM for a #GP on a port
// the I/O bitmap closes, the process backend for every SIGSEGV.
func DecodePortIO(code []byte, dx uint16) (io PortIO, ok bool) {
	op, at, opsize16, ok := opcode(code)
	if !ok {
		return PortIO{}, false
	}
	io.Size = 4
	if opsize16 {
		io.Size = 2
	}
	if op&1 == 0 {
		io.Size = 1 // the even opcodes are the byte forms
	}
	switch op {
	case 0xe4, 0xe5, 0xe6, 0xe7: // in al/eax, imm8; out imm8, al/eax
		if at+1 >= len(code) || at+2 > MaxInsnLen {
			return PortIO{}, false
		}
		io.Port = uint16(code[at+1])
		io.Out = op >= 0xe6
		io.Len = at + 2
	case 0xec, 0xed, 0xee, 0xef: // in al/eax, dx; out dx, al/eax
		io.Port = dx
		io.Out = op >= 0xee
		io.Len = at + 1
	case 0x6c, 0x6d, 0x6e, 0x6f: // ins; outs
		io.Port = dx
		io.Out = op >= 0x6e
		io.Str = true
		io.Len = at + 1
	default:
		return PortIO{}, false
	}
	return io, true
}

// IsX87 reports whether code starts with an x87 floating-point instruction
// (escape opcodes D8-DF) or fwait (9B), the instructions on which a pending
// x87 exception (#MF) is raised.
func IsX87(code []byte) bool {
	op, _, _, ok := opcode(code)
	return ok && (op >= 0xd8 && op <= 0xdf || op == 0x9b)
}

// IsSyscall reports whether code starts with an instruction that asks a host
// kernel for a system call: syscall (0F 05), sysenter (0F 34) or int $0x80
// (CD 80). A guest has no kernel to call; the monitor reports the attempt as
// one, whatever exception the host raised for it.
func IsSyscall(code []byte) bool {
	op, at, _, ok := opcode(code)
	if !ok || at+1 >= len(code) || at+2 > MaxInsnLen {
		return false
	}
	next := code[at+1]
	return op == 0x0f && (next == 0x05 || next == 0x34) || op == 0xcd && next == 0x80
}

// SyscallLen is the length of the syscall instruction without prefixes, by
// which the address after it (RCX, as the CPU saves it) exceeds its own.
const SyscallLen = 2

// OutExit is what a hypervisor reports for a 4-byte, single-element port
// output that reached it (the port is open in the I/O bitmap), with the
// registers and guest memory around it.
type OutExit struct {
	Port uint16
	Data uint32 // the value output
	// Code is the guest memory at RIP (up to MaxInsnLen bytes, fewer at the
	// end of memory); Prev is the byte before RIP and HasPrev whether it
	// exists.
	Code    []byte
	Prev    byte
	HasPrev bool
	RAX     uint64
	RDX     uint64
	// Beside is the 32-bit word next to RSI that a string output ending at
	// RIP has read: at RSI-4 with RFLAGS.DF clear, RSI+4 with it set.
	// HasBeside is false when that lies outside guest memory.
	Beside    uint32
	HasBeside bool
}

// Outl reports whether e came from `outl %eax, %dx`, the only hypercall
// instruction, and str whether it may have come from a string output (ins
// or outs, with or without rep), which is never a hypercall.
//
// The exit does not say which instruction caused it, and hosts leave RIP in
// different places: on the instruction (bare-metal `out`; `rep outs` with
// elements left on kvm_pvm) or after it (kvm_pvm's `out` and `outs`; KVM's
// instruction emulator, which runs `outs` on bare metal, once it is done).
// Each instruction is therefore looked for at both places: an `outl` at RIP
// (opcode EF) or ending at RIP (EF before it), with the data equal to EAX
// and the port to DX; a string instruction at RIP (opcodes 6C-6F), or an
// `outsl` ending at RIP (6F before it) whose data is the word beside RSI. A
// legitimate `outl` is never taken for a string output on a kvm_pvm host,
// and on others only if the byte before it is 6F and the word beside RSI
// equals its argument; an `outsl` followed by an `outl` that outputs the
// same value may be taken for that `outl`, which does the same call.
func (e OutExit) Outl() (hypercall, str bool) {
	at, atOK := DecodePortIO(e.Code, uint16(e.RDX))
	str = atOK && at.Str ||
		e.HasPrev && e.Prev == 0x6f && e.HasBeside && e.Beside == e.Data
	if str {
		return false, true
	}
	if e.Data != uint32(e.RAX) || uint16(e.RDX) != e.Port {
		return false, false
	}
	onRIP := atOK && at.Out && at.Size == 4 && at.Port == e.Port // EF: outl %eax,%dx
	afterRIP := e.HasPrev && e.Prev == 0xef
	return onRIP || afterRIP, false
}
