package monitor

import (
	"fmt"
	"unsafe"

	"github.com/tendervm/tender/hypercall"
)

// argStruct is an argument structure of package hypercall: packed 64-bit
// fields (hypercall.TestStructRules), little-endian in guest memory.
type argStruct interface {
	hypercall.Walltime | hypercall.ConsoleWrite | hypercall.Exit | hypercall.Abort |
		hypercall.FnNext | hypercall.NetInfo | hypercall.NetWrite | hypercall.NetRead | hypercall.Poll |
		hypercall.BlockInfo | hypercall.BlockIO
}

// readArgs copies the argument structure of hypercall nr at arg into v, once,
// from guest memory checked as r.args checks it, so that a handler reads its
// fields by name. It returns the checked bytes, for writeArgs.
func readArgs[T argStruct](r *run, nr uint32, arg uint64, v *T) ([]byte, error) {
	a, err := r.args(nr, arg)
	if err != nil {
		return nil, err
	}
	b := argBytes(v)
	if len(a) != len(b) { // a handler asking for another hypercall's structure
		return nil, fmt.Errorf("monitor: %s: argument structure of %d bytes, want %d", hypercallName(nr), len(a), len(b))
	}
	copy(b, a)
	return a, nil
}

// writeArgs writes v back into the guest's argument structure a, from
// readArgs: the handler's answer in its "out" fields, the rest as read.
func writeArgs[T argStruct](a []byte, v *T) { copy(a, argBytes(v)) }

// argBytes is v's own memory. The monitor runs on amd64 only, where a
// structure of uint64 fields lies in memory as the guest's C header lays it
// out, so a copy of these bytes is the little-endian decoding.
func argBytes[T argStruct](v *T) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(v)), unsafe.Sizeof(*v))
}
