package tests

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tendervm/tender/internal/cli"
	"github.com/tendervm/tender/monitor"
	"github.com/tendervm/tender/monitor/process"
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
// kind of outcome, and that the console output before a fault, an abort or
// a stop reaches stdout whole (each guest's own first lines), and nothing
// else does.
func TestCLIExitContract(t *testing.T) {
	// flood's output up to the 100-byte limit.
	flood := "flood: writing lines forever\n"
	for n := 0; len(flood) < 100; n++ {
		flood += fmt.Sprintf("flood %d\n", n)
	}
	flood = flood[:100]
	for _, b := range backends(t) {
		be := "--backend=" + string(b)
		cases := []struct {
			args   []string
			code   int
			stdout string // exactly
			stderr string // contained
		}{
			{[]string{"run", be, guestPath("hello")}, 0, "hello from tender guest\n", ""},
			{[]string{"run", be, guestPath("exit"), "42"}, 42, "", ""},
			{[]string{"run", be, guestPath("exit"), "--not-a-flag"}, 2, "usage: exit [STATUS]\n", ""},
			{[]string{"run", be, guestPath("abort")}, monitor.ExitAborted, "", "guest aborted: deliberate abort from guest"},
			{[]string{"run", be, guestPath("nullderef")}, monitor.ExitCrashed, "nullderef: reading address 0\n", "#PF page fault at rip 0x"},
			{[]string{"run", be, guestPath("invalidop")}, monitor.ExitCrashed, "invalidop: executing ud2\n", "#UD invalid opcode"},
			{[]string{"run", be, guestPath("wildptr")}, monitor.ExitProtocol, "wildptr: console write from 0xffff00000000\n", "outside guest memory"},
			{[]string{"run", be, guestPath("portio"), "repoutsl4"}, monitor.ExitProtocol, "portio: repoutsl4 to port 0x503\n", "4-byte outs on port 0x503 is not a hypercall"},
			{[]string{"run", be, guestPath("syscall")}, monitor.ExitCrashed, "syscall: getpid through syscall\n", "guest attempted host system call 39"},
			{[]string{"run", be, "--timeout=500ms", guestPath("spin")}, monitor.ExitTimeout, "spin: looping forever\n", "guest stopped: timeout"},
			{[]string{"run", be, "--console-limit=100", guestPath("flood")}, monitor.ExitProtocol, flood, "console output limit of 100 bytes"},
			{[]string{"run", be, "--mem=5", guestPath("hello")}, monitor.ExitUsage, "", "-mem 5: want an even number"},
			{[]string{"run", be, "--mem=4096", guestPath("hello")}, monitor.ExitUsage, "", "-mem 4096: want an even number of MiB from 4 to 3072 (4096 for a Solo5 guest)"},
			{[]string{"run", be, "--mem=4098", solo5GuestPath("hello")}, monitor.ExitUsage, "", "-mem 4098: want an even number"},
			{[]string{"run", be, filepath.Join(root, "Makefile")}, monitor.ExitMonitor, "", "invalid guest ELF"},
			{[]string{"run", be, "/nonexistent.elf"}, monitor.ExitMonitor, "", "no such file"},
		}
		for _, c := range cases {
			t.Run(strings.Join(c.args[1:], " "), func(t *testing.T) {
				code, stdout, stderr := tender(t, c.args...)
				assert.Equal(t, c.code, code, "stderr: %s", stderr)
				assert.Equal(t, c.stdout, stdout)
				assert.Contains(t, stderr, c.stderr)
			})
		}
	}
}

// TestCLIBadValues: a bad flag value is a usage error (254) that says what
// was wanted, before anything runs, and an ELF that is no guest is named in
// its error.
func TestCLIBadValues(t *testing.T) {
	hostProgram := filepath.Join(root, "bin", "guest", "host", "compute_host") // static, no guest
	for _, c := range []struct {
		args   []string
		code   int
		stderr string // contained
	}{
		{[]string{"run", "-backend=foo", guestPath("hello")}, monitor.ExitUsage, `-backend "foo": want kvm, process or auto`},
		{[]string{"run", "-timeout=-1s", guestPath("hello")}, monitor.ExitUsage, "-timeout -1s: want 0 (no limit) or more"},
		{[]string{"run", "-timeout=5", guestPath("hello")}, monitor.ExitUsage, `invalid value "5" for flag -timeout: want a duration with its unit`},
		{[]string{"run", "-mem=64M", guestPath("hello")}, monitor.ExitUsage, `invalid value "64M" for flag -mem: want a whole number`},
		{[]string{"run", hostProgram}, monitor.ExitMonitor, hostProgram + ": invalid guest ELF: no Tender ABI note"},
		{[]string{"invoke", "-timeout=0s", guestPath("fn_upper")}, monitor.ExitUsage, "-timeout 0s: want a deadline of more than 0"},
		{[]string{"invoke", "-backend=foo", guestPath("fn_upper")}, monitor.ExitUsage, `-backend "foo": want kvm, process or auto`},
		{[]string{"invoke", hostProgram}, monitor.ExitMonitor, hostProgram + ": invalid guest ELF"},
		{[]string{"serve", "-prewarm=100", guestPath("fn_upper")}, monitor.ExitUsage, "-prewarm 100: more than -max-instances 64"},
		{[]string{"serve", "-max-instances=0", guestPath("fn_upper")}, monitor.ExitUsage, "-max-instances 0: want 1 or more"},
		{[]string{"serve", "-timeout=-2s", guestPath("fn_upper")}, monitor.ExitUsage, "-timeout -2s: want a deadline of more than 0"},
		{[]string{"serve", "-mode=cold", "-prewarm=1", guestPath("fn_upper")}, monitor.ExitUsage, "a cold pool keeps no instances to prewarm"},
		{[]string{"help", "run"}, 0, "usage: tender run [flags] GUEST.elf"},
		{[]string{"help", "serve"}, 0, "usage: tender serve [flags] FN.elf"},
		{[]string{"run", "-h"}, 0, "-timeout duration\n"},
		{[]string{"invoke", "-h"}, 0, "(default 10s)"},
		{[]string{"serve", "-h"}, 0, "-mem uint\n"},
	} {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			code, _, stderr := tender(t, c.args...)
			assert.Equal(t, c.code, code, "stderr: %s", stderr)
			assert.Contains(t, stderr, c.stderr)
			assert.NotContains(t, stderr, "panic")
		})
	}
}

// TestCLIServeNotAFunction: tender serve boots an instance before it listens,
// so a guest that is no function fails its start (242), with a hint, rather
// than every request; -mode cold, which keeps no instance, starts.
func TestCLIServeNotAFunction(t *testing.T) {
	for _, b := range backends(t) {
		code, _, stderr := tender(t, "serve", "-backend="+string(b), "-listen=127.0.0.1:0", guestPath("hello"))
		assert.Equal(t, monitor.ExitProtocol, code, "%s: %s", b, stderr)
		assert.Contains(t, stderr, "guest exited with status 0 before taking a request (a function loops on fn_next", b)
	}
}

// TestSolo5CLIMemory: `tender run --mem=4096` boots a Solo5 guest with 4 GiB
// (its stack at the top of the 32-bit range), on each backend as a subtest:
// the emulated-KVM run keeps the KVM one only (tests/kvm-in-qemu, whose
// kernel oopses on such a guest process).
func TestSolo5CLIMemory(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(string(b), func(t *testing.T) {
			code, stdout, stderr := tender(t, "run", "--backend="+string(b), "--mem=4096", solo5GuestPath("hello"), "mem")
			assert.Equal(t, 0, code, "stderr: %s", stderr)
			assert.Equal(t, "Hello, Solo5 from tender! cmdline: mem\nmem_size 4294967296, stack near 4293918720\nSUCCESS\n", stdout)
		})
	}
}

// TestTenderLinksNoCgo keeps bin/tender free of package net and cgo: net's
// resolver links cgo whenever cgo is enabled (a plain `go build` on a
// machine with gcc), and a cgo program's threads start through glibc, which
// costs start-up time on every `tender run` and needs a wider seccomp list
// (docs/security.md).
func TestTenderLinksNoCgo(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no Go toolchain here (the emulated-KVM machine runs test binaries only)")
	}
	cmd := exec.Command("go", "list", "-deps", "./cmd/tender")
	cmd.Dir = root
	cmd.Env = append(cmd.Environ(), "CGO_ENABLED=1")
	out, err := cmd.Output()
	require.NoError(t, err)
	deps := map[string]bool{}
	for _, d := range strings.Fields(string(out)) {
		deps[d] = true
	}
	assert.True(t, deps["github.com/tendervm/tender/monitor"], "the listing is cmd/tender's")
	assert.False(t, deps["net"], "cmd/tender imports package net")
	assert.False(t, deps["runtime/cgo"], "cmd/tender links cgo")
}

func TestCLIUsage(t *testing.T) {
	for _, args := range [][]string{{"run"}, {"run", "--bogus", "x.elf"}, {"frobnicate"}, {"run", "--mem=0", "x.elf"}} {
		code, _, stderr := tender(t, args...)
		assert.Equal(t, monitor.ExitUsage, code, "%v: %s", args, stderr)
		assert.NotEmpty(t, stderr)
	}
	code, _, stderr := tender(t, "run", "-h")
	assert.Equal(t, 0, code)
	assert.Contains(t, stderr, "-timeout")
	code, stdout, _ := tender(t, "help")
	assert.Equal(t, 0, code)
	for _, c := range []string{"run", "invoke", "serve"} {
		assert.Contains(t, stdout, "  "+c+" ")
	}
}

// TestCLIInvoke runs one invocation per mode through `tender invoke`.
func TestCLIInvoke(t *testing.T) {
	for _, b := range backends(t) {
		for _, mode := range []string{"cold", "warm", "fresh"} {
			if mode == "fresh" && b == monitor.BackendProcess && process.CanTrack() != nil {
				continue // the process backend refuses fresh instances before Linux 6.7
			}
			// Confined before the guest boots: a fresh guest process seals
			// its template under the monitor's filter.
			cmd := exec.Command(filepath.Join(root, "bin", "tender"), "invoke", "-backend="+string(b), "-mode="+mode, guestPath("fn_upper"))
			cmd.Stdin = strings.NewReader("hello, tender")
			out, err := cmd.Output()
			require.NoError(t, err, "%s %s", b, mode)
			assert.Equal(t, "HELLO, TENDER", string(out))
		}
		cmd := exec.Command(filepath.Join(root, "bin", "tender"), "invoke", "-backend="+string(b), guestPath("fn_fault"))
		cmd.Stdin = strings.NewReader("fault")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		var ee *exec.ExitError
		require.ErrorAs(t, err, &ee)
		assert.Equal(t, monitor.ExitCrashed, ee.ExitCode())
		assert.Contains(t, stderr.String(), "#PF page fault")
		cmd = exec.Command(filepath.Join(root, "bin", "tender"), "invoke", "-backend="+string(b), "-timeout=200ms", guestPath("fn_spin"))
		cmd.Stdin = strings.NewReader("spin")
		err = cmd.Run()
		require.ErrorAs(t, err, &ee)
		assert.Equal(t, monitor.ExitTimeout, ee.ExitCode())
	}
}

// TestCLISolo5Pool: `tender invoke` in every mode and `tender serve` refuse
// a Solo5 guest, which has no fn_next, with a monitor error (255) that says
// so, before anything is confined: an instance booted under the filter
// died with 244, and serve did so at its first request.
func TestCLISolo5Pool(t *testing.T) {
	const want = "tender: monitor: a Solo5 guest serves no function calls (it has no fn_next): run it with tender run, not in a pool\n"
	for _, b := range backends(t) {
		for _, mode := range []string{"cold", "warm", "fresh"} {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			cmd := exec.CommandContext(ctx, filepath.Join(root, "bin", "tender"), "invoke", "-backend="+string(b), "-mode="+mode, solo5GuestPath("time"))
			cmd.Stdin = strings.NewReader("x")
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			cancel()
			assert.Equal(t, monitor.ExitMonitor, exitStatus(err), "invoke %s %s: stderr %q", b, mode, stderr.String())
			assert.Equal(t, want, stderr.String(), "invoke %s %s", b, mode)
			assert.Empty(t, stdout.String(), "invoke %s %s", b, mode)
		}
		// serve stops before it listens, instead of serving a pool whose
		// first instance ends it.
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		cmd := exec.CommandContext(ctx, filepath.Join(root, "bin", "tender"), "serve", "-backend="+string(b), "-listen=127.0.0.1:0", solo5GuestPath("time"))
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		cancel()
		assert.Equal(t, monitor.ExitMonitor, exitStatus(err), "serve %s: stderr %q", b, stderr.String())
		assert.Equal(t, want, stderr.String(), "serve %s", b)
	}
}

// exitStatus is the exit status of a finished command, -1 if it was killed
// (or did not start).
func exitStatus(err error) int {
	var ee *exec.ExitError
	if err == nil {
		return 0
	}
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return -1
}

func TestCLIStats(t *testing.T) {
	for _, b := range backends(t) {
		code, stdout, stderr := tender(t, "run", "--backend="+string(b), "--stats", guestPath("hello"))
		require.Equal(t, 0, code, "%s: %s", b, stderr)
		assert.Equal(t, "hello from tender guest\n", stdout, b)
		assert.Contains(t, stderr, `"first_hypercall_us"`, b)
		assert.Contains(t, stderr, `"exit":1`, b)
		var st struct {
			Phases map[string]float64 `json:"phases_us"`
		}
		require.NoError(t, json.Unmarshal([]byte(stderr), &st), stderr)
		for _, k := range []string{"load", "vm", "clock", "ready", "first_exit"} {
			assert.Positive(t, st.Phases[k], "%s: phases_us.%s", b, k)
		}
	}
}

// TestCLIServe starts `tender serve` on a free loopback port, invokes the
// function over HTTP, and stops it with SIGTERM while a request is in flight:
// that request is still answered and the server exits 0.
func TestCLIServe(t *testing.T) {
	for _, b := range backends(t) {
		// No drain delay: the listener closes at once, so the server's
		// shutdown itself must wait for the request in flight.
		cmd := exec.Command(filepath.Join(root, "bin", "tender"), "serve", "-backend="+string(b),
			"-listen=127.0.0.1:0", "-timeout=2s", "-drain-delay=0", guestPath("fn_spin"))
		logs, err := cmd.StderrPipe()
		require.NoError(t, err)
		require.NoError(t, cmd.Start())
		done := make(chan error, 1)
		lines := bufio.NewScanner(logs)
		var addr string
		var early []string
		for lines.Scan() {
			var l struct{ Msg, Addr string }
			if json.Unmarshal(lines.Bytes(), &l) == nil && l.Msg == "serving" {
				addr = l.Addr
				break
			}
			early = append(early, lines.Text())
		}
		require.NotEmpty(t, addr, "%s: no serving line; stderr:\n%s", b, strings.Join(early, "\n"))
		go func() {
			for lines.Scan() {
			}
			done <- cmd.Wait()
		}()
		url := "http://" + addr
		resp, err := http.Post(url+"/invoke", "application/octet-stream", strings.NewReader("ping"))
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		assert.Equal(t, http.StatusOK, resp.StatusCode)
		assert.Equal(t, "ping", string(body))

		// A request the guest spins on until its 300 ms deadline, and
		// SIGTERM while it is in flight.
		answered := make(chan int, 1)
		go func() {
			req, _ := http.NewRequest(http.MethodPost, url+"/invoke", strings.NewReader("spin"))
			req.Header.Set("Tender-Timeout", "300ms")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				answered <- 0
				return
			}
			resp.Body.Close()
			answered <- resp.StatusCode
		}()
		// In flight: the server has taken the warm instance for it.
		require.Eventually(t, func() bool {
			return strings.Contains(scrape(url), "tender_instances{state=\"idle\"} 0\n")
		}, 20*time.Second, 5*time.Millisecond, "%s: the spin request never took the instance", b)
		require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
		assert.Equal(t, http.StatusGatewayTimeout, <-answered, "the in-flight request is answered")
		select {
		case err := <-done:
			assert.NoError(t, err, "serve exits 0 after draining")
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			t.Fatal("serve did not stop")
		}
	}
}

// scrape returns the /metrics text of the server at url, "" if it cannot be
// had. It keeps no connection, nor takes one another request could use.
func scrape(url string) string {
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get(url + "/metrics")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestCLICPUIDCache runs `tender run` on KVM with its CPUID cache in a
// directory of the test's: the first run writes the file (in a directory it
// makes private), the next reads it without rewriting it, a cache file cut
// short is replaced by a good one, and a file that is no cache is left
// alone; every run boots its guest.
func TestCLICPUIDCache(t *testing.T) {
	if !slices.Contains(backends(t), monitor.BackendKVM) {
		t.Skip("no KVM")
	}
	path := filepath.Join(t.TempDir(), "tender", "kvm-cpuid")
	run := func() {
		t.Helper()
		cmd := exec.Command(filepath.Join(root, "bin", "tender"), "run", guestPath("hello"))
		cmd.Env = append(os.Environ(), cli.CPUIDCacheEnv+"="+path)
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s", out)
		require.Equal(t, "hello from tender guest\n", string(out))
	}
	stat := func() os.FileInfo {
		t.Helper()
		st, err := os.Stat(path)
		require.NoError(t, err)
		return st
	}
	run()
	first := stat()
	assert.Equal(t, os.FileMode(0o600), first.Mode().Perm())
	dir, err := os.Stat(filepath.Dir(path))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o700), dir.Mode().Perm())
	assert.Zero(t, (first.Size()-96)%40, "a header and whole entries")

	run()
	assert.True(t, os.SameFile(first, stat()), "read, not rewritten")

	good, err := os.ReadFile(path)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, good[:100], 0o600)) // cut short
	run()
	again := stat()
	assert.False(t, os.SameFile(first, again), "replaced")
	assert.Equal(t, first.Size(), again.Size())

	// A file that is no CPUID cache stays as it is, and the guest runs.
	require.NoError(t, os.WriteFile(path, []byte("not a CPUID table"), 0o600))
	run()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, "not a CPUID table", string(b))
}

// TestReadmeGuest builds the function of the README's "Writing a guest" with
// `make guest` from a directory outside the repository and invokes it, as the
// README shows.
func TestReadmeGuest(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	require.NoError(t, err)
	_, section, ok := strings.Cut(string(readme), "\n## Writing a guest\n")
	require.True(t, ok, "README.md has no \"Writing a guest\" section")
	_, code, ok := strings.Cut(section, "```c\n")
	require.True(t, ok, "no C block in the section")
	code, _, ok = strings.Cut(code, "```")
	require.True(t, ok)
	dir := t.TempDir()
	src, elf := filepath.Join(dir, "fn_reverse.c"), filepath.Join(dir, "fn_reverse.elf")
	require.NoError(t, os.WriteFile(src, []byte(code), 0o644))
	out, err := exec.Command("make", "-s", "-C", root, "guest", "SRC="+src, "OUT="+elf).CombinedOutput()
	require.NoError(t, err, "%s", out)
	for _, b := range backends(t) {
		cmd := exec.Command(filepath.Join(root, "bin", "tender"), "invoke", "-backend="+string(b), elf)
		cmd.Stdin = strings.NewReader("hello")
		rep, err := cmd.Output()
		require.NoError(t, err, b)
		assert.Equal(t, "olleh", string(rep), b)
	}
	out, err = exec.Command("make", "-s", "-C", root, "guest").CombinedOutput()
	assert.Error(t, err, "make guest without SRC")
	assert.Contains(t, string(out), "usage: make guest SRC=")
}

// TestCLIKVMPermission: a user who may not open /dev/kvm is told why and what
// to do (the kvm group, or -backend=process), exit 255.
func TestCLIKVMPermission(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root, to run tender as another user")
	}
	if st, err := os.Stat("/dev/kvm"); err != nil || st.Mode().Perm()&0o006 != 0 {
		t.Skip("no /dev/kvm, or one every user may open")
	}
	cmd := exec.Command(filepath.Join(root, "bin", "tender"), "run", guestPath("hello"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	cmd.Env = append(os.Environ(), "TENDER_CPUID_CACHE=")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	require.True(t, errors.As(err, &ee), "%v: %s", err, out)
	assert.Equal(t, monitor.ExitMonitor, ee.ExitCode())
	assert.Equal(t, "tender: KVM is not available: open /dev/kvm: permission denied\n"+
		"tender: /dev/kvm is usually open to the kvm group: add your user to it (then log in again)\n"+
		"tender: without KVM, -backend=process runs guests as confined processes\n", string(out))
}
