package tests

import (
	"bytes"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tendervm/tender/monitor"
)

// tender runs bin/tender and returns its exit code, stdout and stderr.
func tender(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(filepath.Join(root, "bin", "tender"), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else {
		require.NoError(t, err)
	}
	return code, stdout.String(), stderr.String()
}

// TestCLIExitContract checks `tender run` exit codes and messages for each
// kind of outcome.
func TestCLIExitContract(t *testing.T) {
	for _, b := range backends(t) {
		be := "--backend=" + string(b)
		cases := []struct {
			args   []string
			code   int
			stdout string
			stderr string
		}{
			{[]string{"run", be, guestPath("hello")}, 0, "hello", ""},
			{[]string{"run", be, guestPath("exit"), "42"}, 42, "", ""},
			{[]string{"run", be, guestPath("exit"), "--not-a-flag"}, 2, "usage", ""},
			{[]string{"run", be, guestPath("abort")}, monitor.ExitAborted, "", "guest aborted: deliberate abort from guest"},
			{[]string{"run", be, guestPath("nullderef")}, monitor.ExitCrashed, "", "#PF page fault"},
			{[]string{"run", be, guestPath("invalidop")}, monitor.ExitCrashed, "", "#UD invalid opcode"},
			{[]string{"run", be, guestPath("wildptr")}, monitor.ExitProtocol, "", "outside guest memory"},
			{[]string{"run", be, "--timeout=200ms", guestPath("spin")}, monitor.ExitTimeout, "", "timeout"},
			{[]string{"run", be, "--console-limit=100", guestPath("flood")}, monitor.ExitProtocol, "", "console output limit of 100 bytes"},
			{[]string{"run", be, "--mem=5", guestPath("hello")}, monitor.ExitMonitor, "", "guest memory"},
			{[]string{"run", be, filepath.Join(root, "Makefile")}, monitor.ExitMonitor, "", "invalid guest ELF"},
			{[]string{"run", be, "/nonexistent.elf"}, monitor.ExitMonitor, "", "no such file"},
		}
		for _, c := range cases {
			t.Run(strings.Join(c.args[1:], " "), func(t *testing.T) {
				code, stdout, stderr := tender(t, c.args...)
				assert.Equal(t, c.code, code, "stderr: %s", stderr)
				assert.Contains(t, stdout, c.stdout)
				assert.Contains(t, stderr, c.stderr)
			})
		}
	}
}

func TestCLIUsage(t *testing.T) {
	for _, args := range [][]string{{"run"}, {"run", "--bogus", "x.elf"}, {"frobnicate"}, {"run", "--mem=0", "x.elf"}} {
		code, _, stderr := tender(t, args...)
		assert.Equal(t, monitor.ExitUsage, code, "%v: %s", args, stderr)
		assert.NotEmpty(t, stderr)
	}
	code, stdout, _ := tender(t, "run", "--help")
	assert.Equal(t, 0, code)
	assert.Contains(t, stdout, "--timeout")
}

func TestCLIStats(t *testing.T) {
	code, _, stderr := tender(t, "run", "--backend=process", "--stats", guestPath("hello"))
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, stderr, `"first_hypercall_us"`)
	assert.Contains(t, stderr, `"exit":1`)
}
