package process

import (
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/tendervm/tender/monitor/vcpu"
)

// FuzzDecodeSolo5 feeds decode #GP reports of a Solo5 guest, whose
// privileged set-up is emulated: decode never panics, and an emulated
// instruction is answered with an advance within the executable code, a
// far return through a stack the guest may read with selector 0x8, or an
// FS base below 2^47 (which this spawner-less vCPU never grants).
func FuzzDecodeSolo5(f *testing.F) {
	mem := newMem(f)
	// lgdt (%rax); mov %eax,%ds; mov %eax,%es; lretq; wrmsr; hlt; cli; mov to cr3
	code := []byte{0x0f, 0x01, 0x10, 0x8e, 0xd8, 0x8e, 0xc0, 0x48, 0xcb, 0x0f, 0x30, 0xf4, 0xfa, 0x0f, 0x22, 0xd8}
	require.NoError(f, mem.Write(codeAddr, code))
	var stack [16]byte
	binary.LittleEndian.PutUint64(stack[:], codeAddr)
	binary.LittleEndian.PutUint64(stack[8:], 0x8)
	require.NoError(f, mem.Write(dataAddr, stack[:]))
	v := &VCPU{mem: mem, regions: testBoot().Regions, emulate: true}
	const gp = uint64(0x80)<<32 | uint64(unix.SIGSEGV)
	for off := range uint64(len(code)) {
		f.Add(gp, uint64(13)<<48, uint64(dataAddr), uint64(codeAddr)+off, uint64(0), uint64(0))
	}
	f.Add(gp, uint64(13)<<48|0xC0000100<<16, uint64(dataAddr), uint64(codeAddr+9), uint64(0x1000), uint64(0))
	f.Add(gp, uint64(13)<<48, uint64(testMemSize-8), uint64(codeAddr+7), uint64(0), uint64(0))
	f.Fuzz(func(t *testing.T, a0, a1, rsp, rip, rax, rdx uint64) {
		v.ended, v.skip = nil, 0
		v.notif = seccompNotif{Nr: handlerNr, Arch: unix.AUDIT_ARCH_X86_64, IP: handlerSyscallRet,
			Args: [6]uint64{a0, a1, rsp, rip, rax, rdx}}
		exit, ok := v.decode()
		if ok {
			switch exit.Kind {
			case vcpu.ExitHypercall, vcpu.ExitSyscall, vcpu.ExitFault, vcpu.ExitBadIO, vcpu.ExitHalt:
			default:
				t.Fatalf("decode returned %v", exit.Kind)
			}
			return
		}
		switch s := v.skip; {
		case s == 0: // not the guest's signal
		case s == answerFarReturn:
			b, err := mem.Guest(rsp, 16, vcpu.Read)
			require.NoError(t, err)
			require.EqualValues(t, 0x8, binary.LittleEndian.Uint16(b[8:]))
		case s&answerFSBase != 0:
			t.Fatalf("FS base answered without FSGSBASE: %#x", s)
		default:
			require.True(t, v.executable(rip, s), "advance %d from %#x", s, rip)
		}
	})
}
