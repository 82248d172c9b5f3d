// Command tender runs unikernel guests in KVM virtual machines.
//
//	tender run    [flags] GUEST.elf [ARGS...]   boot a guest, exit with its status
//	tender invoke [flags] FN.elf [ARGS...]      one function invocation: stdin in, stdout out
//	tender serve  [flags] FN.elf [ARGS...]      an HTTP gateway to a pool of function instances
//
// The exit code of run is the guest's exit status (0-239), or one of the
// monitor's codes: 240 aborted, 241 crashed, 242 protocol violation,
// 243 timeout or interrupted, 244 forbidden system call (the monitor's
// seccomp filter, docs/security.md), 254 usage error, 255 monitor error
// (stdout failing included: the guest is stopped).
//
// Start-up cost is paid on every `tender run`, so this binary links only the
// monitor and the standard library's flag package. `tender serve` needs an
// HTTP server and Prometheus metrics, whose package initialisation alone
// costs milliseconds; it lives in the tender-serve binary beside this one,
// which `tender serve` executes.
package main

import (
	"fmt"
	"io"
	"os"

	"github.com/tendervm/tender/monitor"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// command is one subcommand.
type command struct {
	name, args, summary string
	run                 func(c command, args []string, stdin io.Reader, stdout, stderr io.Writer) int
}

func commands() []command {
	return []command{
		{"run", "[flags] GUEST.elf [ARGS...]", "Boot a guest, print its console, exit with its status.", runCmd},
		{"invoke", "[flags] FN.elf [ARGS...]", "Invoke a function once: request on stdin, reply on stdout.", invokeCmd},
		{"serve", "[flags] FN.elf [ARGS...]", "Serve a function over HTTP: POST /invoke, GET /healthz, GET /metrics.", serveCmd},
		{"bench", "[flags]", "Run the bypass-vs-container experiment (process, namespaces, crun, runc, tender).", benchCmd},
	}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: tender COMMAND [flags] ...")
	fmt.Fprintln(w, "\ncommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-7s %s\n          %s\n", c.name, c.args, c.summary)
	}
	fmt.Fprintln(w, "\n`tender COMMAND -h` lists a command's flags.")
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return monitor.ExitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		if len(args) > 1 && args[0] == "help" { // tender help run: run -h
			return run([]string{args[1], "-h"}, stdin, stdout, stderr)
		}
		usage(stdout)
		return 0
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(c, args[1:], stdin, stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "tender: unknown command %q\n", args[0])
	usage(stderr)
	return monitor.ExitUsage
}
