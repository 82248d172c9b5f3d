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

// serveBinary is the program that implements `tender serve`, installed beside
// tender (make builds both into bin/).
const serveBinary = "tender-serve"

// serveCmd replaces this process with tender-serve, passing the arguments on.
func serveCmd(_ command, args []string, _ io.Reader, _, stderr io.Writer) int {
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintf(stderr, "tender: serve: %v\n", err)
		return monitor.ExitMonitor
	}
	path := filepath.Join(filepath.Dir(self), serveBinary)
	err = syscall.Exec(path, append([]string{path}, args...), os.Environ())
	if errors.Is(err, syscall.ENOENT) {
		err = fmt.Errorf("%s not found beside %s (make builds both)", path, self)
	}
	fmt.Fprintf(stderr, "tender: serve: %v\n", err)
	return monitor.ExitMonitor
}
