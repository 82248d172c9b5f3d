package kvm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	gokvm "github.com/bobuhiro11/gokvm/kvm"
	"golang.org/x/sys/unix"
)

// The CPUID cache keeps KVM_GET_SUPPORTED_CPUID's answer in a file between
// processes: on kvm_pvm hosts the kernel executes each cpuid nested, and
// the call costs ~0.3 ms of CPU (BenchmarkOpen: 295 µs asked, 35 µs read
// from the file) in each `tender run` of 3-4 ms. A file
// answers only for the KVM it was written under: this boot
// (/proc/sys/kernel/random/boot_id) and this registration of the device
// (inode and change time of the node Open opened, which a reload of the
// KVM modules creates anew). Anything else is a miss, which asks KVM and
// rewrites the file.

// cpuidKey identifies the KVM a cache file answers for.
type cpuidKey struct {
	bootID              [36]byte
	dev, ino, rdev      uint64
	ctimeSec, ctimeNsec int64
}

// bootIDFile names this boot.
const bootIDFile = "/proc/sys/kernel/random/boot_id"

// keyOf is the key of the KVM device open as kvmfd.
func keyOf(kvmfd int) (cpuidKey, error) {
	var k cpuidKey
	var st unix.Stat_t
	if err := unix.Fstat(kvmfd, &st); err != nil {
		return k, err
	}
	n, _, err := readSmall(bootIDFile, k.bootID[:])
	if err != nil {
		return k, err
	}
	if n < len(k.bootID) {
		return k, fmt.Errorf("%s: %d bytes", bootIDFile, n)
	}
	k.dev, k.ino, k.rdev = st.Dev, st.Ino, st.Rdev
	k.ctimeSec, k.ctimeNsec = st.Ctim.Sec, st.Ctim.Nsec
	return k, nil
}

// The file: a header (magic, key, entry count) and the entries as struct
// kvm_cpuid_entry2, all little-endian.
const (
	cpuidMagic       = "tndrcpu1"
	cpuidHeaderSize  = 8 + 36 + 4 + 5*8 + 8
	cpuidEntrySize   = 40
	cpuidMaxFileSize = cpuidHeaderSize + maxCPUIDEntries*cpuidEntrySize
)

var errCPUIDStale = errors.New("kvm: CPUID cache written under another KVM")

// encodeCPUID is the file for c under k.
func encodeCPUID(k cpuidKey, c *cpuid2) []byte {
	n := min(c.nent, maxCPUIDEntries)
	b := make([]byte, 0, cpuidHeaderSize+int(n)*cpuidEntrySize)
	le := binary.LittleEndian
	b = append(b, cpuidMagic...)
	b = append(b, k.bootID[:]...)
	b = le.AppendUint32(b, 0)
	for _, v := range []uint64{k.dev, k.ino, k.rdev, uint64(k.ctimeSec), uint64(k.ctimeNsec)} {
		b = le.AppendUint64(b, v)
	}
	b = le.AppendUint32(b, n)
	b = le.AppendUint32(b, 0)
	for _, e := range c.entries[:n] {
		for _, v := range []uint32{e.Function, e.Index, e.Flags, e.Eax, e.Ebx, e.Ecx, e.Edx, 0, 0, 0} {
			b = le.AppendUint32(b, v)
		}
	}
	return b
}

// decodeCPUID parses a file written under k. Every byte is checked: the
// magic, the key, an entry count from 1 to maxCPUIDEntries, the exact
// length, zero padding.
func decodeCPUID(b []byte, k cpuidKey) (*cpuid2, error) {
	if len(b) < cpuidHeaderSize || string(b[:8]) != cpuidMagic {
		return nil, errors.New("kvm: not a CPUID cache file")
	}
	le := binary.LittleEndian
	var got cpuidKey
	copy(got.bootID[:], b[8:44])
	if le.Uint32(b[44:]) != 0 || le.Uint32(b[92:]) != 0 {
		return nil, errors.New("kvm: CPUID cache: padding not zero")
	}
	got.dev, got.ino, got.rdev = le.Uint64(b[48:]), le.Uint64(b[56:]), le.Uint64(b[64:])
	got.ctimeSec, got.ctimeNsec = int64(le.Uint64(b[72:])), int64(le.Uint64(b[80:]))
	if got != k {
		return nil, errCPUIDStale
	}
	n := le.Uint32(b[88:])
	if n == 0 || n > maxCPUIDEntries || len(b) != cpuidHeaderSize+int(n)*cpuidEntrySize {
		return nil, fmt.Errorf("kvm: CPUID cache: %d entries in %d bytes", n, len(b))
	}
	c := &cpuid2{nent: n}
	for i := range c.entries[:n] {
		e := b[cpuidHeaderSize+i*cpuidEntrySize:][:cpuidEntrySize]
		var w [10]uint32
		for j := range w {
			w[j] = le.Uint32(e[4*j:])
		}
		if w[7]|w[8]|w[9] != 0 {
			return nil, errors.New("kvm: CPUID cache: padding not zero")
		}
		c.entries[i] = gokvm.CPUIDEntry2{Function: w[0], Index: w[1], Flags: w[2], Eax: w[3], Ebx: w[4], Ecx: w[5], Edx: w[6]}
	}
	return c, nil
}

// private checks that a file or directory belongs to this user and that
// nobody else may write it: another user who could would choose the CPUID
// every guest sees.
func private(st *unix.Stat_t, what string) error {
	if int(st.Uid) != os.Geteuid() || st.Mode&0o022 != 0 {
		return fmt.Errorf("kvm: CPUID cache %s owned by uid %d, mode %#o: want uid %d, writable by it alone",
			what, st.Uid, st.Mode&0o7777, os.Geteuid())
	}
	return nil
}

// privateDir checks the directory of the cache file at path.
func privateDir(path string) error {
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Dir(path), &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return fmt.Errorf("kvm: CPUID cache directory %s is not a directory", filepath.Dir(path))
	}
	return private(&st, "directory "+filepath.Dir(path))
}

// readSmall reads up to len(b) bytes of the regular file at path in one
// read, and returns its status too: these files are read on every start,
// so in as few system calls as may be. It follows no link and waits for no
// FIFO (non-blocking: one opens at once, and is refused).
func readSmall(path string, b []byte) (int, *unix.Stat_t, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return 0, nil, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return 0, nil, fmt.Errorf("%s is not a regular file", path)
	}
	n, err := unix.Read(fd, b)
	if err != nil {
		return 0, nil, &os.PathError{Op: "read", Path: path, Err: err}
	}
	return n, &st, nil
}

// readCPUIDCache reads the cache file at path written under k. The file
// must be this user's and nobody else's to write; its directory need not
// be checked, as nobody else can make such a file. A file longer than the
// longest cache fills the buffer and is refused by its length.
func readCPUIDCache(path string, k cpuidKey) (*cpuid2, error) {
	b := make([]byte, cpuidMaxFileSize+1)
	n, st, err := readSmall(path, b)
	if err != nil {
		return nil, fmt.Errorf("kvm: CPUID cache: %w", err)
	}
	if err := private(st, "file "+path); err != nil {
		return nil, err
	}
	return decodeCPUID(b[:n], k)
}

// writeCPUIDCache replaces the cache file at path, creating its directory
// (mode 0700) if need be: a new file is renamed over the old, so a reader
// sees one or the other whole. Whatever else lies at path (a file that is
// not a CPUID cache, a link, a directory) stays: a path mistyped into
// TENDER_CPUID_CACHE must not cost a file.
func writeCPUIDCache(path string, k cpuidKey, c *cpuid2) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	if err := privateDir(path); err != nil {
		return err
	}
	if err := replaceable(path); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".kvm-cpuid-*")
	if err != nil {
		return err
	}
	_, werr := f.Write(encodeCPUID(k, c))
	if err := errors.Join(werr, f.Close()); err != nil {
		os.Remove(f.Name())
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		os.Remove(f.Name())
		return err
	}
	return nil
}

// replaceable checks that nothing lies at path, or a regular file of this
// user's that starts as a CPUID cache file does.
func replaceable(path string) error {
	var magic [len(cpuidMagic)]byte
	n, _, err := readSmall(path, magic[:])
	switch {
	case errors.Is(err, unix.ENOENT):
		return nil
	case err != nil:
		return err
	case string(magic[:n]) != cpuidMagic:
		return fmt.Errorf("kvm: %s is not a CPUID cache file: not replaced", path)
	}
	return nil
}

// cachedCPUID is the supported CPUID from the cache file at path when it
// answers for the device open as kvmfd, else from KVM, and then written
// there for the next process. The cache is best effort: a file it cannot
// use or write costs only the ioctl.
func cachedCPUID(kvmfd int, path string) (c *cpuid2, cached bool, err error) {
	k, kerr := keyOf(kvmfd)
	if kerr == nil {
		if c, err := readCPUIDCache(path, k); err == nil {
			return c, true, nil
		}
	}
	if c, err = askCPUID(kvmfd); err != nil || kerr != nil {
		return c, false, err
	}
	_ = writeCPUIDCache(path, k, c)
	return c, false, nil
}
