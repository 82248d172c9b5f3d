package kvm

import (
	"encoding/binary"
	"runtime"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tendervm/tender/monitor/vcpu"
)

// TestPortIOToHypercallPort checks that only `outl %eax,%dx` to a hypercall
// port is a hypercall. String and repeated output reach KVM as an I/O exit
// just like it (4 bytes, count 1 per element on kvm_pvm), and here they even
// output the value EAX holds, so only the instruction tells them apart.
func TestPortIOToHypercallPort(t *testing.T) {
	// mov $0x101000,%esi; mov $N,%ecx; mov $0x502,%dx; mov $0x101000,%eax
	setup := func(n byte) []byte {
		return []byte{0xbe, 0x00, 0x10, 0x10, 0x00, 0xb9, n, 0, 0, 0, 0x66, 0xba, 0x02, 0x05, 0xb8, 0x00, 0x10, 0x10, 0x00}
	}
	bad := func(size uint8, out, str bool) vcpu.Exit {
		return vcpu.Exit{Kind: vcpu.ExitBadIO, Port: 0x502, Size: size, Out: out, Str: str}
	}
	cases := []struct {
		name string
		code []byte
		want vcpu.Exit
	}{
		{"outl", append(setup(1), 0xef), vcpu.Exit{Kind: vcpu.ExitHypercall, Nr: 2, Arg: dataAddr}},
		{"rep outl", append(setup(4), 0xf3, 0xef), vcpu.Exit{Kind: vcpu.ExitHypercall, Nr: 2, Arg: dataAddr}},
		// mov $0x6f,%al; outl: a byte 6F (an outsl's opcode) before the outl
		{"outl after a 6F byte", append(setup(1), 0xb0, 0x6f, 0xef), vcpu.Exit{Kind: vcpu.ExitHypercall, Nr: 2, Arg: dataAddr | 0x6f}},
		{"outsl", append(setup(1), 0x6f), bad(4, true, true)},
		{"outsl then outl", append(setup(1), 0x6f, 0xef), bad(4, true, true)},
		{"rep outsl, count 1", append(setup(1), 0xf3, 0x6f), bad(4, true, true)},
		{"rep outsl, count 4", append(setup(4), 0xf3, 0x6f), bad(4, true, true)},
		{"outb", append(setup(1), 0xee), bad(1, true, false)},
		{"outw", append(setup(1), 0x66, 0xef), bad(2, true, false)},
		{"inl", append(setup(1), 0xed), bad(4, false, false)},
		{"rep insl, count 4", append(setup(4), 0xf3, 0x6d), bad(4, false, true)},
	}
	s := system(t)
	for _, sync := range []bool{true, false} {
		for _, c := range cases {
			name := c.name
			if !sync {
				name += " (KVM_GET_REGS)"
			}
			t.Run(name, func(t *testing.T) {
				runtime.LockOSThread()
				defer runtime.UnlockOSThread()
				vm, mem := rawVM(t, s, append(slices.Clip(c.code), codeMarker...))
				if !sync {
					vm.syncRegs = false
				}
				// The words an outs would read equal EAX.
				for a := uint64(dataAddr); a < dataAddr+32; a += 4 {
					require.NoError(t, mem.Write(a, binary.LittleEndian.AppendUint32(nil, dataAddr)))
				}
				before := monitorState(t, mem)
				x := run(t, vm)
				if x.Kind == vcpu.ExitBadIO {
					assert.NotZero(t, x.RIP)
					x.RIP = 0 // on or after the instruction, depending on the host
				}
				assert.Equal(t, c.want, x)
				if x.Kind != vcpu.ExitHypercall {
					assertStopped(t, mem, before)
				}
			})
		}
	}
}
