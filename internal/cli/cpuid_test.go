package cli

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// cpuidChildEnv makes the test binary print CPUIDCache() and exit, so that
// TestCPUIDCache sees it for a user other than its own.
const cpuidChildEnv = "TENDER_TEST_CPUID_CACHE_CHILD"

// TestCPUIDCache: as the README and docs/security.md say,
// TENDER_CPUID_CACHE names the cache file, empty turns the cache off, and
// unset it is /run/tender/kvm-cpuid for root and
// $XDG_RUNTIME_DIR/tender/kvm-cpuid for other users (none without it).
// Run as root, the test also runs itself as nobody for the second case.
func TestCPUIDCache(t *testing.T) {
	if os.Getenv(cpuidChildEnv) == "1" {
		fmt.Print(CPUIDCache())
		os.Exit(0)
	}
	t.Setenv("XDG_RUNTIME_DIR", "/xdg/run")
	t.Setenv(CPUIDCacheEnv, "")
	assert.Equal(t, "", CPUIDCache(), "empty: off")
	t.Setenv(CPUIDCacheEnv, "/some/where/cpuid")
	assert.Equal(t, "/some/where/cpuid", CPUIDCache())

	os.Unsetenv(CPUIDCacheEnv) // t.Setenv puts it back
	if os.Geteuid() != 0 {
		assert.Equal(t, "/xdg/run/tender/kvm-cpuid", CPUIDCache())
		os.Unsetenv("XDG_RUNTIME_DIR")
		assert.Equal(t, "", CPUIDCache(), "no XDG_RUNTIME_DIR: none")
		t.Skip("not root: the root default is not checked")
	}
	assert.Equal(t, "/run/tender/kvm-cpuid", CPUIDCache())

	// As nobody, from a copy of the test binary nobody may run.
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} { // both made 0700
		require.NoError(t, os.Chmod(d, 0o755))
	}
	exe, err := os.Executable()
	require.NoError(t, err)
	src, err := os.Open(exe)
	require.NoError(t, err)
	defer src.Close()
	bin := filepath.Join(dir, "cli.test")
	dst, err := os.OpenFile(bin, os.O_CREATE|os.O_WRONLY, 0o755)
	require.NoError(t, err)
	_, err = io.Copy(dst, src)
	require.NoError(t, err)
	require.NoError(t, dst.Close())
	child := func(env ...string) string {
		cmd := exec.Command(bin, "-test.run=^TestCPUIDCache$")
		cmd.Dir = dir
		cmd.Env = append([]string{cpuidChildEnv + "=1", "PATH=/usr/bin:/bin"}, env...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, err := cmd.Output()
		require.NoError(t, err, "%s", out)
		return string(out)
	}
	assert.Equal(t, "/xdg/run/tender/kvm-cpuid", child("XDG_RUNTIME_DIR=/xdg/run"))
	assert.Equal(t, "", child(), "no XDG_RUNTIME_DIR: none")
	assert.Equal(t, "/elsewhere", strings.TrimSpace(child("XDG_RUNTIME_DIR=/xdg/run", CPUIDCacheEnv+"=/elsewhere")))
}
