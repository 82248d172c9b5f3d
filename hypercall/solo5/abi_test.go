package solo5

import (
	"testing"
	"unsafe"

	"github.com/stretchr/testify/assert"
)

// TestArgSizes ties ArgSize, which the monitor checks guest structures
// with, to the structures' natural C layout as declared here.
func TestArgSizes(t *testing.T) {
	for nr, size := range map[uint32]uintptr{
		NrWalltime:   unsafe.Sizeof(Walltime{}),
		NrPuts:       unsafe.Sizeof(Puts{}),
		NrPoll:       unsafe.Sizeof(Poll{}),
		NrBlockWrite: unsafe.Sizeof(Block{}),
		NrBlockRead:  unsafe.Sizeof(Block{}),
		NrNetWrite:   unsafe.Sizeof(NetWrite{}),
		NrNetRead:    unsafe.Sizeof(NetRead{}),
		NrHalt:       unsafe.Sizeof(Halt{}),
	} {
		assert.EqualValues(t, size, ArgSize(nr), Names[nr])
		assert.NotEmpty(t, Names[nr])
	}
	assert.Zero(t, ArgSize(0))
	assert.Zero(t, ArgSize(Count))
	assert.False(t, ArgWritten(NrPuts))
	assert.False(t, ArgWritten(NrHalt))
	assert.True(t, ArgWritten(NrNetRead))
	// The ret fields the monitor writes, at the offsets it writes them.
	assert.EqualValues(t, 16, unsafe.Offsetof(Poll{}.Ret))
	assert.EqualValues(t, 32, unsafe.Offsetof(Block{}.Ret))
	assert.EqualValues(t, 24, unsafe.Offsetof(NetRead{}.Ret))
	assert.EqualValues(t, 8, unsafe.Offsetof(Halt{}.ExitStatus))
	assert.Equal(t, ManifestHeader+MaxEntries*EntrySize, ManifestMax)
	assert.Less(t, ManifestAddr+ManifestMax, CmdlineAddr)
	assert.GreaterOrEqual(t, ManifestAddr, BootInfoAddr+BootInfoSize)
}
