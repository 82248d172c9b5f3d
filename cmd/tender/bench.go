package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"

	"github.com/tendervm/tender/monitor"
)

// benchBinary is the program that implements `tender bench`, installed beside
// tender (make builds both into bin/). It links the plotting and progress-bar
// packages, which tender itself does without.
const benchBinary = "tender-bench"

// benchCmd replaces this process with tender-bench, passing the arguments on.
func benchCmd(_ command, args []string, _ io.Reader, _, stderr io.Writer) int {
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintf(stderr, "tender: bench: %v\n", err)
		return monitor.ExitMonitor
	}
	path := filepath.Join(filepath.Dir(self), benchBinary)
	err = syscall.Exec(path, append([]string{path}, args...), os.Environ())
	if errors.Is(err, syscall.ENOENT) {
		err = fmt.Errorf("%s not found beside %s (make builds both)", path, self)
	}
	fmt.Fprintf(stderr, "tender: bench: %v\n", err)
	return monitor.ExitMonitor
}
