package main

import (
	"fmt"
	"io"

	"github.com/tendervm/tender/monitor"
)

func serveCmd(_ []string, _ io.Reader, _, stderr io.Writer) int {
	fmt.Fprintln(stderr, "tender: serve is not available in this build yet")
	return monitor.ExitMonitor
}
