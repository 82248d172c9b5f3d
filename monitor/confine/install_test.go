package confine

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tendervm/tender/internal/proctest"
	"golang.org/x/sys/unix"

	"github.com/tendervm/tender/monitor"
)

// confined builds testdata/confined, without cgo as tender is: the test
// binary itself links cgo (through testify), whose threads start with calls
// the filter forbids.
var confined = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "confine-test")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "confined")
	cmd := exec.Command("go", "build", "-o", bin, "./testdata/confined")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %w\n%s", err, out)
	}
	return bin, nil
})

func TestMain(m *testing.M) {
	code := m.Run()
	if bin, err := confined(); err == nil {
		os.RemoveAll(filepath.Dir(bin))
	}
	os.Exit(code)
}

// startChild starts testdata/confined with mode.
func startChild(t *testing.T, mode string) (*exec.Cmd, *bufio.Reader, io.WriteCloser, *strings.Builder) {
	t.Helper()
	bin, err := confined()
	require.NoError(t, err)
	cmd := exec.Command(bin, mode)
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())
	return cmd, bufio.NewReader(stdout), stdin, &stderr
}

// threadStatus returns the named field of /proc/PID/task/*/status for each
// thread of pid.
func threadStatus(t *testing.T, pid int, field string) map[string]string {
	t.Helper()
	got, err := proctest.ThreadField(pid, field)
	require.NoError(t, err)
	return got
}

// TestInstall confines a process that keeps the Go runtime busy: it lives
// on, every thread shows the filter and no_new_privs, and it exits normally.
func TestInstall(t *testing.T) {
	cmd, out, in, stderr := startChild(t, "work")
	line, err := out.ReadString('\n')
	require.NoError(t, err, "stderr: %s", stderr)
	require.Equal(t, "ready\n", line)
	seccomp := threadStatus(t, cmd.Process.Pid, "Seccomp")
	require.Greater(t, len(seccomp), 1, "a Go process has several threads")
	for tid, v := range seccomp {
		assert.Equal(t, "2", v, "thread %s", tid)
	}
	for tid, v := range threadStatus(t, cmd.Process.Pid, "NoNewPrivs") {
		assert.Equal(t, "1", v, "thread %s", tid)
	}
	in.Close()
	require.NoError(t, cmd.Wait(), "stderr: %s", stderr)
}

// TestForbiddenCall checks what a violation does: the process ends at once
// with ExitSeccomp and names the call.
func TestForbiddenCall(t *testing.T) {
	for _, tc := range []struct {
		mode string
		nr   int
	}{{"getppid", unix.SYS_GETPPID}, {"socket", unix.SYS_SOCKET}} {
		cmd, out, _, stderr := startChild(t, tc.mode)
		rest, _ := io.ReadAll(out)
		err := cmd.Wait()
		var ee *exec.ExitError
		require.ErrorAs(t, err, &ee, "%s: stdout %q", tc.mode, rest)
		assert.Equal(t, monitor.ExitSeccomp, ee.ExitCode(), "%s: stderr %s", tc.mode, stderr)
		assert.Equal(t, fmt.Sprintf("tender: seccomp: forbidden system call %d\n", tc.nr), stderr.String())
		assert.NotContains(t, string(rest), "still alive")
	}
}
