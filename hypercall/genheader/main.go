// Command genheader writes the guest C header generated from package hypercall.
//
// Usage: go run ./genheader OUTPUT.h
package main

import (
	"fmt"
	"os"

	"github.com/tendervm/tender/hypercall"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: genheader OUTPUT.h")
		os.Exit(2)
	}
	if err := os.WriteFile(os.Args[1], hypercall.CHeader(), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "genheader:", err)
		os.Exit(1)
	}
}
