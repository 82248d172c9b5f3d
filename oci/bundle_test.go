package oci

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// writeBundle makes a bundle whose rootfs holds files, running args.
func writeBundle(t *testing.T, args []string, env []string, files map[string][]byte) string {
	t.Helper()
	dir := t.TempDir()
	for name, b := range files {
		p := filepath.Join(dir, "rootfs", name)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, b, 0o755))
	}
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "rootfs"), 0o755))
	s := specs.Spec{Process: &specs.Process{Args: args, Env: env}, Root: &specs.Root{Path: "rootfs"}}
	b, err := json.Marshal(s)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "config.json"), b, 0o644))
	return dir
}

func guestELF(t *testing.T) []byte {
	b, err := os.ReadFile(filepath.Join("..", "bin", "guest", "hello.elf"))
	if err != nil {
		t.Fatalf("bin/guest/hello.elf not built (run make all first): %v", err)
	}
	return b
}

func TestOpenGuest(t *testing.T) {
	elf := guestELF(t)
	cases := []struct {
		name    string
		args    []string
		env     []string
		files   map[string][]byte
		isGuest bool
		path    string
	}{
		{"absolute", []string{"/hello.elf"}, nil, map[string][]byte{"hello.elf": elf}, true, "/hello.elf"},
		{"in PATH", []string{"hello"}, []string{"PATH=/opt/bin"}, map[string][]byte{"opt/bin/hello": elf}, true, "/opt/bin/hello"},
		{"default PATH", []string{"hello"}, nil, map[string][]byte{"usr/bin/hello": elf}, true, "/usr/bin/hello"},
		{"script", []string{"/run.sh"}, nil, map[string][]byte{"run.sh": []byte("#!/bin/sh\n")}, false, "/run.sh"},
		{"missing", []string{"/nothing"}, nil, nil, false, "/nothing"},
	}
	for _, c := range cases {
		b, err := LoadBundle(writeBundle(t, c.args, c.env, c.files))
		require.NoError(t, err, c.name)
		g, err := b.OpenGuest()
		require.NoError(t, err, c.name)
		assert.Equal(t, c.isGuest, g.ELF != nil, c.name)
		assert.Equal(t, c.path, g.Path, c.name)
		g.Close()
	}
}

// TestOpenGuestStaysInRoot: a link to an absolute path or up through ".."
// resolves inside the rootfs, never to the host's file.
func TestOpenGuestStaysInRoot(t *testing.T) {
	elf := guestELF(t)
	host := filepath.Join(t.TempDir(), "guest.elf")
	require.NoError(t, os.WriteFile(host, elf, 0o755))
	for _, target := range []string{host, "../../../../../../" + host} {
		dir := writeBundle(t, []string{"/g"}, nil, nil)
		require.NoError(t, os.Symlink(target, filepath.Join(dir, "rootfs", "g")))
		b, err := LoadBundle(dir)
		require.NoError(t, err)
		g, err := b.OpenGuest()
		require.NoError(t, err)
		assert.Nil(t, g.ELF, "link to %s reached the host's file", target)
		g.Close()
	}
}

func TestLoadBundleErrors(t *testing.T) {
	dir := writeBundle(t, []string{"/x"}, nil, nil)
	require.NoError(t, os.RemoveAll(filepath.Join(dir, "rootfs")))
	_, err := LoadBundle(dir)
	assert.ErrorContains(t, err, "rootfs: stat")
	assert.ErrorIs(t, err, os.ErrNotExist)

	_, err = LoadBundle(t.TempDir())
	assert.ErrorContains(t, err, "config.json: no such file")

	dir = t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{"process":{"args":["/x"]}}`), 0o644))
	_, err = LoadBundle(dir)
	assert.ErrorContains(t, err, "no root.path")
}

// TestOpenGuestNotRegular: an args[0] that is a FIFO or a device node is
// never opened for reading on the host (opening one can block, or act on a
// device): OpenGuest finds no guest and holds no descriptor. A FIFO shows
// it: a non-blocking open for writing fails with ENXIO while no reader has
// it open.
func TestOpenGuestNotRegular(t *testing.T) {
	dir := writeBundle(t, []string{"/fifo"}, nil, nil)
	fifo := filepath.Join(dir, "rootfs", "fifo")
	require.NoError(t, unix.Mkfifo(fifo, 0o600))
	b, err := LoadBundle(dir)
	require.NoError(t, err)
	g, err := b.OpenGuest()
	require.NoError(t, err)
	defer g.Close()
	assert.Nil(t, g.ELF)
	assert.Nil(t, g.File, "a descriptor on the FIFO")
	w, err := os.OpenFile(fifo, os.O_WRONLY|unix.O_NONBLOCK, 0)
	if err == nil {
		w.Close()
	}
	assert.ErrorIs(t, err, unix.ENXIO, "OpenGuest opened the FIFO for reading")

	dir = writeBundle(t, []string{"/null"}, nil, nil)
	if err := unix.Mknod(filepath.Join(dir, "rootfs", "null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
		t.Skipf("mknod needs root: %v", err)
	}
	b, err = LoadBundle(dir)
	require.NoError(t, err)
	g, err = b.OpenGuest()
	require.NoError(t, err)
	defer g.Close()
	assert.Nil(t, g.ELF)
	assert.Nil(t, g.File, "a descriptor on the device")
}
