package monitor

import (
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/tendervm/tender/hypercall"
)

// TestArgBytesLayout pins what readArgs and writeArgs rely on: a structure's
// bytes are its fields in order, each little-endian, as in the C header.
func TestArgBytesLayout(t *testing.T) {
	f := hypercall.FnNext{Flags: 1, ReqID: 0x0102030405060708, ReqDeadline: ^uint64(0) - 1}
	b := argBytes(&f)
	assert.Len(t, b, int(hypercall.ArgSize(hypercall.NrFnNext)))
	assert.Equal(t, uint64(1), binary.LittleEndian.Uint64(b[0:]))
	assert.Equal(t, f.ReqID, binary.LittleEndian.Uint64(b[48:]))
	assert.Equal(t, f.ReqDeadline, binary.LittleEndian.Uint64(b[64:]))

	var p hypercall.Poll
	binary.LittleEndian.PutUint64(argBytes(&p)[8:], 5)
	assert.Equal(t, hypercall.Poll{Ready: 5}, p)
}
