package x86

import (
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tendervm/tender/hypercall"
	"github.com/tendervm/tender/monitor/guestmem"
	"github.com/tendervm/tender/monitor/vcpu"
)

type access struct{ user, write, exec bool }

// walk translates vaddr as the CPU would with CR0.WP=1 and EFER.NXE=1, and
// reports whether the access is allowed.
func walk(t *testing.T, mem *guestmem.Memory, vaddr uint64, a access) (uint64, bool) {
	t.Helper()
	table := uint64(PML4Addr)
	user, write, exec := true, true, true
	for level, shift := 4, 39; level >= 1; level, shift = level-1, shift-9 {
		e, err := mem.Uint64(table + ((vaddr>>shift)&0x1FF)*8)
		require.NoError(t, err)
		if e&ptePresent == 0 {
			return 0, false
		}
		user = user && e&pteUser != 0
		write = write && e&pteWrite != 0
		exec = exec && e&pteNX == 0
		if level == 2 && e&ptePS != 0 {
			return e&addrMask&^(page2M-1) | vaddr&(page2M-1), allowed(a, user, write, exec)
		}
		table = e & addrMask
	}
	return table | vaddr&0xFFF, allowed(a, user, write, exec)
}

func allowed(a access, user, write, exec bool) bool {
	return (!a.user || user) && (!a.write || write) && (!a.exec || exec)
}

func build(t *testing.T, size uint64, regions []vcpu.Region) *guestmem.Memory {
	mem, err := guestmem.New(size)
	require.NoError(t, err)
	t.Cleanup(func() { mem.Close() })
	require.NoError(t, Build(mem, regions))
	return mem
}

func TestPermissions(t *testing.T) {
	const size = 64 << 20
	regions := []vcpu.Region{
		{Addr: hypercall.BootInfoAddr, Size: 0x3000, Perm: vcpu.Read},
		{Addr: 0x100000, Size: 0x3000, Perm: vcpu.Read | vcpu.Exec},
		{Addr: 0x103000, Size: 0x1000, Perm: vcpu.Read},
		{Addr: 0x104000, Size: 0x2000, Perm: vcpu.Read | vcpu.Write},
		{Addr: 0x106000, Size: size - 0x106000, Perm: vcpu.Read | vcpu.Write},
	}
	mem := build(t, size, regions)
	ur, uw, ux := access{user: true}, access{user: true, write: true}, access{user: true, exec: true}
	kr, kw, kx := access{}, access{write: true}, access{exec: true}
	cases := []struct {
		name  string
		addr  uint64
		a     access
		allow bool
	}{
		{"null page user", 0, ur, false},
		{"null page kernel", 0, kr, false},
		{"gdt user read", GDTAddr, ur, false},
		{"gdt kernel read", GDTAddr, kr, true},
		{"gdt kernel write", GDTAddr, kw, false},
		{"idt user", IDTAddr, ur, false},
		{"tss user", TSSAddr, ur, false},
		{"stub kernel exec", StubAddr + 8, kx, true},
		{"stub kernel write", StubAddr, kw, false},
		{"stub user exec", StubAddr, ux, false},
		{"kstack kernel write", KStackTop - 8, kw, true},
		{"kstack kernel exec", KStackTop - 8, kx, false},
		{"kstack user", KStackTop - 8, ur, false},
		{"page tables unmapped", PML4Addr, kr, false},
		{"syscall sentinel user exec", SyscallSentinel, ux, false},
		{"syscall sentinel kernel exec", SyscallSentinel, kx, false},
		{"boot info user read", hypercall.BootInfoAddr, ur, true},
		{"boot info user write", hypercall.BootInfoAddr, uw, false},
		{"cmdline user read", hypercall.CmdlineAddr + 0x1000, ur, true},
		{"after cmdline", hypercall.CmdlineAddr + hypercall.CmdlineMax, ur, false},
		{"text exec", 0x100000, ux, true},
		{"text write", 0x102FFF, uw, false},
		{"rodata exec", 0x103000, ux, false},
		{"rodata read", 0x103000, ur, true},
		{"data write", 0x104000, uw, true},
		{"data exec", 0x105000, ux, false},
		{"heap write 4K part", 0x106000, uw, true},
		{"heap write 2M part", 0x400000, uw, true},
		{"heap exec", 0x400000, ux, false},
		{"top of memory", size - 8, uw, true},
		{"past memory", size, ur, false},
	}
	for _, c := range cases {
		pa, ok := walk(t, mem, c.addr, c.a)
		assert.Equal(t, c.allow, ok, c.name)
		if ok {
			assert.Equal(t, c.addr, pa, "%s: identity map", c.name)
		}
	}
}

func TestLargePagesKeepTablesSmall(t *testing.T) {
	const size = 4 << 30
	mem := build(t, size, []vcpu.Region{
		{Addr: hypercall.BootInfoAddr, Size: 0x3000, Perm: vcpu.Read},
		{Addr: 0x100000, Size: 0x1000, Perm: vcpu.Read | vcpu.Exec},
		{Addr: 0x101000, Size: size - 0x101000, Perm: vcpu.Read | vcpu.Write},
	})
	// Only the first 2 MiB chunk needs a page table.
	e, err := mem.Uint64(pdAddr + 8)
	require.NoError(t, err)
	assert.NotZero(t, e&ptePS, "chunk 1 should be a 2 MiB page")
	second, err := mem.Uint64(ptAddr + hypercall.PageSize)
	require.NoError(t, err)
	assert.Zero(t, second, "a second page table was built")
	_, ok := walk(t, mem, size-1, access{user: true, write: true})
	assert.True(t, ok)
}

// TestBuildTouchesOnlyItsTables checks that Build allocates only the pages
// it writes on fresh memory: the descriptor tables, stubs and the page tables
// in use, not the whole page-table area (512 KiB, most of an idle
// instance's host memory once).
func TestBuildTouchesOnlyItsTables(t *testing.T) {
	const size = 64 << 20
	mem := build(t, size, []vcpu.Region{
		{Addr: hypercall.BootInfoAddr, Size: 0x3000, Perm: vcpu.Read},
		{Addr: 0x100000, Size: 0x3000, Perm: vcpu.Read | vcpu.Exec},
		{Addr: 0x103000, Size: size - 0x103000, Perm: vcpu.Read | vcpu.Write},
	})
	n, err := mem.Resident(0, ptEnd)
	require.NoError(t, err)
	// GDT, IDT, TSS, stubs, PML4, PDPT, one page directory, one page table.
	assert.LessOrEqual(t, n, 8, "pages allocated below %#x", ptEnd)
}

func TestBuildRejects(t *testing.T) {
	mem, err := guestmem.New(8 << 20)
	require.NoError(t, err)
	defer mem.Close()
	for _, c := range []struct {
		name string
		r    []vcpu.Region
		want string
	}{
		{"unaligned", []vcpu.Region{{Addr: 0x100001, Size: 0x1000, Perm: vcpu.Read}}, "region 0 [0x100001, +0x1000) is not page-aligned"},
		{"monitor pages", []vcpu.Region{{Addr: 0x1000, Size: 0x1000, Perm: vcpu.Read}}, "region 0 [0x1000, +0x1000) outside the guest's part of memory"},
		{"past memory", []vcpu.Region{{Addr: 0x100000, Size: 8 << 20, Perm: vcpu.Read}}, "region 0 [0x100000, +0x800000) outside the guest's part of memory"},
		{"overlap", []vcpu.Region{{Addr: 0x100000, Size: 0x2000, Perm: vcpu.Read},
			{Addr: 0x101000, Size: 0x1000, Perm: vcpu.Read}}, "region 1 overlaps region 0"},
		{"wraps", []vcpu.Region{{Addr: 0x100000, Size: ^uint64(0) &^ 0xFFF, Perm: vcpu.Read}}, "region 0 [0x100000, +0xfffffffffffff000) outside the guest's part of memory"},
	} {
		assert.ErrorContains(t, Build(mem, c.r), c.want, c.name)
	}
	// An image scattered over more 2 MiB chunks than there are page tables.
	var many []vcpu.Region
	big, err := guestmem.New(1 << 30)
	require.NoError(t, err)
	defer big.Close()
	for a := uint64(0x200000); a < 1<<30; a += page2M {
		many = append(many, vcpu.Region{Addr: a, Size: 0x1000, Perm: vcpu.Read})
	}
	assert.ErrorContains(t, Build(big, many), "page tables")
}

func TestTables(t *testing.T) {
	mem := build(t, 8<<20, nil)
	g := make([]byte, GDTLimit+1)
	require.NoError(t, mem.Read(GDTAddr, g))
	// User code: DPL 3, present, long mode.
	ucs := binary.LittleEndian.Uint64(g[UserCS&^7:])
	assert.EqualValues(t, 3, ucs>>45&3, "user CS DPL")
	assert.EqualValues(t, 1, ucs>>53&1, "user CS L bit")
	// TSS: RSP0 and an I/O bitmap open exactly on the hypercall ports.
	ts := make([]byte, TSSLimit+1)
	require.NoError(t, mem.Read(TSSAddr, ts))
	assert.EqualValues(t, KStackTop, binary.LittleEndian.Uint64(ts[4:]))
	base := int(binary.LittleEndian.Uint16(ts[102:]))
	open := func(port int) bool { return ts[base+port/8]&(1<<(port%8)) == 0 }
	assert.True(t, open(hypercall.PIOBase))
	assert.True(t, open(hypercall.PIOBase+hypercall.Count-1))
	assert.False(t, open(hypercall.PIOBase-1))
	// A 4-byte access to the last port checks the three bits after it.
	assert.True(t, open(hypercall.PIOBase+hypercall.Count+2))
	assert.False(t, open(hypercall.PIOBase+hypercall.Count+3))
	assert.False(t, open(FaultPort))
	assert.False(t, open(0x80))
	assert.EqualValues(t, 0xFF, ts[len(ts)-1], "bitmap terminator")
	// IDT gate 14 points at its stub, which reports vector 14.
	gate := make([]byte, 16)
	require.NoError(t, mem.Read(IDTAddr+14*16, gate))
	off := uint64(binary.LittleEndian.Uint16(gate[0:])) | uint64(binary.LittleEndian.Uint16(gate[6:]))<<16
	stub := make([]byte, stubSize)
	require.NoError(t, mem.Read(off, stub))
	assert.Equal(t, []byte{0x50, 0x52, 0xB0, 14}, stub[:4])
	assert.EqualValues(t, KernelCS, binary.LittleEndian.Uint16(gate[2:]))
	assert.EqualValues(t, 0xF4, stub[9], "a #PF stub ends in hlt")
	// The #GP stub alone is a bare out to GPPort, then the way back to
	// the guest: drop the error code, iretq. It clobbers no register.
	gp := make([]byte, stubSize)
	require.NoError(t, mem.Read(StubAddr+VecGP*stubSize, gp))
	assert.Equal(t, []byte{0xE6, GPPort, 0x48, 0x83, 0xC4, 0x08, 0x48, 0xCF}, gp[:8])
	assert.EqualValues(t, StubAddr+VecGP*stubSize, GPReportRIP, "the RIP of the out")
}

// TestExceptionFacts pins the vectors with an error code (Intel SDM vol. 3
// table 6-1, AMD APM vol. 2 table 8-1) and their names: both backends and
// the monitor's messages read them from here.
func TestExceptionFacts(t *testing.T) {
	var with []uint8
	for v := range uint8(NumVectors) {
		if HasErrorCode(v) {
			with = append(with, v)
		}
	}
	assert.Equal(t, []uint8{8, 10, 11, 12, 13, 14, 17, 21, 29, 30}, with)
	assert.Equal(t, "#PF page fault", VectorName(VecPF))
	assert.Equal(t, "#VC VMM communication", VectorName(29))
	assert.Equal(t, "vector 31", VectorName(31))
}

// TestRestorePageXSAVE: the XSAVE image in the restore page names only the
// components it holds (x87, SSE, AVX: xrstor64 initialises the rest of its
// mask) and no compacted format; the register values lie in the data page,
// and the code page holds nothing but the monitor's instructions.
func TestRestorePageXSAVE(t *testing.T) {
	image := make([]byte, 1024)
	binary.LittleEndian.PutUint64(image[512:], 0x2E7) // x87, SSE, AVX, AVX-512, PKRU
	binary.LittleEndian.PutUint64(image[520:], 1<<63)
	for i := 160; i < 416; i++ {
		image[i] = 0xC3 // XMM registers full of ret
	}
	code, data := RestorePage(0x100000, 0xC3C3C3C3, 0xC3C3C3C3, image, RestoreMask(0x80000+0x600E7))
	assert.EqualValues(t, 0x7, binary.LittleEndian.Uint64(data[restoreImage+512:]))
	assert.Zero(t, binary.LittleEndian.Uint64(data[restoreImage+520:]))
	assert.EqualValues(t, 0x100000, binary.LittleEndian.Uint64(data[restoreRIP:]))
	assert.NotContains(t, string(code), "\xc3\xc3", "a register value in the executable page")
	assert.Equal(t, []byte{0xb8, 0xff, 0x02, 0x08, 0, 0xba, 0, 0, 0, 0}, code[:10],
		"mask 0x802FF in EDX:EAX (APX too, not AMX), with moves, which leave RFLAGS alone")
	assert.EqualValues(t, 0x2FF, RestoreMask(0))

	code, data = RestorePage(0x100000, 1, 2, image[:512], 0)
	assert.Equal(t, []byte{0x48, 0x0f, 0xae, 0x0d}, code[:4], "fxrstor64")
	assert.Equal(t, image[:512], data[restoreImage:restoreImage+512])
}
