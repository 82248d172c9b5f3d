package process

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tendervm/tender/internal/proctest"
	"github.com/tendervm/tender/monitor/vcpu"
)

// TestAddressSpace lists every mapping of a running guest process, plain
// and tracked (a fresh instance's, after its first reset): the initial
// stack execve built for the stub is gone, and the only writable mappings
// are the guest's writable regions and the signal stack, which a fresh
// reset restores; a fresh guest's template is read-only. Anything else a
// request wrote would reach the next one.
func TestAddressSpace(t *testing.T) {
	for _, track := range []bool{false, true} {
		t.Run(fmt.Sprintf("track=%v", track), func(t *testing.T) {
			lockThread(t)
			mem := newMem(t)
			require.NoError(t, mem.Write(codeAddr, freshCode))
			boot := testBoot()
			v, err := spawner(t).startWith(mem, boot, options{track: track})
			if errors.Is(err, ErrNoWriteTracking) {
				t.Skip(err)
			}
			require.NoError(t, err)
			t.Cleanup(func() { assert.NoError(t, v.Close()) })
			require.Equal(t, vcpu.ExitHypercall, run(t, v).Kind)
			above := []proctest.Mapping{{Start: altBase, End: altBase + altSize, Perms: "rw-p"}}
			if track {
				_, err := v.Snapshot()
				require.NoError(t, err)
				require.Equal(t, vcpu.ExitHypercall, run(t, v).Kind)
				above = append(above, proctest.Mapping{Start: tmplBase, End: tmplBase + tmplSize, Perms: "r--p"})
			}

			writable := map[[2]uint64]bool{{altBase, altBase + altSize}: true}
			for _, r := range boot.Regions {
				if r.Perm&vcpu.Write != 0 {
					writable[[2]uint64{r.Addr, r.Addr + r.Size}] = true
				}
			}
			ms, err := proctest.Maps(v.pid)
			require.NoError(t, err)
			for _, m := range ms {
				assert.NotEqual(t, "[stack]", m.Name, "the stub's initial stack at [%#x, %#x)", m.Start, m.End)
				if strings.Contains(m.Perms, "w") {
					assert.True(t, writable[[2]uint64{m.Start, m.End}],
						"writable mapping [%#x, %#x) %s %q is neither a writable guest region nor the signal stack", m.Start, m.End, m.Perms, m.Name)
				}
				// Below the stub: guest memory, or a vDSO the kernel put
				// there (vm.mmap_rnd_bits raised, the legacy layout). Above
				// its page, up to stubTop: the signal stack, and a fresh
				// guest's template.
				if m.End <= stubBase && !strings.Contains(m.Name, "/memfd:tender-guest") {
					assert.Contains(t, []string{"[vdso]", "[vvar]", "[vvar_vclock]"}, m.Name, "[%#x, %#x)", m.Start, m.End)
				}
				if m.Start >= stubTable && m.Start < stubTop {
					require.NotEmpty(t, above, "[%#x, %#x) %s", m.Start, m.End, m.Perms)
					assert.Equal(t, above[0], m)
					above = above[1:]
				}
			}
			assert.Empty(t, above, "not mapped")
			// The address execve's stack pointer had (/proc/PID/stat's
			// startstack) is mapped no longer.
			for _, m := range ms {
				assert.False(t, m.Start <= v.initRegs.Rsp && v.initRegs.Rsp < m.End,
					"the initial stack pointer %#x lies in [%#x, %#x) %s", v.initRegs.Rsp, m.Start, m.End, m.Name)
			}
		})
	}
}

// TestRegionsBelowStub: no guest region may reach the stub's page, since
// the set-up routine unmaps everything above it but the signal stack.
func TestRegionsBelowStub(t *testing.T) {
	const size = stubBase + 0x100000 // never allocated: checkRegions only
	for _, r := range []vcpu.Region{
		{Addr: stubBase - 0x1000, Size: 0x2000, Perm: vcpu.Read},
		{Addr: stubBase + 0x20000, Size: 0x1000, Perm: vcpu.Read | vcpu.Write},
	} {
		err := checkRegions(size, []vcpu.Region{r})
		assert.ErrorContains(t, err, fmt.Sprintf("[%#x, +%#x) reaches the stub at 0x7e0000000000", r.Addr, r.Size))
	}
	assert.NoError(t, checkRegions(size, []vcpu.Region{{Addr: stubBase - 0x1000, Size: 0x1000, Perm: vcpu.Read}}))
}
