package kvm

import (
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/tendervm/tender/monitor/guestmem"
	"github.com/tendervm/tender/monitor/vcpu"
)

// signalStorm sends SIGURG, the Go runtime's own preemption signal, to thread
// tid about every 50 µs until the returned function is called.
func signalStorm(t *testing.T, tid int) (stop func() int) {
	t.Helper()
	done := make(chan struct{})
	var wg sync.WaitGroup
	var sent int
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			default:
			}
			if err := unix.Tgkill(unix.Getpid(), tid, unix.SIGURG); err != nil {
				t.Errorf("tgkill: %v", err)
				return
			}
			sent++
			time.Sleep(50 * time.Microsecond)
		}
	}()
	return func() int {
		close(done)
		wg.Wait()
		return sent
	}
}

// TestSignalStorm creates, runs to the first hypercall and closes VMs while
// their thread is signalled every ~50 µs: no ioctl may fail with EINTR (a
// signal during KVM_CREATE_VM is enough to make it fail), and KVM_RUN's
// interruptions must not be mistaken for exits.
func TestSignalStorm(t *testing.T) {
	n := 1000
	if testing.Short() {
		n = 100
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	s := system(t)
	stop := signalStorm(t, unix.Gettid())
	for i := range n {
		mem, err := guestmem.New(4 << 20)
		require.NoError(t, err)
		require.NoError(t, mem.Write(codeAddr, codeTwoHypercalls))
		vm, err := s.NewVCPU(mem, vcpu.Boot{
			Regions: []vcpu.Region{
				{Addr: codeAddr, Size: 0x1000, Perm: vcpu.Read | vcpu.Exec},
				{Addr: dataAddr, Size: mem.Size() - dataAddr, Perm: vcpu.Read | vcpu.Write},
			},
			Entry: codeAddr, StackTop: mem.Size(),
		})
		require.NoError(t, err, "VM %d", i)
		x, err := vm.Run()
		require.NoError(t, err, "VM %d", i)
		require.Equal(t, vcpu.Exit{Kind: vcpu.ExitHypercall, Nr: 2, Arg: dataAddr}, x, "VM %d", i)
		require.NoError(t, vm.Close(), "VM %d", i)
		require.NoError(t, mem.Close())
	}
	t.Logf("%d signals during %d VMs", stop(), n)
}
