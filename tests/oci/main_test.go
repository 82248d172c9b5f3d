// Package oci_test drives bin/tender-oci as containerd does: directly
// through its command line, and through a private containerd (`ctr run
// --runc-binary`) that the tests start and stop.
package oci_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/stretchr/testify/require"
)

// root is the repository root, where `make` puts bin/.
var root = func() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(filepath.Dir(file)))
}()

// tenderOCI is the runtime under test.
var tenderOCI = filepath.Join(root, "bin", "tender-oci")

// TestMain builds tender-oci and the guests once, so that `go test` works on
// a fresh checkout as well as under `make test`.
func TestMain(m *testing.M) {
	cmd := exec.Command("make", "-s", "-C", root, "all")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "tests/oci: `make all` failed:", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

func guestPath(name string) string { return filepath.Join(root, "bin", "guest", name+".elf") }

// rootfs makes a root filesystem holding the named guests as /NAME.elf.
func rootfs(t testing.TB, guests ...string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "rootfs")
	require.NoError(t, os.Mkdir(dir, 0o755))
	for _, g := range guests {
		b, err := os.ReadFile(guestPath(g))
		require.NoError(t, err)
		// A Solo5 guest ("solo5/hello") keeps its directory.
		require.NoError(t, os.MkdirAll(filepath.Dir(filepath.Join(dir, g)), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(dir, g+".elf"), b, 0o755))
	}
	return dir
}

// bundle makes an OCI bundle around rootfs running args, with annotations
// and a new network namespace, as `runc spec` would.
func bundle(t testing.TB, rootfs string, args []string, annotations map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	s := specs.Spec{
		Version:     specs.Version,
		Process:     &specs.Process{Args: args, Cwd: "/", Env: []string{"PATH=/bin"}},
		Root:        &specs.Root{Path: rootfs},
		Annotations: annotations,
		Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{
			{Type: specs.PIDNamespace}, {Type: specs.NetworkNamespace}, {Type: specs.MountNamespace},
		}},
	}
	b, err := json.Marshal(s)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "config.json"), b, 0o644))
	return dir
}

// brokenGuest writes a copy of hello.elf whose entry point lies outside its
// code: it keeps tender's ABI note, so it is a tender guest that does not
// load.
func brokenGuest(t testing.TB, dir string) {
	t.Helper()
	b, err := os.ReadFile(guestPath("hello"))
	require.NoError(t, err)
	copy(b[24:32], []byte{0x50, 0, 0, 0, 0, 0, 0, 0}) // e_entry
	require.NoError(t, os.WriteFile(filepath.Join(dir, "broken.elf"), b, 0o755))
}

// staticC compiles a static C program that prints msg and exits with
// status: a container that is no tender guest.
func staticC(t testing.TB, dir, msg string, status int) {
	t.Helper()
	src := filepath.Join(t.TempDir(), "main.c")
	require.NoError(t, os.WriteFile(src, fmt.Appendf(nil, "#include <stdio.h>\nint main(void){puts(%q);return %d;}\n", msg, status), 0o644))
	out, err := exec.Command("gcc", "-static", "-O2", "-o", filepath.Join(dir, "hello"), src).CombinedOutput()
	require.NoError(t, err, "gcc -static: %s", out)
}
