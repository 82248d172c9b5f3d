package x86

// Priv is a privileged instruction a Solo5 guest's runtime executes, which
// the monitor emulates when it traps at CPL 3 (see DecodePriv).
type Priv uint8

// The privileged instructions DecodePriv recognises.
const (
	PrivNone  Priv = iota
	PrivLGDT       // lgdt m: accepted without effect
	PrivLIDT       // lidt m: accepted without effect
	PrivLTR        // ltr r/m16: accepted without effect
	PrivMovSS      // mov r/m16 to SS, DS or ES: accepted without effect
	PrivLRET       // lretq: a far return, to selector 0x8 only
	PrivWRMSR      // wrmsr: of FS_BASE only
	PrivCLI        // cli: ignored
	PrivSTI        // sti: ignored
	PrivHLT        // hlt: ends the run
)

var privNames = [...]string{"none", "lgdt", "lidt", "ltr", "mov to segment register", "lretq", "wrmsr", "cli", "sti", "hlt"}

// String returns the instruction's mnemonic.
func (p Priv) String() string {
	if int(p) < len(privNames) {
		return privNames[p]
	}
	return "unknown"
}

// MSRFSBase is the MSR that holds the FS segment base.
const MSRFSBase = 0xC0000100

// DecodePriv decodes code as one of the privileged instructions a Solo5
// guest executes at boot, returning which and its length. ok is false for
// anything else, including a form whose encoding runs past code or past
// MaxInsnLen, and a prefix that would change its meaning (a lock prefix,
// an operand-size prefix on lretq).
func DecodePriv(code []byte) (p Priv, n int, ok bool) {
	// One check of the final length for every form: opcode and modrm bound
	// what they read, but not the opcode bytes after the prefixes (wrmsr's
	// 0f 30 behind 14 prefixes is 16 bytes, which the CPU refuses with #GP).
	p, n, ok = decodePriv(code)
	if !ok || n > MaxInsnLen {
		return PrivNone, 0, false
	}
	return p, n, true
}

// decodePriv is DecodePriv without the bound on the length.
func decodePriv(code []byte) (p Priv, n int, ok bool) {
	op, at, opsize16, ok := opcode(code)
	if !ok {
		return PrivNone, 0, false
	}
	for _, b := range code[:at] {
		if b == 0xf0 { // lock: #UD on every one of these
			return PrivNone, 0, false
		}
	}
	rex := byte(0)
	if at > 0 && code[at-1]&0xf0 == 0x40 {
		rex = code[at-1]
	}
	switch op {
	case 0xfa:
		return PrivCLI, at + 1, true
	case 0xfb:
		return PrivSTI, at + 1, true
	case 0xf4:
		return PrivHLT, at + 1, true
	case 0xcb:
		// Only the 64-bit form (REX.W): the guest pops 8-byte RIP and CS.
		if rex&0x08 == 0 || opsize16 {
			return PrivNone, 0, false
		}
		return PrivLRET, at + 1, true
	case 0x8e: // mov Sreg, r/m16
		reg, l, ok := modrm(code, at+1)
		if !ok {
			return PrivNone, 0, false
		}
		switch reg {
		case 0, 2, 3: // ES, SS, DS
			return PrivMovSS, l, true
		}
		return PrivNone, 0, false
	case 0x0f:
		if at+1 >= len(code) {
			return PrivNone, 0, false
		}
		switch code[at+1] {
		case 0x30:
			return PrivWRMSR, at + 2, true
		case 0x00: // group 6: /3 is ltr
			reg, l, ok := modrm(code, at+2)
			if ok && reg == 3 {
				return PrivLTR, l, true
			}
		case 0x01: // group 7: /2 lgdt, /3 lidt, memory operands only
			if at+2 >= len(code) || code[at+2]>>6 == 3 {
				return PrivNone, 0, false
			}
			reg, l, ok := modrm(code, at+2)
			switch {
			case ok && reg == 2:
				return PrivLGDT, l, true
			case ok && reg == 3:
				return PrivLIDT, l, true
			}
		}
	}
	return PrivNone, 0, false
}

// modrm decodes the ModRM byte at code[i] with its SIB and displacement and
// returns its reg field and the offset just past the operand (the
// instruction's length, as none of these has an immediate).
func modrm(code []byte, i int) (reg byte, end int, ok bool) {
	if i >= len(code) {
		return 0, 0, false
	}
	m := code[i]
	mod, rm := m>>6, m&7
	reg = m >> 3 & 7
	end = i + 1
	if mod != 3 {
		if rm == 4 { // SIB
			if end >= len(code) {
				return 0, 0, false
			}
			sib := code[end]
			end++
			if mod == 0 && sib&7 == 5 {
				end += 4
			}
		}
		switch {
		case mod == 0 && rm == 5: // RIP-relative
			end += 4
		case mod == 1:
			end++
		case mod == 2:
			end += 4
		}
	}
	if end > len(code) || end > MaxInsnLen {
		return 0, 0, false
	}
	return reg, end, true
}

// MaxMerged bounds how many further privileged instructions SkipNoEffect
// passes over in one call, and how many BootMoves the KVM backend runs for
// a guest after one trap.
const MaxMerged = 16

// SkipNoEffect returns the address after the privileged instructions
// without effect under emulation (lgdt, lidt, ltr, segment loads, cli, sti)
// that follow one another from next, at most MaxMerged of them, so that a
// run of them (a Solo5 guest's segment reloads) costs one trap instead of
// one each. fetch returns the code at an address (see DecodePriv); exec
// reports whether the guest may execute [addr, addr+n).
func SkipNoEffect(next uint64, fetch func(addr uint64) []byte, exec func(addr, n uint64) bool) uint64 {
	for range MaxMerged {
		p, n, ok := DecodePriv(fetch(next))
		if !ok || !p.noEffect() || !exec(next, uint64(n)) {
			break
		}
		next += uint64(n)
	}
	return next
}

// noEffect reports whether p is emulated by passing over it.
func (p Priv) noEffect() bool {
	switch p {
	case PrivLGDT, PrivLIDT, PrivLTR, PrivMovSS, PrivCLI, PrivSTI:
		return true
	}
	return false
}
