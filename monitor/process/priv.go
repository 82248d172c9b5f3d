package process

import (
	"encoding/binary"
	"os"

	"github.com/tendervm/tender/monitor/vcpu"
	"github.com/tendervm/tender/monitor/x86"
)

// solo5CodeSel is the code selector a Solo5 guest far-returns to.
const solo5CodeSel = 0x8

// emulatePriv emulates the privileged instruction at rip that raised #GP in
// a guest with vcpu.Boot.EmulatePriv, given the guest's RSP, RAX and RDX
// and ECX (wrmsr's value is EDX:EAX, its MSR ECX). done is false when it is not one the guest may use: the #GP is
// then reported as the fault it is. An emulated instruction is answered
// (v.skip, which the handler applies) and the guest goes on: done is true
// with the zero Exit, which Run never returns (see decode's caller).
func (v *VCPU) emulatePriv(rip, rsp, rax, rdx uint64, ecx uint32) (vcpu.Exit, bool) {
	p, n, ok := x86.DecodePriv(v.code(rip))
	if !ok || !v.executable(rip, uint64(n)) {
		return vcpu.Exit{}, false
	}
	switch p {
	case x86.PrivHLT:
		return vcpu.Exit{Kind: vcpu.ExitHalt, RIP: rip}, true
	case x86.PrivLRET:
		b, err := v.mem.Guest(rsp, 16, vcpu.Read)
		if err != nil {
			return vcpu.Exit{}, false
		}
		target, sel := binary.LittleEndian.Uint64(b), binary.LittleEndian.Uint64(b[8:])
		if uint16(sel) != solo5CodeSel {
			return vcpu.Exit{}, false
		}
		_ = target // the handler reads it from the same (shared) memory
		v.skip = answerFarReturn
	case x86.PrivWRMSR:
		// The handler sets the base with wrfsbase, which needs the
		// kernel to enable FSGSBASE.
		if ecx != x86.MSRFSBase || v.spawner == nil || !v.spawner.fsgsbase {
			return vcpu.Exit{}, false
		}
		base := rdx<<32&0xFFFFFFFF00000000 | rax&0xFFFFFFFF
		if base >= 1<<47 {
			return vcpu.Exit{}, false
		}
		v.skip = answerFSBase | uint64(n)<<48 | base
	default:
		// lgdt, lidt, ltr, segment loads: accepted without effect.
		// cli, sti: the guest takes no interrupts anyway. Those that
		// follow go too.
		v.skip = x86.SkipNoEffect(rip+uint64(n), v.code, v.executable) - rip
	}
	return vcpu.Exit{}, true
}

// hasFSGSBase reports whether the kernel enabled the FSGSBASE instructions
// for processes (Linux 5.9 and later, on CPUs that have them): the
// HWCAP2_FSGSBASE bit of the auxiliary vector's AT_HWCAP2.
func hasFSGSBase() bool {
	const atHWCAP2, hwcap2FSGSBase = 26, 1 << 1
	b, err := os.ReadFile("/proc/self/auxv")
	if err != nil {
		return false
	}
	for ; len(b) >= 16; b = b[16:] {
		if binary.LittleEndian.Uint64(b) == atHWCAP2 {
			return binary.LittleEndian.Uint64(b[8:])&hwcap2FSGSBase != 0
		}
	}
	return false
}
