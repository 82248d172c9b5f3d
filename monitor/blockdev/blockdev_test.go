package blockdev

import (
	"bytes"
	"errors"
	"math"
	"math/bits"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// image writes a file of n bytes, byte i = i%251, and returns its path.
func image(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i % 251)
	}
	p := filepath.Join(t.TempDir(), "disk.img")
	require.NoError(t, os.WriteFile(p, b, 0o600))
	return p
}

func open(t *testing.T, path string, opts Options) *Device {
	t.Helper()
	d, err := Open("disk", path, opts)
	require.NoError(t, err)
	t.Cleanup(func() { d.Close() })
	return d
}

func TestOpenRefuses(t *testing.T) {
	p := image(t, 4096)
	cases := []struct {
		name, path string
		opts       Options
		want       string
	}{
		{"block size not a power of two", p, Options{BlockSize: 1536}, "block size 1536: want a power of two from 512 to 65536"},
		{"block size too small", p, Options{BlockSize: 256}, "block size 256"},
		{"block size too large", image(t, 128<<10), Options{BlockSize: 128 << 10}, "block size 131072"},
		{"size not a multiple of the block size", image(t, 4096+512), Options{BlockSize: 4096}, "has 4608 bytes, not a multiple of the block size 4096"},
		{"size not a multiple of 512", image(t, 1000), Options{}, "has 1000 bytes, not a multiple of the block size 512"},
		{"empty file", image(t, 0), Options{}, "is empty"},
		{"directory", t.TempDir(), Options{ReadOnly: true}, "is not a regular file"},
		{"missing file", filepath.Join(t.TempDir(), "none"), Options{}, "no such file or directory"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d, err := Open("disk", c.path, c.opts)
			require.ErrorContains(t, err, c.want)
			assert.Nil(t, d)
		})
	}
}

// TestOpenRefusesFIFO: a FIFO is refused as not a regular file, read-only
// or not, instead of Open waiting for ever in open(2) for a writer or a
// reader to come.
func TestOpenRefusesFIFO(t *testing.T) {
	p := filepath.Join(t.TempDir(), "fifo")
	require.NoError(t, syscall.Mkfifo(p, 0o600))
	for _, ro := range []bool{true, false} {
		done := make(chan error, 1)
		go func() {
			d, err := Open("disk", p, Options{ReadOnly: ro})
			if d != nil {
				d.Close()
			}
			done <- err
		}()
		select {
		case err := <-done:
			assert.ErrorContains(t, err, `blockdev: "disk": `+p+" is not a regular file", "ro %v", ro)
		case <-time.After(time.Minute):
			// Only a guard against hanging: the open never returns.
			t.Fatalf("Open of a FIFO (ro %v) still blocked after a minute", ro)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	p := image(t, 8<<10)
	d := open(t, p, Options{BlockSize: 1024})
	assert.Equal(t, "disk", d.Name())
	assert.EqualValues(t, 8<<10, d.Capacity())
	assert.EqualValues(t, 1024, d.BlockSize())
	assert.False(t, d.ReadOnly())

	buf := make([]byte, 2048)
	require.NoError(t, d.ReadAt(buf, 1024))
	assert.Equal(t, byte(1024%251), buf[0])
	data := bytes.Repeat([]byte("tender!!"), 256)
	require.NoError(t, d.WriteAt(data, 7168-1024))
	file, err := os.ReadFile(p)
	require.NoError(t, err)
	assert.Equal(t, data, file[6144:8192])
	require.NoError(t, d.ReadAt(buf, 6144))
	assert.Equal(t, data, buf)
}

func TestRequestChecks(t *testing.T) {
	d := open(t, image(t, 4096), Options{})
	cases := []struct {
		name string
		n    int
		off  uint64
		want error
	}{
		{"misaligned offset", 512, 100, ErrAlign},
		{"partial block", 700, 0, ErrAlign},
		{"zero length", 0, 0, ErrAlign},
		{"past the end", 1024, 3584, ErrRange},
		{"at the end", 512, 4096, ErrRange},
		{"offset overflows", 1024, math.MaxUint64 - 511, ErrRange},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, op := range []func([]byte, uint64) error{d.ReadAt, d.WriteAt} {
				err := op(make([]byte, c.n), c.off)
				var e *Error
				require.True(t, errors.As(err, &e), "%v", err)
				assert.ErrorIs(t, err, c.want)
				assert.Equal(t, c.off, e.Offset)
			}
		})
	}
}

func TestReadOnly(t *testing.T) {
	p := image(t, 1024)
	d := open(t, p, Options{ReadOnly: true})
	assert.True(t, d.ReadOnly())
	require.NoError(t, d.ReadAt(make([]byte, 512), 512))
	err := d.WriteAt(make([]byte, 512), 0)
	assert.ErrorIs(t, err, ErrReadOnly)
	file, _ := os.ReadFile(p)
	assert.Equal(t, byte(1), file[1], "the file is unchanged")
}

// A file shrunk under the device gives a short read: reported, not padded.
func TestShortReadIsAnError(t *testing.T) {
	p := image(t, 2048)
	d := open(t, p, Options{})
	require.NoError(t, os.Truncate(p, 1024+100))
	err := d.ReadAt(make([]byte, 1024), 1024)
	assert.ErrorIs(t, err, ErrIO)
	assert.ErrorContains(t, err, "transferred 100 of 1024 bytes")
}

func TestClosedDeviceFails(t *testing.T) {
	d := open(t, image(t, 1024), Options{})
	require.NoError(t, d.Close())
	err := d.WriteAt(make([]byte, 512), 0)
	assert.ErrorIs(t, err, ErrIO)
	assert.ErrorIs(t, err, os.ErrClosed)
}

// FuzzCheck compares Check with a plain statement of the rule, the end
// computed with its carry so that no overflow can hide in the model.
func FuzzCheck(f *testing.F) {
	f.Add(uint64(0), uint64(512), false)
	f.Add(uint64(3584), uint64(512), true)
	f.Add(uint64(math.MaxUint64-511), uint64(1024), false)
	f.Add(uint64(512), uint64(math.MaxUint64-511), true)
	f.Add(uint64(4096), uint64(0), false)
	f.Add(uint64(1), uint64(511), true)
	p := filepath.Join(f.TempDir(), "disk.img")
	require.NoError(f, os.WriteFile(p, make([]byte, 4096), 0o600))
	rw, err := Open("rw", p, Options{})
	require.NoError(f, err)
	defer rw.Close()
	ro, err := Open("ro", p, Options{ReadOnly: true})
	require.NoError(f, err)
	defer ro.Close()
	f.Fuzz(func(t *testing.T, off, n uint64, write bool) {
		for _, d := range []*Device{rw, ro} {
			sum, carry := bits.Add64(off, n, 0)
			var want error
			switch {
			case n == 0 || n%512 != 0 || off%512 != 0:
				want = ErrAlign
			case carry != 0 || sum > 4096:
				want = ErrRange
			case write && d.ReadOnly():
				want = ErrReadOnly
			}
			err := d.Check(write, off, n)
			if want == nil {
				require.NoError(t, err)
				continue
			}
			var e *Error
			require.True(t, errors.As(err, &e), "%v", err)
			require.ErrorIs(t, err, want)
			require.Equal(t, off, e.Offset)
			require.Equal(t, n, e.Len)
		}
	})
}
