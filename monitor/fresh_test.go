package monitor

import (
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tendervm/tender/monitor/guestmem"
)

// TestFreshImageOfferAfterClose: an instance that offers its snapshot to a
// Fresh pool's image after the pool closed it (the pool's Close runs
// freshImage.close) leaves its memfd to its memory, which closes it: no
// descriptor outlives the pool and the instance. Pool.Close waits for the
// Invoke and Prewarm calls every boot runs in, so no pool does this today;
// the image must not rely on it.
func TestFreshImageOfferAfterClose(t *testing.T) {
	fds := func() int {
		ents, err := os.ReadDir("/proc/self/fd")
		require.NoError(t, err)
		return len(ents)
	}
	before := fds()
	im := newFreshImage()
	im.close()
	mem, err := guestmem.NewShared(1 << 20)
	require.NoError(t, err)
	require.NoError(t, mem.Freeze(nil)) // as the KVM backend's snapshot does
	im.offer(mem, imageStart{arg: 0x1000})
	fd, _ := im.get()
	assert.Equal(t, -1, fd, "a closed image takes no snapshot")
	assert.GreaterOrEqual(t, mem.FD(), 0, "the memory keeps its memfd")
	require.NoError(t, mem.Close())
	assert.Equal(t, before, fds(), "descriptors left open")
}
