// Command tender-oci is a runc-compatible OCI runtime for tender guests:
// containerd runs them through it (`ctr run --runc-binary`, a runtime entry
// with BinaryName for the CRI plugin), and it hands containers that are not
// tender guests to runc unchanged. See package oci and docs/kubernetes.md.
package main

import (
	"os"

	"github.com/tendervm/tender/oci"
)

func main() {
	os.Exit(oci.Main(os.Args[1:], os.Stdout, os.Stderr))
}
