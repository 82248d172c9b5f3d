package oci

import (
	"io"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestDeleteCreating: delete refuses a container still creating while its
// create is at work (holds the state directory's lock), --force or not,
// since the process create is starting is not recorded yet; once create
// is gone, delete removes what it left.
func TestDeleteCreating(t *testing.T) {
	root := t.TempDir()
	rt := &runtime{root: root, stdout: io.Discard, stderr: io.Discard, log: io.Discard, runc: "/nonexistent/runc"}
	r := &Record{ID: "c"}
	dir := stateDir(root, r.ID)
	require.NoError(t, os.Mkdir(dir, 0o700))
	require.NoError(t, writeRecord(root, r))
	unlock, err := lockState(dir)
	require.NoError(t, err)
	_, err = lockState(dir)
	assert.ErrorIs(t, err, errCreating, "a second lock")
	for _, args := range [][]string{{"c"}, {"--force", "c"}} {
		err := rt.delete(args)
		assert.ErrorContains(t, err, "cannot delete container c that is being created: its create is still at work", args)
		assert.DirExists(t, dir, args)
	}
	unlock()
	require.NoError(t, rt.delete([]string{"c"}))
	assert.NoDirExists(t, dir)
}

// TestAwaitCreate: the monitor process goes on at create's byte and stops
// at EOF without it, create having died.
func TestAwaitCreate(t *testing.T) {
	pr, pw, err := os.Pipe()
	require.NoError(t, err)
	_, err = pw.Write([]byte{0})
	require.NoError(t, err)
	pw.Close()
	assert.NoError(t, awaitCreate(t.Context(), pr))

	pr, pw, err = os.Pipe()
	require.NoError(t, err)
	pw.Close()
	assert.ErrorIs(t, awaitCreate(t.Context(), pr), errCreateDied)
}
