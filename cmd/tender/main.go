// Command tender runs unikernel guests in KVM virtual machines.
//
//	tender run [flags] GUEST.elf [ARGS...]
//
// The process exit code is the guest's exit status (0-239), or one of the
// monitor's codes: 240 aborted, 241 crashed, 242 protocol violation,
// 243 timeout or interrupted, 254 usage error, 255 monitor error.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/tendervm/tender/monitor"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// usageError marks command-line mistakes, which exit with monitor.ExitUsage.
type usageError struct{ error }

// exitStatus carries a process exit code out of a command.
type exitStatus int

func (e exitStatus) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

func run(args []string, stdout, stderr io.Writer) int {
	root := &cobra.Command{
		Use:           "tender",
		Short:         "tender runs unikernel guests in their own KVM virtual machines",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(runCommand(stdout, stderr))
	err := root.Execute()
	var st exitStatus
	var ue usageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &st):
		return int(st)
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "tender: %v\n", err)
		return monitor.ExitUsage
	}
	fmt.Fprintf(stderr, "tender: %v\n", err)
	// cobra does not type its own complaints about unknown commands.
	if strings.HasPrefix(err.Error(), "unknown command") {
		return monitor.ExitUsage
	}
	return monitor.ExitMonitor
}

// signalContext cancels on SIGINT and SIGTERM, so an interrupted guest is
// stopped and reported like a timeout.
func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}
