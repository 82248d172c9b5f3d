package hypercall

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestLayout pins the size and field offsets of every ABI structure: changing
// any of them is an ABI break and must come with a new ABIVersion.
func TestLayout(t *testing.T) {
	assert.EqualValues(t, 8, unsafe.Sizeof(Walltime{}))
	assert.EqualValues(t, 16, unsafe.Sizeof(ConsoleWrite{}))
	assert.EqualValues(t, 8, unsafe.Offsetof(ConsoleWrite{}.Len))
	assert.EqualValues(t, 8, unsafe.Sizeof(Exit{}))
	assert.EqualValues(t, 16, unsafe.Sizeof(Abort{}))
	assert.EqualValues(t, 8, unsafe.Offsetof(Abort{}.Len))
	assert.EqualValues(t, 80, unsafe.Sizeof(BootInfo{}))
	assert.EqualValues(t, 16, unsafe.Offsetof(BootInfo{}.MemSize))
	assert.EqualValues(t, 40, unsafe.Offsetof(BootInfo{}.Cmdline))
	assert.EqualValues(t, 56, unsafe.Offsetof(BootInfo{}.TSCHz))
	assert.EqualValues(t, 72, unsafe.Offsetof(BootInfo{}.BootWalltime))
	assert.EqualValues(t, 8, unsafe.Sizeof(ABINote{}))
	assert.EqualValues(t, 72, unsafe.Sizeof(FnNext{}))
	assert.EqualValues(t, 32, unsafe.Sizeof(NetInfo{}))
	assert.EqualValues(t, 32, unsafe.Sizeof(NetWrite{}))
	assert.EqualValues(t, 40, unsafe.Sizeof(NetRead{}))
	assert.EqualValues(t, 32, unsafe.Offsetof(NetRead{}.Result))
	assert.EqualValues(t, 24, unsafe.Sizeof(Poll{}))
	assert.EqualValues(t, 40, unsafe.Sizeof(BlockInfo{}))
	assert.EqualValues(t, 40, unsafe.Sizeof(BlockIO{}))
	assert.EqualValues(t, 32, unsafe.Offsetof(BlockIO{}.Result))
	assert.EqualValues(t, 32, unsafe.Sizeof(DeviceEntry{}))
	assert.EqualValues(t, 8, unsafe.Offsetof(DeviceEntry{}.Name))
	assert.EqualValues(t, 32, unsafe.Offsetof(FnNext{}.ReqBuf))
	assert.EqualValues(t, 48, unsafe.Offsetof(FnNext{}.ReqID))
	assert.EqualValues(t, 64, unsafe.Offsetof(FnNext{}.ReqDeadline))
}

// TestStructRules checks the rules every argument structure follows: 64-bit
// (or, in notes, 32-bit) fields, no padding, a C name on each field.
func TestStructRules(t *testing.T) {
	for _, s := range cStructs() {
		var off uintptr
		for i := range s.typ.NumField() {
			f := s.typ.Field(i)
			assert.NotEmpty(t, f.Tag.Get("c"), "%s.%s has no C name", s.name, f.Name)
			assert.Equal(t, off, f.Offset, "%s.%s is not packed", s.name, f.Name)
			assert.Contains(t, []reflect.Kind{reflect.Uint64, reflect.Uint32, reflect.Array}, f.Type.Kind())
			off += f.Type.Size()
		}
		assert.Equal(t, off, s.typ.Size(), "%s has trailing padding", s.name)
	}
}

func TestNumbers(t *testing.T) {
	seen := map[int]bool{}
	for _, nr := range []int{NrWalltime, NrConsoleWrite, NrExit, NrAbort, NrFnNext, NrNetInfo, NrNetWrite, NrNetRead, NrPoll,
		NrBlockInfo, NrBlockRead, NrBlockWrite} {
		assert.Greater(t, nr, 0)
		assert.Less(t, nr, Count)
		assert.False(t, seen[nr], "hypercall %d defined twice", nr)
		seen[nr] = true
		assert.NotEmpty(t, Names[nr])
	}
	assert.Less(t, CmdlineAddr+CmdlineMax, ImageBase)
	assert.Equal(t, "TENDERBI", string(unsafe.Slice((*byte)(unsafe.Pointer(&[]uint64{BootInfoMagic}[0])), 8)))
}

// TestHeaderFresh fails when the checked-in C header differs from what the Go
// definitions generate: run `go generate ./hypercall`.
func TestHeaderFresh(t *testing.T) {
	got, err := os.ReadFile("../guest/include/tender_abi.h")
	require.NoError(t, err)
	require.Equal(t, string(CHeader()), string(got),
		"guest/include/tender_abi.h is stale: run `go generate ./hypercall`")
}

// TestHeadersCXX: tender.h has extern "C" guards, so the guest headers must
// also compile as C++ (static assertions and restrict spelled for both).
// It needs a C++ compiler, which tender does not otherwise use.
func TestHeadersCXX(t *testing.T) {
	cxx, err := exec.LookPath("g++")
	if err != nil {
		t.Skip("no g++: the headers' C++ side is not checked")
	}
	src := filepath.Join(t.TempDir(), "h.cc")
	require.NoError(t, os.WriteFile(src, []byte("#include \"tender.h\"\n#include \"net.h\"\nint main() { return 0; }\n"), 0o644))
	out, err := exec.Command(cxx, "-std=c++17", "-fsyntax-only", "-ffreestanding", "-I../guest/include", src).CombinedOutput()
	require.NoError(t, err, "%s", out)
}

// TestArgSize checks ArgSize against the argument structures.
func TestArgSize(t *testing.T) {
	want := map[uint32]uint64{NrWalltime: 8, NrConsoleWrite: 16, NrExit: 8, NrAbort: 16,
		NrFnNext: 72, NrNetInfo: 32, NrNetWrite: 32, NrNetRead: 40, NrPoll: 24,
		NrBlockInfo: 40, NrBlockRead: 40, NrBlockWrite: 40}
	for nr := range uint32(Count) {
		assert.Equal(t, want[nr], ArgSize(nr), "hypercall %d", nr)
	}
}
