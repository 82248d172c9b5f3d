package bench

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestOCIConcurrentRuns runs each container row, as installed here, with
// four concurrent requesters, as the throughput window does: runs of one
// bundle must not trip over each other's files in its rootfs (runc's
// minimal config failed with "symlink pts/ptmx .../rootfs/dev/ptmx: file
// exists" when two runs set up /dev in the shared rootfs at once).
func TestOCIConcurrentRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a few hundred containers")
	}
	if os.Geteuid() != 0 {
		t.Skip("containers need root here")
	}
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp) // where ociSetup puts the bundle
	bin, err := filepath.Abs("../bin")
	require.NoError(t, err)
	// A second of eight requesters overlaps runs of a bundle a few dozen
	// times or more; one run writing to rootfs/dev already fails below.
	e := &env{cfg: Config{BinDir: bin, Payload: []byte("hello"), Concurrency: 8, Duration: time.Second}}
	if err := needFile(e.hostEcho()); err != nil {
		t.Fatal(err) // `make all` builds it
	}
	for _, r := range e.rows() {
		var name string
		switch r.key {
		case "runc-minimal", "runc-default":
			name = "runc"
		case "crun-minimal", "crun-default":
			name = "crun"
		default:
			continue
		}
		t.Run(r.key, func(t *testing.T) {
			if _, err := exec.LookPath(name); err != nil {
				t.Skipf("%s not installed", name)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			run, err := r.setup(ctx)
			require.NoError(t, err)
			defer func() { require.NoError(t, run.close()) }()
			n, _, err := throughput(ctx, e.cfg, run, func() {})
			require.NoError(t, err, "after %d runs", n)
			require.Positive(t, n)
			if a, ok := run.(interface{ anomalies() string }); ok && a.anomalies() != "" {
				t.Logf("%s after %d runs", a.anomalies(), n)
			}
			devs, err := filepath.Glob(filepath.Join(tmp, "tender-bench-"+name+"-*", "bundle", "rootfs", "dev"))
			require.NoError(t, err)
			require.Len(t, devs, 1)
			ents, err := os.ReadDir(devs[0])
			require.NoError(t, err)
			var left []string
			for _, e := range ents {
				left = append(left, e.Name())
			}
			assert.Empty(t, left, "runs created files in the bundle's rootfs/dev")
		})
	}
}
