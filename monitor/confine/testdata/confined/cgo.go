//go:build cgo

package main

// With cgo, the Go runtime starts its threads with pthread_create: the
// cgo build of this program checks the filter allows what that does.
import _ "runtime/cgo"
