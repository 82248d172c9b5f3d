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

// Commands with heavy dependencies live in programs of their own beside
// tender (make builds them all into bin/), so that tender's start-up, paid on
// every `tender run`, does not initialise them.
const (
	// serveBinary implements `tender serve` (HTTP server, Prometheus).
	serveBinary = "tender-serve"
	// benchBinary implements `tender bench` (plots, progress bar).
	benchBinary = "tender-bench"
)

func serveCmd(c command, args []string, _ io.Reader, _, stderr io.Writer) int {
	return execSibling(c.name, serveBinary, args, stderr)
}

func benchCmd(c command, args []string, _ io.Reader, _, stderr io.Writer) int {
	return execSibling(c.name, benchBinary, args, stderr)
}

// execSibling replaces this process with the program binary found beside
// tender's own executable, passing args on. It returns only on failure.
func execSibling(name, binary string, args []string, stderr io.Writer) int {
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintf(stderr, "tender: %s: %v\n", name, err)
		return monitor.ExitMonitor
	}
	path := filepath.Join(filepath.Dir(self), binary)
	err = syscall.Exec(path, append([]string{path}, args...), os.Environ())
	if errors.Is(err, syscall.ENOENT) {
		err = fmt.Errorf("%s not found beside %s (make builds both)", path, self)
	}
	fmt.Fprintf(stderr, "tender: %s: %v\n", name, err)
	return monitor.ExitMonitor
}
