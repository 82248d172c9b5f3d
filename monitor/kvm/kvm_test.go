package kvm

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/tendervm/tender/hypercall"
	"github.com/tendervm/tender/monitor/guestmem"
	"github.com/tendervm/tender/monitor/vcpu"
	"github.com/tendervm/tender/monitor/x86"
)

func TestOpenMissing(t *testing.T) {
	_, err := Open("/nonexistent/kvm")
	assert.ErrorIs(t, err, ErrUnavailable)
	_, err = Open("/dev/null")
	assert.ErrorIs(t, err, ErrUnavailable, "a device that is not KVM")
}

// system opens KVM, skipping the test where it is missing unless
// TENDER_REQUIRE_KVM=1 makes that a failure.
func system(t testing.TB) *System {
	t.Helper()
	s, err := Open("")
	if err != nil {
		if os.Getenv("TENDER_REQUIRE_KVM") == "1" {
			t.Fatalf("TENDER_REQUIRE_KVM=1 but KVM is unusable: %v", err)
		}
		t.Skipf("KVM is unusable here: %v (TENDER_REQUIRE_KVM=1 makes this a failure)", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

const (
	codeAddr = 0x100000
	dataAddr = 0x101000
)

// rawVM boots code (hand-assembled, shown beside each test) at codeAddr with
// one read-execute code page and read-write memory from dataAddr up.
func rawVM(t testing.TB, s *System, code []byte) (*VCPU, *guestmem.Memory) {
	t.Helper()
	mem, err := guestmem.New(4 << 20)
	require.NoError(t, err)
	t.Cleanup(func() { mem.Close() })
	require.NoError(t, mem.Write(codeAddr, code))
	vm, err := s.NewVCPU(mem, vcpu.Boot{
		Regions: []vcpu.Region{
			{Addr: hypercall.BootInfoAddr, Size: 0x1000, Perm: vcpu.Read},
			{Addr: codeAddr, Size: 0x1000, Perm: vcpu.Read | vcpu.Exec},
			{Addr: dataAddr, Size: mem.Size() - dataAddr, Perm: vcpu.Read | vcpu.Write},
		},
		Entry: codeAddr, StackTop: mem.Size(), BootInfo: hypercall.BootInfoAddr,
	})
	require.NoError(t, err)
	t.Cleanup(func() { vm.Close() })
	return vm, mem
}

// Machine code used below.
var (
	// mov $0x101000,%eax; mov $0x502,%dx; out %eax,%dx; mov $0x503,%dx; out %eax,%dx
	codeTwoHypercalls = []byte{0xb8, 0x00, 0x10, 0x10, 0x00, 0x66, 0xba, 0x02, 0x05, 0xef, 0x66, 0xba, 0x03, 0x05, 0xef}
	// mov %cs,%eax; mov %eax,0x101008; mov $0x101000,%eax; mov $0x502,%dx; out %eax,%dx
	codeStoreCS = []byte{0x8c, 0xc8, 0x89, 0x04, 0x25, 0x08, 0x10, 0x10, 0x00, 0xb8, 0x00, 0x10, 0x10, 0x00, 0x66, 0xba, 0x02, 0x05, 0xef}
	// vxorps %ymm0,%ymm0,%ymm0; vaddps %ymm0,%ymm0,%ymm1; mov $0x502,%dx; out %eax,%dx
	codeAVX = []byte{0xc5, 0xfc, 0x57, 0xc0, 0xc5, 0xfc, 0x58, 0xc8, 0x66, 0xba, 0x02, 0x05, 0xef}
	// 1: jmp 1b
	codeSpin = []byte{0xeb, 0xfe}
	// mov $0x502,%dx; 1: out %eax,%dx; jmp 1b
	codeOutLoop = []byte{0x66, 0xba, 0x02, 0x05, 0xef, 0xeb, 0xfd}
)

func run(t *testing.T, vm *VCPU) vcpu.Exit {
	t.Helper()
	x, err := vm.Run()
	require.NoError(t, err)
	return x
}

func TestHypercalls(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	vm, _ := rawVM(t, system(t), codeTwoHypercalls)
	x := run(t, vm)
	assert.Equal(t, vcpu.Exit{Kind: vcpu.ExitHypercall, Nr: 2, Arg: dataAddr}, x)
	x = run(t, vm)
	assert.Equal(t, vcpu.Exit{Kind: vcpu.ExitHypercall, Nr: 3, Arg: dataAddr}, x)
	assert.NotZero(t, vm.TSCHz())
}

// TestLastHypercallPort checks that the I/O bitmap lets a 4-byte out reach
// the last hypercall port.
func TestLastHypercallPort(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	// mov $0x51f,%dx; out %eax,%dx
	vm, _ := rawVM(t, system(t), []byte{0x66, 0xba, 0x1f, 0x05, 0xef})
	x := run(t, vm)
	assert.Equal(t, vcpu.ExitHypercall, x.Kind, "%+v", x)
	assert.EqualValues(t, hypercall.Count-1, x.Nr)
}

// TestSecondVCPU checks that a second vCPU of one System, which reuses the
// first one's special registers and TSC rate and gets its general registers
// with its first KVM_RUN, boots like the first; and that the descriptors of
// both are close-on-exec, as KVM creates them.
func TestSecondVCPU(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	s := system(t)
	for i := range 2 {
		vm, mem := rawVM(t, s, codeStoreCS)
		assert.Equal(t, vcpu.Exit{Kind: vcpu.ExitHypercall, Nr: 2, Arg: dataAddr}, run(t, vm), "vCPU %d", i)
		cs, err := mem.Uint64(dataAddr + 8)
		require.NoError(t, err)
		assert.EqualValues(t, 3, cs&3, "vCPU %d: CPL (CS.RPL)", i)
		assert.NotZero(t, vm.TSCHz(), "vCPU %d", i)
		for _, fd := range []int{vm.vmfd, vm.vcpufd} {
			flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
			require.NoError(t, err)
			assert.NotZero(t, flags&unix.FD_CLOEXEC, "vCPU %d: fd %d", i, fd)
		}
	}
}

func TestGuestRunsAtCPL3(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	vm, mem := rawVM(t, system(t), codeStoreCS)
	assert.Equal(t, vcpu.ExitHypercall, run(t, vm).Kind)
	cs, err := mem.Uint64(dataAddr + 8)
	require.NoError(t, err)
	assert.EqualValues(t, 3, cs&3, "CPL (CS.RPL)")
}

func TestAVX(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	vm, _ := rawVM(t, system(t), codeAVX)
	x := run(t, vm)
	assert.Equal(t, vcpu.ExitHypercall, x.Kind, "AVX at CPL 3 must not fault: %+v", x)
}

func TestFaults(t *testing.T) {
	cases := []struct {
		name string
		code []byte
		want vcpu.Exit
	}{
		// ud2
		{"invalid opcode", []byte{0x0f, 0x0b}, vcpu.Exit{Kind: vcpu.ExitFault, Vector: 6, RIP: codeAddr}},
		// mov 0x0,%rax: user read of a not-present page
		{"null read", []byte{0x48, 0x8b, 0x04, 0x25, 0, 0, 0, 0},
			vcpu.Exit{Kind: vcpu.ExitFault, Vector: 14, HasErrorCode: true, ErrorCode: 4, RIP: codeAddr, CR2: 0}},
		// movb $1,0x100000: user write to a present read-only page
		{"write to code", []byte{0xc6, 0x04, 0x25, 0x00, 0x00, 0x10, 0x00, 0x01},
			vcpu.Exit{Kind: vcpu.ExitFault, Vector: 14, HasErrorCode: true, ErrorCode: 7, RIP: codeAddr, CR2: codeAddr}},
		// mov 0x1000,%rax: the GDT is supervisor-only
		{"read GDT", []byte{0x48, 0x8b, 0x04, 0x25, 0x00, 0x10, 0x00, 0x00},
			vcpu.Exit{Kind: vcpu.ExitFault, Vector: 14, HasErrorCode: true, ErrorCode: 5, RIP: codeAddr, CR2: 0x1000}},
		// jmp *%rax with rax = 0x101000 (data, no-execute): mov $0x101000,%eax; jmp *%rax
		{"execute data", []byte{0xb8, 0x00, 0x10, 0x10, 0x00, 0xff, 0xe0},
			vcpu.Exit{Kind: vcpu.ExitFault, Vector: 14, HasErrorCode: true, ErrorCode: 0x15, RIP: dataAddr, CR2: dataAddr}},
		// outb %al,$0x80: outside the I/O bitmap
		{"bad port", []byte{0xe6, 0x80}, vcpu.Exit{Kind: vcpu.ExitBadIO, Port: 0x80, Size: 1, Out: true, RIP: codeAddr}},
		// mov $39,%eax; mov $0x11223344,%ecx; syscall: #UD on hardware (EFER.SCE
		// is clear), a fetch from LSTAR on kvm_pvm; a system call on both
		{"syscall", []byte{0xb8, 39, 0, 0, 0, 0xb9, 0x44, 0x33, 0x22, 0x11, 0x0f, 0x05},
			vcpu.Exit{Kind: vcpu.ExitSyscall, Reason: 39, RIP: codeAddr + 10}},
		// mov $1,%eax; int $0x80: #GP on hardware (beyond the IDT), #UD on kvm_pvm
		{"int 0x80", []byte{0xb8, 1, 0, 0, 0, 0xcd, 0x80}, vcpu.Exit{Kind: vcpu.ExitSyscall, Reason: 1, RIP: codeAddr + 5}},
		// mov $60,%eax; sysenter: #UD on AMD, #GP on Intel (SYSENTER_CS is 0)
		{"sysenter", []byte{0xb8, 60, 0, 0, 0, 0x0f, 0x34}, vcpu.Exit{Kind: vcpu.ExitSyscall, Reason: 60, RIP: codeAddr + 5}},
		// mov $0xF000,%eax; jmp *%rax: the syscall sentinel page is a plain
		// page fault when no syscall led there
		{"jump to syscall sentinel", []byte{0xb8, 0x00, 0xf0, 0, 0, 0xff, 0xe0},
			vcpu.Exit{Kind: vcpu.ExitFault, Vector: 14, HasErrorCode: true, ErrorCode: 0x14, RIP: x86.SyscallSentinel, CR2: x86.SyscallSentinel}},
		// mov $0x10000e,%ecx; mov $0xF000,%eax; jmp *%rax; ud2: RCX-2 is the
		// ud2, no syscall, so the jump is a plain page fault too
		{"sentinel with forged RCX", []byte{0xb9, 0x0e, 0x00, 0x10, 0x00, 0xb8, 0x00, 0xf0, 0, 0, 0xff, 0xe0, 0x0f, 0x0b},
			vcpu.Exit{Kind: vcpu.ExitFault, Vector: 14, HasErrorCode: true, ErrorCode: 0x14, RIP: x86.SyscallSentinel, CR2: x86.SyscallSentinel}},
		// hlt at CPL 3
		{"hlt", []byte{0xf4}, vcpu.Exit{Kind: vcpu.ExitFault, Vector: 13, HasErrorCode: true, RIP: codeAddr}},
		// xor %ecx,%ecx; div %ecx
		{"divide by zero", []byte{0x31, 0xc9, 0xf7, 0xf1}, vcpu.Exit{Kind: vcpu.ExitFault, Vector: 0, RIP: codeAddr + 2}},
	}
	s := system(t)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			vm, mem := rawVM(t, s, append(slices.Clip(c.code), codeMarker...))
			before := monitorState(t, mem)
			assert.Equal(t, c.want, run(t, vm))
			assertStopped(t, mem, before)
		})
	}
}

// codeMarker, appended to a faulting instruction, shows whether anything ran
// after it: movl $0x4b52414d,0x101800; ud2.
var codeMarker = []byte{0xc7, 0x04, 0x25, 0x00, 0x18, 0x10, 0x00, 0x4d, 0x41, 0x52, 0x4b, 0x0f, 0x0b}

const markerAddr = dataAddr + 0x800

// monitorState copies the monitor's structures in guest memory that no guest
// action may change: GDT, IDT, TSS, stubs and the page tables (the kernel
// stack is left out: every exception writes a frame there).
func monitorState(t *testing.T, mem *guestmem.Memory) []byte {
	t.Helper()
	const ptEnd = 0xA0000 // x86's page-table area ends here
	tables, err := mem.Slice(x86.GDTAddr, x86.KStackBottom-x86.GDTAddr)
	require.NoError(t, err)
	pts, err := mem.Slice(x86.PML4Addr, ptEnd-x86.PML4Addr)
	require.NoError(t, err)
	return append(slices.Clone(tables), pts...)
}

// assertStopped checks what tender promises after a fault, however the host
// delivered it: no guest instruction after the faulting one ran (the marker
// is unwritten) and the monitor's structures are as they were.
func assertStopped(t *testing.T, mem *guestmem.Memory, before []byte) {
	t.Helper()
	marker, err := mem.Uint64(markerAddr)
	require.NoError(t, err)
	assert.Zero(t, marker, "an instruction after the faulting one ran")
	assert.True(t, bytes.Equal(before, monitorState(t, mem)), "the monitor's GDT, IDT, TSS, stubs or page tables changed")
}

// TestInt3 checks that a guest cannot raise a software interrupt into the
// monitor's gates: int3 ends the run with a typed fault at the int3 and
// nothing after it runs. How it gets there depends on the host. On hardware
// the gates' DPL 0 turns it into #GP with an error code that names IDT entry
// 3; KVM on an SVM without next-RIP saving (as QEMU emulates it) re-injects
// the event after the instruction and the emulated CPU names another entry,
// so only the IDT flag of the error code is pinned; kvm_pvm delivers #BP
// through the DPL-0 gate, with RIP after the int3 as for any trap.
func TestInt3(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	vm, mem := rawVM(t, system(t), append([]byte{0xcc}, codeMarker...))
	before := monitorState(t, mem)
	x := run(t, vm)
	assert.Equal(t, vcpu.ExitFault, x.Kind)
	switch x.Vector {
	case 3:
		assert.False(t, x.HasErrorCode)
	case 13:
		assert.True(t, x.HasErrorCode)
		assert.NotZero(t, x.ErrorCode&2, "the error code names an IDT entry: %#x", x.ErrorCode)
	default:
		t.Errorf("int3 raised vector %d, want #BP (3) or #GP (13)", x.Vector)
	}
	assert.Contains(t, []uint64{codeAddr, codeAddr + 1}, x.RIP)
	assertStopped(t, mem, before)
}

func TestKick(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	vm, _ := rawVM(t, system(t), codeSpin)
	time.AfterFunc(20*time.Millisecond, vm.Kick)
	start := time.Now()
	assert.Equal(t, vcpu.ExitKicked, run(t, vm).Kind)
	// A hang check with room for a busy 2-core host, not a latency
	// measurement.
	assert.Less(t, time.Since(start), 1500*time.Millisecond)
	assert.Equal(t, vcpu.ExitKicked, run(t, vm).Kind, "a kick is final")
	vm.Close()
	vm.Kick() // after Close: must not touch the unmapped kvm_run
}

// TestKickFollowsThread enters the vCPU from one thread, then from another,
// where the guest spins: the kick must reach the thread that entered last.
func TestKickFollowsThread(t *testing.T) {
	// mov $0x502,%dx; out %eax,%dx; 1: jmp 1b
	vm, _ := rawVM(t, system(t), []byte{0x66, 0xba, 0x02, 0x05, 0xef, 0xeb, 0xfe})
	on := func(f func()) {
		done := make(chan struct{})
		go func() {
			runtime.LockOSThread() // a new thread: this one exits with it
			defer close(done)
			f()
		}()
		<-done
	}
	on(func() { assert.Equal(t, vcpu.ExitHypercall, run(t, vm).Kind) })
	kicked := make(chan vcpu.ExitKind, 1)
	go on(func() { kicked <- run(t, vm).Kind })
	time.Sleep(20 * time.Millisecond) // let it enter the guest
	vm.Kick()
	select {
	case k := <-kicked:
		assert.Equal(t, vcpu.ExitKicked, k)
	case <-time.After(10 * time.Second): // a hang check, not a measurement
		t.Fatal("the kick went to the thread that entered before")
	}
}

// TestSpinningGuestYields runs a spinning guest with one Go processor.
// KVM_RUN keeps it (a raw system call, see enter), so the rest of the
// process runs only because Go's preemption signal interrupts the guest
// and Run then yields: a garbage collection, which stops every goroutine,
// completes while the guest spins, and a goroutine that ran meanwhile stops
// it. Without the yield the collection never ends and nothing in the
// process runs again, its test timer included: so the scenario runs in a
// child process, which the test kills if it hangs. With preemption by
// signal turned off (GODEBUG=asyncpreemptoff=1), KVM_RUN blocks instead,
// and the same holds.
func TestSpinningGuestYields(t *testing.T) {
	if os.Getenv("TENDER_SPIN_CHILD") == "1" {
		spinningGuestYields(t)
		return
	}
	system(t)
	for _, godebug := range []string{"", "asyncpreemptoff=1"} {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // a hang check
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestSpinningGuestYields$", "-test.v")
		cmd.Env = append(os.Environ(), "TENDER_SPIN_CHILD=1", "GODEBUG="+godebug)
		out, err := cmd.CombinedOutput()
		cancel()
		require.NoError(t, err, "GODEBUG=%s: the collection or the kick waited for the spinning guest:\n%s", godebug, out)
		assert.Contains(t, string(out), "--- PASS: TestSpinningGuestYields", godebug)
	}
}

func spinningGuestYields(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	s := system(t)
	assert.Equal(t, !asyncPreemptOff(os.Getenv("GODEBUG")), s.rawRun)
	// movl $1, 0x101000; 1: jmp 1b
	vm, mem := rawVM(t, s, []byte{0xc7, 0x04, 0x25, 0x00, 0x10, 0x10, 0x00, 0x01, 0x00, 0x00, 0x00, 0xeb, 0xfe})
	exited := make(chan vcpu.ExitKind, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		x, err := vm.Run()
		assert.NoError(t, err)
		exited <- x.Kind
	}()
	for {
		// With one processor, this goroutine runs again only once the
		// guest has been interrupted (or its blocking KVM_RUN lets go).
		runtime.Gosched()
		if v, err := mem.Uint64(dataAddr); err == nil && v == 1 {
			break
		}
	}
	runtime.GC()
	select {
	case k := <-exited:
		t.Fatalf("the guest ended (%v) before it was stopped", k)
	default:
	}
	vm.Kick()
	assert.Equal(t, vcpu.ExitKicked, <-exited)
}

func TestAsyncPreemptOff(t *testing.T) {
	for godebug, want := range map[string]bool{
		"": false, "asyncpreemptoff=1": true, "asyncpreemptoff=0": false,
		"madvdontneed=1,asyncpreemptoff=1": true, "asyncpreemptoff=1,asyncpreemptoff=0": false,
		"gccheckmark=1": true, "gccheckmark=1,asyncpreemptoff=0": true, " asyncpreemptoff=1 ": true,
	} {
		assert.Equal(t, want, asyncPreemptOff(godebug), "GODEBUG=%q", godebug)
	}
}

func TestKickBeforeRun(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	vm, _ := rawVM(t, system(t), codeSpin)
	vm.Kick()
	assert.Equal(t, vcpu.ExitKicked, run(t, vm).Kind)
}

func TestNewVMRejects(t *testing.T) {
	s := system(t)
	mem, err := guestmem.New(4 << 20)
	require.NoError(t, err)
	defer mem.Close()
	_, err = s.NewVCPU(mem, vcpu.Boot{Regions: []vcpu.Region{{Addr: 0x1000, Size: 0x1000, Perm: vcpu.Read}}})
	assert.ErrorContains(t, err, "region 0 [0x1000, +0x1000) outside the guest's part of memory", "a region over the monitor's pages")
	assert.False(t, errors.Is(err, ErrUnavailable))
}

// BenchmarkExitOut measures one `out` exit from CPL 3 and its re-entry: the
// raw cost of tender's hypercall mechanism, without any handler.
func BenchmarkExitOut(b *testing.B) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	vm, _ := rawVM(b, system(b), codeOutLoop)
	b.ResetTimer()
	for range b.N {
		if x, err := vm.Run(); err != nil || x.Kind != vcpu.ExitHypercall {
			b.Fatalf("%+v %v", x, err)
		}
	}
}

// BenchmarkCreateRunClose measures VM creation, the guest's first exit and
// teardown: compare with bin/bench/kvm_floor (tests/fixtures/kvm_floor.c).
func BenchmarkCreateRunClose(b *testing.B) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	s := system(b)
	for range b.N {
		mem, err := guestmem.New(4 << 20)
		if err != nil {
			b.Fatal(err)
		}
		if err := mem.Write(codeAddr, codeTwoHypercalls); err != nil {
			b.Fatal(err)
		}
		vm, err := s.NewVCPU(mem, vcpu.Boot{
			Regions: []vcpu.Region{
				{Addr: codeAddr, Size: 0x1000, Perm: vcpu.Read | vcpu.Exec},
				{Addr: dataAddr, Size: mem.Size() - dataAddr, Perm: vcpu.Read | vcpu.Write},
			},
			Entry: codeAddr, StackTop: mem.Size(),
		})
		if err != nil {
			b.Fatal(err)
		}
		if x, err := vm.Run(); err != nil || x.Kind != vcpu.ExitHypercall {
			b.Fatalf("%+v %v", x, err)
		}
		vm.Close()
		mem.Close()
	}
}

// BenchmarkRunThread measures one `out` exit and its re-entry (one KVM_RUN)
// entered from the same thread as the one before, beside one entered from a
// different thread each time. Both pay the same hand-offs: two goroutines
// locked to their threads take turns, and in same-thread the first makes
// both KVM_RUNs of a turn, in thread-change one each. A pool runs a KVM
// instance on whichever thread calls it; this shows what a thread change
// costs on the host at hand (an RCU grace period on kernels that wait for
// one when a vCPU's thread changes).
func BenchmarkRunThread(b *testing.B) {
	for _, change := range []bool{false, true} {
		name := "same-thread"
		if change {
			name = "thread-change"
		}
		b.Run(name, func(b *testing.B) {
			v, _ := rawVM(b, system(b), codeOutLoop)
			enter := func() bool {
				x, err := v.Run()
				return err == nil && x.Kind == vcpu.ExitHypercall
			}
			ping, pong := make(chan struct{}), make(chan bool)
			go func() { // the second thread
				runtime.LockOSThread()
				defer runtime.UnlockOSThread()
				for range ping {
					pong <- !change || enter()
				}
			}()
			defer close(ping)
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			b.ResetTimer()
			for i := 0; i < b.N; i += 2 {
				ok := enter() && (change || enter())
				ping <- struct{}{}
				if !<-pong || !ok {
					b.Fatal("the guest did not exit with its hypercall")
				}
			}
		})
	}
}
