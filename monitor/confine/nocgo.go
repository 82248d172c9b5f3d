//go:build !cgo

package confine

// cgoThreads: without cgo, the Go runtime starts threads with clone.
const cgoThreads = false
