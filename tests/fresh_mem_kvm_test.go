package tests

import (
	"bufio"
	"bytes"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// kvmInstancesKiB is the host memory this process's KVM instances hold
// beyond the snapshot's pages: the guest pages they hold privately
// (Anonymous in /proc/self/smaps of the guest memfd's private mappings: the
// pages their requests dirtied, copied on write), their kvm_run mappings
// (Rss) and the Go heap and stacks in use after a collection (the
// monitor's structures). Unlike the process's RssAnon it leaves out what
// the Go runtime has freed but not returned to the kernel, which made that
// measure swing by more than an instance's share, either way. dirtied is
// how many guest mappings hold private pages.
func kvmInstancesKiB(tb testing.TB) (guest, heap int64, dirtied int) {
	tb.Helper()
	anon, err := smapsKiB("/memfd:tender-guest", "Anonymous")
	require.NoError(tb, err)
	run, err := smapsKiB("anon_inode:kvm-vcpu", "Rss")
	require.NoError(tb, err)
	for _, n := range anon {
		guest += n
		if n > 0 {
			dirtied++
		}
	}
	for _, n := range run {
		guest += n
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return guest, int64(ms.HeapAlloc+ms.StackInuse) / 1024, dirtied
}

// smapsKiB returns the smaps field (in KiB) of each of this process's
// mappings whose path starts with prefix.
func smapsKiB(prefix, field string) ([]int64, error) {
	b, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		return nil, err
	}
	var vals []int64
	in := false // the current mapping is one of prefix's
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 0:
		case !strings.HasSuffix(f[0], ":"): // a mapping's header
			in = len(f) >= 6 && strings.HasPrefix(f[5], prefix)
		case in && f[0] == field+":" && len(f) >= 2:
			n, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				return nil, err
			}
			vals = append(vals, n)
		}
	}
	return vals, sc.Err()
}

// TestSmapsKiB: the private view of a memfd that BenchmarkFreshMemory
// counts grows by exactly the pages written through it, not by those read.
func TestSmapsKiB(t *testing.T) {
	fd, err := unix.MemfdCreate("tender-guest", unix.MFD_CLOEXEC)
	require.NoError(t, err)
	defer unix.Close(fd)
	require.NoError(t, unix.Ftruncate(fd, 64<<10))
	m, err := unix.Mmap(fd, 0, 64<<10, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE)
	require.NoError(t, err)
	defer unix.Munmap(m)
	count := func() (total int64) {
		vals, err := smapsKiB("/memfd:tender-guest", "Anonymous")
		require.NoError(t, err)
		for _, n := range vals {
			total += n
		}
		return total
	}
	before := count()
	var sum byte
	for i := 0; i < len(m); i += 4096 {
		sum += m[i] // read: the memfd's page, not a private one
	}
	for _, off := range []int{0, 8 << 10, 40 << 10} {
		m[off] = 1 + sum
	}
	assert.EqualValues(t, 12, count()-before)
}
