package monitor

import (
	"bytes"
	"context"
	"os"
	"sync"
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

// TestFreshWritesInLayout serves requests of several sizes on two fresh
// KVM instances of each of several functions (the pool's first, which
// booted, and a view of its image) and checks that every page written
// since the snapshot lies where a reset looks for them
// (guestmem.Memory.WrittenOutside): the guests write only where their
// page tables let them, and the monitor only where the guest may.
func TestFreshWritesInLayout(t *testing.T) {
	h, err := NewHost(HostConfig{Backend: BackendKVM})
	if err != nil {
		if os.Getenv("TENDER_REQUIRE_KVM") == "1" {
			t.Fatalf("TENDER_REQUIRE_KVM=1 but KVM is unusable: %v", err)
		}
		t.Skipf("KVM is unusable here: %v", err)
	}
	defer h.Close()
	pm, err := guestmem.OpenPagemap()
	if err != nil {
		// A reset drops the whole memory there, looking at none of it.
		t.Skipf("no PAGEMAP_SCAN on this kernel (Linux 6.7): %v", err)
	}
	pm.Close()
	ctx := context.Background()
	for _, fn := range []string{"fn_echo", "fn_state", "fn_upper", "fn_wordcount", "fn_sha256", "fn_mixed"} {
		elf, err := os.ReadFile("../bin/guest/" + fn + ".elf") // built by TestMain
		require.NoError(t, err)
		p, err := h.NewPool(PoolConfig{Guest: Config{ELF: elf, Name: fn}, Mode: Fresh, MaxInstances: 2})
		require.NoError(t, err)
		require.NoError(t, p.Prewarm(ctx, 2))
		var wg sync.WaitGroup
		for c := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 12 {
					sizes := []int{1, 64, 4096, 5000, 64 << 10, 256 << 10}
					body := bytes.Repeat([]byte{'a' + byte(i)}, sizes[(i+c)%len(sizes)])
					_, err := p.Invoke(ctx, Request{Body: body})
					assert.NoError(t, err, "%s", fn)
				}
			}()
		}
		wg.Wait()
		p.mu.Lock()
		assert.Len(t, p.idle, 2, fn)
		for _, inst := range p.idle {
			n, err := inst.vm.(*fnVM).vm.mem.WrittenOutside()
			assert.NoError(t, err, fn)
			assert.Zero(t, n, "%s: pages written outside what a reset looks at", fn)
		}
		p.mu.Unlock()
		require.NoError(t, p.Close())
	}
}
