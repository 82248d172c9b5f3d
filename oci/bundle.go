package oci

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/tendervm/tender/monitor/loader"
)

// maxConfigSize bounds config.json: real ones are a few KiB.
const maxConfigSize = 4 << 20

// defaultPath is searched for a process.args[0] without a slash when the
// process sets no PATH, as runc does.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Bundle is a parsed OCI bundle.
type Bundle struct {
	// Dir is the bundle directory, absolute.
	Dir string
	// Spec is its config.json.
	Spec *specs.Spec
	// Rootfs is the root filesystem directory, absolute.
	Rootfs string
}

// ParseConfig decodes a config.json and checks what tender-oci relies on:
// a process with arguments and a root.
func ParseConfig(b []byte) (*specs.Spec, error) {
	var s specs.Spec
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("config.json: %w", err)
	}
	switch {
	case s.Process == nil:
		return nil, errors.New("config.json: no process")
	case len(s.Process.Args) == 0 || s.Process.Args[0] == "":
		return nil, errors.New("config.json: process.args is empty")
	case s.Root == nil || s.Root.Path == "":
		return nil, errors.New("config.json: no root.path")
	}
	return &s, nil
}

// LoadBundle reads dir/config.json and finds the root filesystem.
func LoadBundle(dir string) (*Bundle, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(filepath.Join(dir, "config.json"))
	if err != nil {
		return nil, fmt.Errorf("bundle %s: %w", dir, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxConfigSize+1))
	if err != nil {
		return nil, fmt.Errorf("bundle %s: %w", dir, err)
	}
	if len(b) > maxConfigSize {
		return nil, fmt.Errorf("bundle %s: config.json is over %d MiB", dir, maxConfigSize>>20)
	}
	s, err := ParseConfig(b)
	if err != nil {
		return nil, fmt.Errorf("bundle %s: %w", dir, err)
	}
	root := s.Root.Path
	if !filepath.IsAbs(root) {
		root = filepath.Join(dir, root)
	}
	st, err := os.Stat(root)
	if err != nil {
		return nil, fmt.Errorf("bundle %s: rootfs: %w", dir, err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("bundle %s: rootfs %s is not a directory", dir, root)
	}
	return &Bundle{Dir: dir, Spec: s, Rootfs: root}, nil
}

// Guest is a container's guest executable, opened inside its rootfs.
type Guest struct {
	// File is open on the executable; the monitor process reads it
	// through this descriptor, so a later change of the rootfs's names
	// cannot swap it.
	File *os.File
	// Path is process.args[0] as found in the rootfs.
	Path string
	// ELF is its contents when it has tender's ABI note, else nil.
	ELF []byte
}

// OpenGuest opens process.args[0] inside the rootfs (symbolic links resolve
// as if the rootfs were /, never out of it) and reads it if it is an ELF
// with tender's ABI note. A missing or foreign executable is no error: it
// returns a Guest with a nil ELF (and a nil File if there is none, or it is
// no regular file, which is never opened), for runc.
func (b *Bundle) OpenGuest() (*Guest, error) {
	name := b.Spec.Process.Args[0]
	f, path, err := b.lookup(name)
	if err != nil {
		return &Guest{Path: name}, nil
	}
	g := &Guest{File: f, Path: path}
	st, err := f.Stat()
	if err != nil || st.Size() > loader.MaxFileSize {
		return g, nil
	}
	var magic [4]byte
	if n, _ := f.ReadAt(magic[:], 0); n < 4 || string(magic[:]) != "\x7fELF" {
		return g, nil
	}
	data := make([]byte, st.Size())
	n, err := f.ReadAt(data, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		g.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if loader.HasABINote(data[:n]) {
		g.ELF = data[:n]
	}
	return g, nil
}

// Close closes the executable.
func (g *Guest) Close() error {
	if g.File == nil {
		return nil
	}
	return g.File.Close()
}

// lookup opens name in the rootfs, searching the process's PATH when name
// has no slash.
func (b *Bundle) lookup(name string) (*os.File, string, error) {
	if strings.Contains(name, "/") {
		f, err := openInRoot(b.Rootfs, name)
		return f, name, err
	}
	path := defaultPath
	for _, e := range b.Spec.Process.Env {
		if p, ok := strings.CutPrefix(e, "PATH="); ok {
			path = p
		}
	}
	err := error(os.ErrNotExist)
	for _, dir := range filepath.SplitList(path) {
		if !filepath.IsAbs(dir) {
			continue
		}
		var f *os.File
		full := filepath.Join(dir, name)
		if f, err = openInRoot(b.Rootfs, full); err == nil {
			return f, full, nil
		}
	}
	return nil, name, err
}

// errNotRegular is openInRoot's error for a name that is no regular file.
var errNotRegular = errors.New("not a regular file")

// openInRoot opens name for reading with rootfs as the root of the path
// walk (openat2 RESOLVE_IN_ROOT): "..", absolute links and /proc magic
// links cannot lead outside it. Only a regular file is opened: the walk
// yields an O_PATH descriptor, which opens nothing, and only once fstat
// shows a regular file is it reopened for reading, since opening a
// device node or a FIFO acts on the host (a watchdog starts counting).
func openInRoot(rootfs, name string) (*os.File, error) {
	dir, err := unix.Open(rootfs, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: rootfs, Err: err}
	}
	defer unix.Close(dir)
	pfd, err := unix.Openat2(dir, name, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: name, Err: err}
	}
	defer unix.Close(pfd)
	var st unix.Stat_t
	if err := unix.Fstat(pfd, &st); err != nil {
		return nil, &os.PathError{Op: "stat", Path: name, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, &os.PathError{Op: "open", Path: name, Err: errNotRegular}
	}
	// The descriptor's /proc link reopens the very file the walk found,
	// however the rootfs's names change meanwhile.
	fd, err := unix.Open("/proc/self/fd/"+strconv.Itoa(pfd), unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: name, Err: err}
	}
	return os.NewFile(uintptr(fd), name), nil
}
