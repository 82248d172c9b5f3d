//go:build cgo

package confine

// cgoThreads: with cgo, the Go runtime starts threads through the C
// library (it does only when runtime/cgo is linked, which this tag cannot
// tell; the rules it adds are then unused).
const cgoThreads = true
