// Command tender runs unikernel guests in KVM virtual machines.
//
//	tender run    [flags] GUEST.elf [ARGS...]   boot a guest, exit with its status
//	tender invoke [flags] FN.elf [ARGS...]      one function invocation: stdin in, stdout out
//	tender serve  [flags] FN.elf [ARGS...]      an HTTP gateway to a pool of function instances
//
// The exit code of run is the guest's exit status (0-239), or one of the
// monitor's codes: 240 aborted, 241 crashed, 242 protocol violation,
// 243 timeout or interrupted, 254 usage error, 255 monitor error.
//
// Flags are parsed with the standard library's flag package: it keeps the
// process's start-up cost (which `tender run` pays on every boot) to the Go
// runtime's own.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/tendervm/tender/monitor"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// usageError marks command-line mistakes, which exit with monitor.ExitUsage.
type usageError struct{ error }

// command is one subcommand.
type command struct {
	name, args, summary string
	run                 func(args []string, stdin io.Reader, stdout, stderr io.Writer) int
}

func commands() []command {
	return []command{
		{"run", "[flags] GUEST.elf [ARGS...]", "boot a guest, print its console, exit with its status", runCmd},
		{"invoke", "[flags] FN.elf [ARGS...]", "invoke a function once: request on stdin, reply on stdout", invokeCmd},
		{"serve", "[flags] FN.elf [ARGS...]", "serve a function over HTTP (POST /invoke, /healthz, /metrics)", serveCmd},
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
		usage(stdout)
		return 0
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(args[1:], stdin, stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "tender: unknown command %q\n", args[0])
	usage(stderr)
	return monitor.ExitUsage
}

// newFlagSet makes a command's flag set; -h prints its usage.
func newFlagSet(c string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("tender "+c, flag.ContinueOnError)
	fs.SetOutput(stderr)
	for _, cmd := range commands() {
		if cmd.name == c {
			fs.Usage = func() {
				fmt.Fprintf(stderr, "usage: tender %s %s\n\n%s\n\nflags:\n", cmd.name, cmd.args, cmd.summary)
				fs.PrintDefaults()
			}
		}
	}
	return fs
}

// parse parses a command's flags and requires the guest ELF argument. It
// returns the exit code to use when parsing ends the command (-h, errors).
func parse(fs *flag.FlagSet, args []string) (rest []string, code int, ok bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, 0, false
		}
		return nil, monitor.ExitUsage, false
	}
	if fs.NArg() < 1 {
		fmt.Fprintf(fs.Output(), "%s: missing the guest ELF\n", fs.Name())
		fs.Usage()
		return nil, monitor.ExitUsage, false
	}
	return fs.Args(), 0, true
}

// signalContext cancels on SIGINT and SIGTERM, so an interrupted guest is
// stopped and reported like a timeout.
func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}
