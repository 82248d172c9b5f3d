package confine

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tendervm/tender/internal/proctest"
	"golang.org/x/sys/unix"

	"github.com/tendervm/tender/monitor"
)

// confined builds testdata/confined with cgo off, as tender is built, or
// on, as a program embedding the monitor may be (its Go runtime then starts
// threads through glibc's pthread_create). The test binary itself may link
// cgo (through testify), so the filter is tried in a program of its own.
var confined = sync.OnceValues(func() (map[bool]string, error) {
	dir, err := os.MkdirTemp("", "confine-test")
	if err != nil {
		return nil, err
	}
	// Open to nobody, whom TestInstallUnprivileged runs them as.
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	bins := map[bool]string{}
	for _, cgo := range []bool{false, true} {
		bin := filepath.Join(dir, fmt.Sprintf("confined-cgo-%v", cgo))
		cmd := exec.Command("go", "build", "-o", bin, "./testdata/confined")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if cgo {
			cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("go build (cgo %v): %w\n%s", cgo, err, out)
		}
		bins[cgo] = bin
	}
	return bins, nil
})

func TestMain(m *testing.M) {
	code := m.Run()
	if bins, err := confined(); err == nil {
		os.RemoveAll(filepath.Dir(bins[false]))
	}
	os.Exit(code)
}

// startChild starts testdata/confined, built without cgo, with mode.
func startChild(t *testing.T, mode string) (*exec.Cmd, *bufio.Reader, io.WriteCloser, *strings.Builder) {
	return startBuild(t, false, mode)
}

// startBuild starts the build of testdata/confined with or without cgo,
// after setup, if any, has seen its command.
func startBuild(t *testing.T, cgo bool, mode string, setup ...func(*exec.Cmd)) (*exec.Cmd, *bufio.Reader, io.WriteCloser, *strings.Builder) {
	t.Helper()
	bins, err := confined()
	require.NoError(t, err)
	cmd := exec.Command(bins[cgo], mode)
	for _, f := range setup {
		f(cmd)
	}
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

// TestInstallCgo confines the cgo build of the same program: its threads,
// started by glibc with every signal blocked, must not make a call the
// filter traps (that is a silent kill by SIGSYS, no report): all 8 are
// started after Install, and it must end normally, 20 times over.
func TestInstallCgo(t *testing.T) {
	for range 20 {
		cmd, out, in, stderr := startBuild(t, true, "work")
		line, err := out.ReadString('\n')
		require.NoError(t, err, "stderr: %s", stderr)
		require.Equal(t, "ready\n", line)
		in.Close()
		require.NoError(t, cmd.Wait(), "stderr: %s", stderr)
	}
}

// TestInstallUnprivileged installs the filter from a goroutine other than
// main's, while others keep the scheduler busy, as a user without
// CAP_SYS_ADMIN (nobody when the test runs as root), 20 times: the kernel
// then takes the filter only from a thread with no_new_privs, so Install
// must set it and install the filter on one thread. Every thread ends with
// both.
func TestInstallUnprivileged(t *testing.T) {
	nobody := func(cmd *exec.Cmd) {
		if os.Geteuid() == 0 {
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		}
	}
	for range 20 {
		cmd, out, in, stderr := startBuild(t, false, "goroutine", nobody)
		line, err := out.ReadString('\n')
		require.NoError(t, err, "stderr: %s", stderr)
		require.Equal(t, "ready\n", line)
		for tid, v := range threadStatus(t, cmd.Process.Pid, "CapEff") {
			require.Equal(t, "0000000000000000", v, "thread %s has capabilities", tid)
		}
		for tid, v := range threadStatus(t, cmd.Process.Pid, "Seccomp") {
			assert.Equal(t, "2", v, "thread %s", tid)
		}
		for tid, v := range threadStatus(t, cmd.Process.Pid, "NoNewPrivs") {
			assert.Equal(t, "1", v, "thread %s", tid)
		}
		in.Close()
		require.NoError(t, cmd.Wait(), "stderr: %s", stderr)
	}
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

// waitExit waits up to 10 s for cmd to end and returns its exit status; a
// process still there then is killed and fails the test.
func waitExit(t *testing.T, cmd *exec.Cmd) int {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatal("the process did not end within 10 s of its SIGSYS")
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	require.NoError(t, err)
	return 0
}

// TestForbiddenCallStderrFull: with stderr a full pipe nobody reads, a
// forbidden call still ends the process at once with ExitSeccomp (the
// message is dropped, not waited on), and the pipe is left blocking as it
// was: its file is shared with whoever gave it.
func TestForbiddenCallStderrFull(t *testing.T) {
	var p [2]int
	require.NoError(t, unix.Pipe2(p[:], unix.O_CLOEXEC))
	pr, pw := os.NewFile(uintptr(p[0]), "stderr read end"), os.NewFile(uintptr(p[1]), "stderr write end")
	defer pr.Close()
	defer pw.Close()
	bins, err := confined()
	require.NoError(t, err)
	cmd := exec.Command(bins[false], "full-stderr")
	cmd.Stderr = pw
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	out := bufio.NewReader(stdout)
	line, err := out.ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "full\n", line)
	assert.Equal(t, monitor.ExitSeccomp, waitExit(t, cmd))
	rest, _ := io.ReadAll(out)
	assert.NotContains(t, string(rest), "still alive")
	fl, err := unix.FcntlInt(uintptr(p[1]), unix.F_GETFL, 0)
	require.NoError(t, err)
	assert.Zero(t, fl&unix.O_NONBLOCK, "the handler left stderr non-blocking")
}

// TestSentSIGSYS: a SIGSYS another process sends (kill -SYS) is not taken
// for a forbidden call: the process says who sent it and ends with
// ExitSeccomp all the same, as SIGSYS ends a process by default.
func TestSentSIGSYS(t *testing.T) {
	cmd, out, in, stderr := startChild(t, "work")
	defer in.Close()
	line, err := out.ReadString('\n')
	require.NoError(t, err, "stderr: %s", stderr)
	require.Equal(t, "ready\n", line)
	require.NoError(t, cmd.Process.Signal(syscall.SIGSYS))
	assert.Equal(t, monitor.ExitSeccomp, waitExit(t, cmd), "stderr: %s", stderr)
	assert.Equal(t, fmt.Sprintf("tender: seccomp: SIGSYS sent by process %d, not by the filter\n", os.Getpid()), stderr.String())
}
