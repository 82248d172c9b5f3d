package oci_test

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// runtimeCLI runs tender-oci with a private --root and a JSON --log, as
// containerd's shim does.
type runtimeCLI struct {
	root, log string
}

func newRuntime(t *testing.T) *runtimeCLI {
	dir := t.TempDir()
	return &runtimeCLI{root: filepath.Join(dir, "root"), log: filepath.Join(dir, "log.json")}
}

// run runs tender-oci with stdout as the container's output when set, and
// returns its stdout, stderr and error. A container's process inherits
// create's stdio: give create a file, not a pipe that Run would wait on.
func (r *runtimeCLI) run(t *testing.T, out *os.File, args ...string) (string, string, error) {
	t.Helper()
	cmd := exec.Command(tenderOCI, append([]string{"--root", r.root, "--log", r.log, "--log-format", "json"}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if out != nil {
		cmd.Stdout, cmd.Stderr = out, out
	}
	// Bounded all the same: a pipe held by a container's process must fail
	// the test, not hang it.
	cmd.WaitDelay = 10 * time.Second
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

func (r *runtimeCLI) state(t *testing.T, id string) specs.State {
	t.Helper()
	out, stderr, err := r.run(t, nil, "state", id)
	require.NoError(t, err, stderr)
	var s specs.State
	require.NoError(t, json.Unmarshal([]byte(out), &s), out)
	return s
}

// lastError is the message of the last error line of the JSON log.
func (r *runtimeCLI) lastError(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(r.log)
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	var e struct{ Level, Msg string }
	require.NoError(t, json.Unmarshal([]byte(lines[len(lines)-1]), &e), "log line %q", lines[len(lines)-1])
	assert.Equal(t, "error", e.Level)
	return e.Msg
}

// noContainers checks that nothing of any container is left under --root.
func (r *runtimeCLI) noContainers(t *testing.T) {
	t.Helper()
	entries, err := os.ReadDir(r.root)
	if !os.IsNotExist(err) {
		require.NoError(t, err)
	}
	assert.Empty(t, entries, "state directories left under --root")
}

// TestLifecycle walks a guest through the OCI states: after create it is
// created and has not run (its console is silent), after start it runs,
// SIGKILL stops it, delete removes it.
func TestLifecycle(t *testing.T) {
	r := newRuntime(t)
	b := bundle(t, rootfs(t, "spin"), []string{"/spin.elf"}, map[string]string{"k": "v"})
	out, err := os.Create(filepath.Join(t.TempDir(), "console"))
	require.NoError(t, err)
	defer out.Close()
	pidFile := filepath.Join(t.TempDir(), "pid")
	_, _, err = r.run(t, out, "create", "--bundle", b, "--pid-file", pidFile, "c1")
	require.NoError(t, err)

	s := r.state(t, "c1")
	assert.Equal(t, specs.StateCreated, s.Status)
	assert.Equal(t, "c1", s.ID)
	assert.Equal(t, b, s.Bundle)
	assert.Equal(t, map[string]string{"k": "v"}, s.Annotations)
	pid, err := os.ReadFile(pidFile)
	require.NoError(t, err)
	assert.Equal(t, string(pid), strings.TrimSpace(string(pid)))
	assert.Equal(t, string(pid), itoa(s.Pid))
	cmdline, err := os.ReadFile("/proc/" + string(pid) + "/cmdline")
	require.NoError(t, err)
	assert.Contains(t, string(cmdline), "__monitor")
	// linux.namespaces has a network entry without a path: a new one.
	ns, err := os.Readlink("/proc/" + string(pid) + "/ns/net")
	require.NoError(t, err)
	host, err := os.Readlink("/proc/self/ns/net")
	require.NoError(t, err)
	assert.NotEqual(t, host, ns, "the container's process is in the host's network namespace")
	time.Sleep(100 * time.Millisecond)
	console := func() string { b, _ := os.ReadFile(out.Name()); return string(b) }
	assert.Empty(t, console(), "the guest ran before start")

	_, stderr, err := r.run(t, nil, "start", "c1")
	require.NoError(t, err, stderr)
	assert.Equal(t, specs.StateRunning, r.state(t, "c1").Status)
	require.Eventually(t, func() bool { return strings.Contains(console(), "spin: looping forever") }, 10*time.Second, 10*time.Millisecond)

	_, _, err = r.run(t, nil, "start", "c1")
	assert.ErrorContains(t, err, "exit status 1")
	assert.Contains(t, r.lastError(t), "cannot start container c1: it is running, not created")
	_, _, err = r.run(t, nil, "delete", "c1")
	assert.ErrorContains(t, err, "exit status 1")
	assert.Contains(t, r.lastError(t), "cannot delete container c1 that is not stopped: running")

	_, stderr, err = r.run(t, nil, "kill", "c1", "KILL")
	require.NoError(t, err, stderr)
	require.Eventually(t, func() bool { return r.state(t, "c1").Status == specs.StateStopped }, 10*time.Second, 10*time.Millisecond)
	assert.Zero(t, r.state(t, "c1").Pid)
	_, stderr, err = r.run(t, nil, "kill", "c1", "TERM")
	assert.ErrorContains(t, err, "exit status 1", stderr)
	assert.Contains(t, r.lastError(t), "kill c1: container not running")

	_, stderr, err = r.run(t, nil, "delete", "c1")
	require.NoError(t, err, stderr)
	r.noContainers(t)
	// Gone from tender-oci, the ID goes to runc, which has no such
	// container either.
	_, stderr, err = r.run(t, nil, "state", "c1")
	assert.ErrorContains(t, err, "exit status 1")
	assert.Contains(t, stderr, "does not exist")
}

// TestDeleteCreated: deleting a container that was created but never
// started kills its process, as runc does, and the guest never runs.
func TestDeleteCreated(t *testing.T) {
	r := newRuntime(t)
	b := bundle(t, rootfs(t, "hello"), []string{"/hello.elf"}, nil)
	out, err := os.Create(filepath.Join(t.TempDir(), "console"))
	require.NoError(t, err)
	defer out.Close()
	_, _, err = r.run(t, out, "create", "--bundle", b, "c2")
	require.NoError(t, err)
	s := r.state(t, "c2")
	require.Equal(t, specs.StateCreated, s.Status)
	_, stderr, err := r.run(t, nil, "delete", "c2")
	require.NoError(t, err, stderr)
	r.noContainers(t)
	_, err = os.Stat("/proc/" + itoa(s.Pid) + "/cmdline")
	if err == nil {
		// A zombie until its parent (init here) reaps it.
		st, _ := os.ReadFile("/proc/" + itoa(s.Pid) + "/stat")
		assert.Contains(t, string(st), ") Z ", "the created container's process survived delete")
	}
	b2, _ := os.ReadFile(out.Name())
	assert.NotContains(t, string(b2), "hello from tender guest")
}

// TestBadBundles: each mistake is refused by create with a clear error in
// the JSON log, and leaves nothing under --root.
func TestBadBundles(t *testing.T) {
	noRootfs := bundle(t, filepath.Join(t.TempDir(), "missing"), []string{"/hello.elf"}, nil)
	fs := rootfs(t, "hello", "solo5/time")
	brokenGuest(t, fs)
	cases := []struct {
		name, bundle, want string
	}{
		{"missing rootfs", noRootfs, "rootfs: stat"},
		{"broken ELF", bundle(t, fs, []string{"/broken.elf"}, nil), "/broken.elf: invalid guest ELF: entry point 0x50 is not inside an executable segment"},
		{"bad annotation", bundle(t, fs, []string{"/hello.elf"}, map[string]string{"dev.tender.timeout": "soon"}), `annotation dev.tender.timeout="soon": want a duration`},
		{"annotated but no guest", bundle(t, fs, []string{"/nothing"}, map[string]string{"dev.tender.memory": "64"}), "has tender annotations but /nothing in its rootfs is no tender guest"},
		// No pool can serve it: refused by create, not by tender-serve
		// once the container has started.
		{"Solo5 guest served", bundle(t, fs, []string{"/solo5/time.elf"}, map[string]string{"dev.tender.mode": "warm"}),
			"/solo5/time.elf is a Solo5 guest: it serves no function calls (no fn_next); run it with dev.tender.mode=run"},
		{"guest too large for its memory", bundle(t, fs, []string{"/hello.elf"}, map[string]string{"dev.tender.memory": "4"}), ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := newRuntime(t)
			out, err := os.Create(filepath.Join(t.TempDir(), "console"))
			require.NoError(t, err)
			defer out.Close()
			_, _, err = r.run(t, out, "create", "--bundle", c.bundle, "--pid-file", filepath.Join(t.TempDir(), "pid"), "bad")
			if c.want == "" {
				// 4 MiB holds hello: it must be accepted.
				require.NoError(t, err)
				_, _, err = r.run(t, nil, "delete", "--force", "bad")
				require.NoError(t, err)
				r.noContainers(t)
				return
			}
			assert.ErrorContains(t, err, "exit status 1")
			assert.Contains(t, r.lastError(t), c.want)
			console, _ := os.ReadFile(out.Name())
			assert.Contains(t, string(console), c.want, "the error on stderr")
			r.noContainers(t)
		})
	}
}

// TestMemoryLimits: dev.tender.memory takes up to the guest's own limit,
// known once create has read the ELF: 4 GiB for a Solo5 guest, which runs
// with it, 3 GiB for a tender guest, which is refused above that.
func TestMemoryLimits(t *testing.T) {
	fs := rootfs(t, "hello", "solo5/hello")
	r := newRuntime(t)
	out, err := os.Create(filepath.Join(t.TempDir(), "console"))
	require.NoError(t, err)
	defer out.Close()
	b := bundle(t, fs, []string{"/solo5/hello.elf", "mem"}, map[string]string{"dev.tender.memory": "4Gi"})
	_, _, err = r.run(t, out, "create", "--bundle", b, "s5")
	require.NoError(t, err)
	_, stderr, err := r.run(t, nil, "start", "s5")
	require.NoError(t, err, stderr)
	require.Eventually(t, func() bool { return r.state(t, "s5").Status == specs.StateStopped }, 10*time.Second, 10*time.Millisecond)
	console, _ := os.ReadFile(out.Name())
	assert.Contains(t, string(console), "mem_size 4294967296, stack near 4293918720\nSUCCESS\n")
	_, stderr, err = r.run(t, nil, "delete", "s5")
	require.NoError(t, err, stderr)

	for _, mem := range []string{"4Gi", "3074"} {
		b = bundle(t, fs, []string{"/hello.elf"}, map[string]string{"dev.tender.memory": mem})
		_, _, err = r.run(t, out, "create", "--bundle", b, "own")
		assert.ErrorContains(t, err, "exit status 1", mem)
		assert.Contains(t, r.lastError(t), "annotation dev.tender.memory: ", mem)
		assert.Contains(t, r.lastError(t), " MiB: a tender guest takes at most 3072 MiB (a Solo5 guest 4096 MiB)", mem)
	}
	r.noContainers(t)
}

// TestVersionAndFeatures: the commands containerd and tools ask first.
func TestVersionAndFeatures(t *testing.T) {
	r := newRuntime(t)
	out, _, err := r.run(t, nil, "--version")
	require.NoError(t, err)
	assert.Regexp(t, `^tender-oci version \S+\nspec: 1\.`, out)
	out, _, err = r.run(t, nil, "features")
	require.NoError(t, err)
	var f struct {
		OCIVersionMax string `json:"ociVersionMax"`
		Linux         struct{ Namespaces []string }
	}
	require.NoError(t, json.Unmarshal([]byte(out), &f))
	assert.Equal(t, specs.Version, f.OCIVersionMax)
	assert.Equal(t, []string{"network"}, f.Linux.Namespaces)
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestInheritedDescriptors: a descriptor create inherits (the shim's, say)
// does not reach the container's process, so whoever waits for its end of
// a pipe to close is not held for the container's lifetime.
func TestInheritedDescriptors(t *testing.T) {
	r := newRuntime(t)
	b := bundle(t, rootfs(t, "hello"), []string{"/hello.elf"}, nil)
	out, err := os.Create(filepath.Join(t.TempDir(), "console"))
	require.NoError(t, err)
	defer out.Close()
	pr, pw, err := os.Pipe()
	require.NoError(t, err)
	defer pr.Close()
	cmd := exec.Command(tenderOCI, "--root", r.root, "--log", r.log, "create", "--bundle", b, "c3")
	cmd.Stdout, cmd.Stderr = out, out
	// Descriptor 6: above the ones create passes on (3, the guest; 4,
	// create's pipe; 5, a TAP), so that none takes its place.
	null, err := os.Open(os.DevNull)
	require.NoError(t, err)
	defer null.Close()
	cmd.ExtraFiles = []*os.File{null, null, null, pw}
	require.NoError(t, cmd.Run())
	pw.Close()
	defer r.run(t, nil, "delete", "--force", "c3")
	require.Equal(t, specs.StateCreated, r.state(t, "c3").Status)
	eof := make(chan error, 1)
	go func() { _, err := pr.Read(make([]byte, 1)); eof <- err }()
	select {
	case err := <-eof:
		assert.ErrorIs(t, err, io.EOF)
	case <-time.After(5 * time.Second):
		t.Fatal("the container's process holds a pipe create inherited")
	}
}

// TestRunRestoreRefused: run and restore, which tender-oci does not
// implement, refuse a bundle that create would take for a tender guest (a
// guest ELF, or dev.tender.* annotations) instead of handing it to runc,
// wherever --bundle comes from (the flag's forms, or the working
// directory); any other bundle goes to runc with its command line
// unchanged (a stand-in runc in PATH shows it).
func TestRunRestoreRefused(t *testing.T) {
	fakeDir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(fakeDir, "runc"), []byte("#!/bin/sh\necho \"runc got: $*\"\n"), 0o755))
	fs := rootfs(t, "hello")
	require.NoError(t, os.WriteFile(filepath.Join(fs, "app"), []byte("#!/bin/sh\n"), 0o755))
	guest := bundle(t, fs, []string{"/hello.elf"}, nil)
	annotated := bundle(t, fs, []string{"/app"}, map[string]string{"dev.tender.memory": "64"})
	plain := bundle(t, fs, []string{"/app"}, nil)
	r := newRuntime(t)
	run := func(dir string, args ...string) (string, error) {
		cmd := exec.Command(tenderOCI, append([]string{"--root", r.root}, args...)...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "PATH="+fakeDir+":"+os.Getenv("PATH"))
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	cases := []struct {
		name string
		dir  string
		args []string
		want string
	}{
		{"run --bundle", "/", []string{"run", "--bundle", guest, "c"}, "run: not supported for tender guests"},
		{"run -b=", "/", []string{"run", "-d", "-b=" + guest, "c"}, "run: not supported for tender guests"},
		{"run in the bundle", guest, []string{"run", "c"}, "run: not supported for tender guests"},
		{"run annotated", "/", []string{"run", "--pid-file", "/dev/null", "--bundle=" + annotated, "c"}, "run: not supported for tender guests"},
		{"restore", "/", []string{"restore", "--image-path", "/nowhere", "-bundle", guest, "c"}, "restore: not supported for tender guests"},
		{"run plain", "/", []string{"run", "--bundle", plain, "c"}, "runc got: --root " + r.root + " run --bundle " + plain + " c"},
		{"restore plain", plain, []string{"restore", "c"}, "runc got: --root " + r.root + " restore c"},
	}
	for _, c := range cases {
		out, err := run(c.dir, c.args...)
		assert.Contains(t, out, c.want, c.name)
		if strings.HasPrefix(c.want, "runc got") {
			assert.NoError(t, err, c.name)
		} else {
			assert.ErrorContains(t, err, "exit status 1", c.name)
			assert.NotContains(t, out, "runc got", c.name)
		}
	}
	r.noContainers(t)
}

// TestCreateKilled: create killed after starting the container's process
// but before recording it (as go-runc kills it when its context is
// cancelled) leaves no process: the monitor process ends by itself rather
// than wait for a start nobody can give, holding the guest (and a network
// guest's TAP and namespace). The container stays creating, and delete
// removes it.
func TestCreateKilled(t *testing.T) {
	r := newRuntime(t)
	b := bundle(t, rootfs(t, "hello"), []string{"/hello.elf"}, nil)
	out, err := os.Create(filepath.Join(t.TempDir(), "console"))
	require.NoError(t, err)
	defer out.Close()
	cmd := exec.Command(tenderOCI, "--root", r.root, "--log", r.log, "create", "--bundle", b, "ck")
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = append(os.Environ(), "TENDER_OCI_TEST_DIE_BEFORE_RECORD=1")
	err = cmd.Run()
	require.ErrorContains(t, err, "signal: killed")
	console, err := os.ReadFile(out.Name())
	require.NoError(t, err)
	m := regexp.MustCompile(`monitor process (\d+)`).FindStringSubmatch(string(console))
	require.NotNil(t, m, "create's stderr: %s", console)
	dead := func() bool {
		// Gone, or a zombie until init reaps it.
		st, err := os.ReadFile("/proc/" + m[1] + "/stat")
		return err != nil || strings.Contains(string(st), ") Z ")
	}
	assert.Eventually(t, dead, 5*time.Second, 10*time.Millisecond, "the monitor process outlived create")
	if !dead() {
		pid, _ := strconv.Atoi(m[1])
		syscall.Kill(pid, syscall.SIGKILL)
	}
	assert.Equal(t, specs.StateCreating, r.state(t, "ck").Status)
	_, stderr, err := r.run(t, nil, "delete", "ck")
	require.NoError(t, err, stderr)
	r.noContainers(t)
	console, _ = os.ReadFile(out.Name())
	assert.Contains(t, string(console), "create ended before it recorded this process", "the monitor process's message")
	assert.NotContains(t, string(console), "hello from tender guest")
}

// TestStartKilledAfterGoAhead: a start killed once the container's process
// took its go-ahead, before it could remove the FIFO (the test plays that
// start: it reads the go-ahead and leaves), still leaves a running
// container: the process removes the FIFO itself, state says running, and
// another start fails at once instead of waiting out its timeout.
func TestStartKilledAfterGoAhead(t *testing.T) {
	r := newRuntime(t)
	b := bundle(t, rootfs(t, "spin"), []string{"/spin.elf"}, nil)
	out, err := os.Create(filepath.Join(t.TempDir(), "console"))
	require.NoError(t, err)
	defer out.Close()
	_, _, err = r.run(t, out, "create", "--bundle", b, "sk")
	require.NoError(t, err)
	defer r.run(t, nil, "delete", "--force", "sk")
	require.Equal(t, specs.StateCreated, r.state(t, "sk").Status)
	f, err := os.Open(filepath.Join(r.root, "sk", "exec.fifo"))
	require.NoError(t, err)
	_, err = f.Read(make([]byte, 1))
	f.Close()
	require.NoError(t, err)
	console := func() string { b, _ := os.ReadFile(out.Name()); return string(b) }
	require.Eventually(t, func() bool { return strings.Contains(console(), "spin: looping forever") }, 10*time.Second, 10*time.Millisecond)
	assert.Eventually(t, func() bool { return r.state(t, "sk").Status == specs.StateRunning }, 5*time.Second, 10*time.Millisecond)
	t0 := time.Now()
	_, _, err = r.run(t, nil, "start", "sk")
	assert.ErrorContains(t, err, "exit status 1")
	assert.Less(t, time.Since(t0), 10*time.Second, "the second start waited")
	assert.Contains(t, r.lastError(t), "cannot start container sk: it is running, not created")
}
