package x86

import "encoding/binary"

// BootMove is one of the ordinary instructions a Solo5 guest's boot runs
// between two privileged ones (its start code: lgdt, then this far jump to
// reload CS, then the data selector into RAX and the segment loads). Run
// for the guest after an emulated instruction, as the CPU would, they let
// the whole sequence cost one trap instead of three (the KVM backend's
// passBoot).
type BootMove struct {
	Len int // bytes
	// FarJump: push Sel; push Target; lretq. The CPU writes Sel and then
	// Target below RSP and pops both again: RIP = Target, CS = Sel, RSP as
	// it was.
	FarJump     bool
	Sel, Target uint64
	// Otherwise a mov of an immediate into RAX: RAX is its value.
	RAX uint64
}

// DecodeBootMove decodes code as a BootMove, in these encodings only, with
// no other prefix: push imm8 (6A ib) or push imm32 (68 id) of the
// selector, push imm32 of the target (both sign-extended, as the CPU
// pushes them), lretq (48 CB); mov $imm32 to RAX (48 C7 C0 id,
// sign-extended) or to EAX (B8 id, zero-extended).
func DecodeBootMove(code []byte) (BootMove, bool) {
	imm32 := func(at int) (uint64, bool) {
		if at+4 > len(code) {
			return 0, false
		}
		return uint64(int64(int32(binary.LittleEndian.Uint32(code[at:])))), true
	}
	if len(code) >= 2 && (code[0] == 0x6a || code[0] == 0x68) {
		var sel uint64
		at := 2
		if code[0] == 0x6a {
			sel = uint64(int64(int8(code[1])))
		} else {
			v, ok := imm32(1)
			if !ok {
				return BootMove{}, false
			}
			sel, at = v, 5
		}
		if at >= len(code) || code[at] != 0x68 {
			return BootMove{}, false
		}
		target, ok := imm32(at + 1)
		if !ok || at+7 > len(code) || code[at+5] != 0x48 || code[at+6] != 0xcb {
			return BootMove{}, false
		}
		return BootMove{Len: at + 7, FarJump: true, Sel: sel, Target: target}, true
	}
	if len(code) >= 3 && code[0] == 0x48 && code[1] == 0xc7 && code[2] == 0xc0 {
		if v, ok := imm32(3); ok {
			return BootMove{Len: 7, RAX: v}, true
		}
	}
	if len(code) >= 1 && code[0] == 0xb8 {
		if v, ok := imm32(1); ok {
			return BootMove{Len: 5, RAX: uint64(uint32(v))}, true
		}
	}
	return BootMove{}, false
}
