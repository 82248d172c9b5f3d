package kvm

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"

	gokvm "github.com/bobuhiro11/gokvm/kvm"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/tendervm/tender/monitor/vcpu"
)

// testKey and testCPUID are a key and a table of three entries.
var testKey = cpuidKey{bootID: [36]byte{'b', 'o', 'o', 't'}, dev: 5, ino: 77, rdev: 10<<8 | 232, ctimeSec: 1700000000, ctimeNsec: 42}

func testCPUID() *cpuid2 {
	c := &cpuid2{nent: 3}
	c.entries[0] = gokvm.CPUIDEntry2{Function: 0, Eax: 0x10, Ebx: 0x68747541, Ecx: 0x444d4163, Edx: 0x69746e65}
	c.entries[1] = gokvm.CPUIDEntry2{Function: 1, Ecx: 1 << 26, Edx: 1 << 25}
	c.entries[2] = gokvm.CPUIDEntry2{Function: 0xD, Index: 0, Flags: 1, Eax: 7}
	return c
}

func TestCPUIDCacheRoundTrip(t *testing.T) {
	b := encodeCPUID(testKey, testCPUID())
	assert.Len(t, b, cpuidHeaderSize+3*cpuidEntrySize)
	c, err := decodeCPUID(b, testKey)
	require.NoError(t, err)
	assert.Equal(t, testCPUID(), c)
	f := supportedFeatures(c)
	assert.Equal(t, uint64(7), f.xcr0)
	assert.Equal(t, uint8(0x9), f.trType, "an AMD table")
}

// supportedFeatures is what supportedCPUID derives from a table.
func supportedFeatures(c *cpuid2) cpuFeatures {
	e := c.entries[:c.nent]
	return cpuFeatures{cpuid: c, xcr0: xcr0(e), trType: tssType(e)}
}

func TestCPUIDCacheRejects(t *testing.T) {
	good := encodeCPUID(testKey, testCPUID())
	edit := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	le := func(b []byte, off int, v uint32) []byte {
		b[off], b[off+1], b[off+2], b[off+3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
		return b
	}
	for name, b := range map[string][]byte{
		"empty":                {},
		"header only, cut":     good[:cpuidHeaderSize-1],
		"magic":                edit(func(b []byte) []byte { b[0] = 'x'; return b }),
		"another boot":         edit(func(b []byte) []byte { b[8] = 'B'; return b }),
		"another device inode": edit(func(b []byte) []byte { b[56]++; return b }),
		"another change time":  edit(func(b []byte) []byte { b[80]++; return b }),
		"header padding":       edit(func(b []byte) []byte { b[44] = 1; return b }),
		"count padding":        edit(func(b []byte) []byte { b[92] = 1; return b }),
		"no entries":           edit(func(b []byte) []byte { return le(b, 88, 0)[:cpuidHeaderSize] }),
		"count past the table": edit(func(b []byte) []byte { return le(b, 88, 4) }),
		"count past the limit": edit(func(b []byte) []byte { return le(b, 88, maxCPUIDEntries+1) }),
		"an entry cut":         good[:len(good)-1],
		"trailing byte":        append(append([]byte(nil), good...), 0),
		"entry padding":        edit(func(b []byte) []byte { b[cpuidHeaderSize+7*4] = 1; return b }),
	} {
		_, err := decodeCPUID(b, testKey)
		assert.Error(t, err, name)
	}
}

func FuzzCPUIDCache(f *testing.F) {
	good := encodeCPUID(testKey, testCPUID())
	f.Add(good)
	f.Add(good[:cpuidHeaderSize])
	f.Add(encodeCPUID(cpuidKey{}, testCPUID()))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := decodeCPUID(b, testKey)
		if err != nil {
			return
		}
		// What decodes is exactly what would be written for it.
		if re := encodeCPUID(testKey, c); string(re) != string(b) {
			t.Fatalf("decoded %d entries from %x, which encode to %x", c.nent, b, re)
		}
	})
}

func TestCPUIDCacheFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cache")
	path := filepath.Join(dir, "kvm-cpuid")
	require.NoError(t, writeCPUIDCache(path, testKey, testCPUID()))
	st, err := os.Stat(dir)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o700), st.Mode().Perm(), "the directory it made")
	c, err := readCPUIDCache(path, testKey)
	require.NoError(t, err)
	assert.Equal(t, testCPUID(), c)
	_, err = readCPUIDCache(path, cpuidKey{})
	assert.ErrorIs(t, err, errCPUIDStale)
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Len(t, entries, 1, "no temporary file left")

	// Files others may write, and links, are not used.
	require.NoError(t, os.Chmod(path, 0o620))
	_, err = readCPUIDCache(path, testKey)
	assert.ErrorContains(t, err, "writable by it alone")
	require.NoError(t, os.Chmod(path, 0o600))
	require.NoError(t, os.Chmod(dir, 0o777))
	assert.ErrorContains(t, writeCPUIDCache(path, testKey, testCPUID()), "writable by it alone",
		"a file is written only in a directory nobody else may write")
	require.NoError(t, os.Chmod(dir, 0o700))
	link := filepath.Join(dir, "link")
	require.NoError(t, os.Symlink(path, link))
	_, err = readCPUIDCache(link, testKey)
	assert.Error(t, err, "a symbolic link")
	_, err = readCPUIDCache(dir, testKey)
	assert.Error(t, err, "a directory")

	// Only a CPUID cache file is ever replaced; a FIFO does not block.
	other := filepath.Join(dir, "notes")
	require.NoError(t, os.WriteFile(other, []byte("someone's notes"), 0o600))
	assert.ErrorContains(t, writeCPUIDCache(other, testKey, testCPUID()), "not a CPUID cache file")
	b, err := os.ReadFile(other)
	require.NoError(t, err)
	assert.Equal(t, "someone's notes", string(b))
	assert.Error(t, writeCPUIDCache(link, testKey, testCPUID()), "a link")
	fifo := filepath.Join(dir, "fifo")
	require.NoError(t, unix.Mkfifo(fifo, 0o600))
	_, err = readCPUIDCache(fifo, testKey)
	assert.ErrorContains(t, err, "not a regular file")
	assert.ErrorContains(t, writeCPUIDCache(fifo, testKey, testCPUID()), "not a regular file")
	stale := encodeCPUID(cpuidKey{}, testCPUID())
	require.NoError(t, os.WriteFile(path, stale[:20], 0o600))
	require.NoError(t, writeCPUIDCache(path, testKey, testCPUID()), "a cache file, even cut short")
	_, err = readCPUIDCache(path, testKey)
	assert.NoError(t, err)
}

// TestCPUIDCacheKVM opens KVM three times with one cache file: the first
// asks KVM and writes the file, the second reads the same table from it
// and boots a guest with it, and a file of another KVM is replaced.
func TestCPUIDCacheKVM(t *testing.T) {
	s := system(t)
	path := filepath.Join(t.TempDir(), "tender", "kvm-cpuid")
	first, err := OpenConfig(Config{CPUIDCache: path})
	require.NoError(t, err)
	defer first.Close()
	plain, err := s.features()
	require.NoError(t, err)
	got, err := first.features()
	require.NoError(t, err)
	assert.False(t, got.cached, "no file yet")
	assert.Equal(t, sameOnEveryCPU(plain.cpuid), sameOnEveryCPU(got.cpuid))

	second, err := OpenConfig(Config{CPUIDCache: path})
	require.NoError(t, err)
	defer second.Close()
	got, err = second.features()
	require.NoError(t, err)
	require.True(t, got.cached, "the file the first wrote")
	assert.Equal(t, sameOnEveryCPU(plain.cpuid), sameOnEveryCPU(got.cpuid))
	assert.Equal(t, plain.xcr0, got.xcr0)
	assert.Equal(t, plain.trType, got.trType)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	vm, _ := rawVM(t, second, codeTwoHypercalls)
	x, err := vm.Run()
	require.NoError(t, err)
	assert.Equal(t, vcpu.ExitHypercall, x.Kind, "a guest on the cached table")

	// A file written under another KVM (here: another boot) is a miss,
	// and replaced.
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	b[8] ^= 0xFF
	require.NoError(t, os.WriteFile(path, b, 0o600))
	third, err := OpenConfig(Config{CPUIDCache: path})
	require.NoError(t, err)
	defer third.Close()
	f, err := third.features()
	require.NoError(t, err)
	assert.False(t, f.cached)
	fourth, err := OpenConfig(Config{CPUIDCache: path})
	require.NoError(t, err)
	defer fourth.Close()
	f, err = fourth.features()
	require.NoError(t, err)
	assert.True(t, f.cached, "the file the third rewrote")
}

// sameOnEveryCPU is c's entries without the fields that name the host CPU
// that executed KVM_GET_SUPPORTED_CPUID (its APIC IDs), which differ from
// one call to the next.
func sameOnEveryCPU(c *cpuid2) []gokvm.CPUIDEntry2 {
	e := append([]gokvm.CPUIDEntry2(nil), c.entries[:c.nent]...)
	for i := range e {
		switch e[i].Function {
		case 1:
			e[i].Ebx &= 0x00FFFFFF
		case 0xB, 0x1F:
			e[i].Edx = 0
		case 0x8000001E:
			e[i].Eax, e[i].Ebx, e[i].Ecx = 0, 0, 0
		}
	}
	return e
}

// BenchmarkOpen measures opening KVM up to the supported CPUID, asked of
// KVM and read from the cache file, side by side.
func BenchmarkOpen(b *testing.B) {
	system(b)
	path := filepath.Join(b.TempDir(), "kvm-cpuid")
	for _, bc := range []struct{ name, cache string }{{"ask", ""}, {"cached", path}} {
		b.Run(bc.name, func(b *testing.B) {
			for range b.N {
				s, err := OpenConfig(Config{CPUIDCache: bc.cache})
				if err != nil {
					b.Fatal(err)
				}
				s.Settle()
				s.Close()
			}
		})
	}
}
