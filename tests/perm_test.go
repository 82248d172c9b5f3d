package tests

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tendervm/tender/monitor"
	"github.com/tendervm/tender/monitor/netdev"
)

// The monitor reads and writes hypercall buffers only where the guest itself
// may: these guests name their monitor's structures, their own code and
// read-only data, and unmapped memory. Each must end with a protocol error
// naming the buffer, before the monitor touches it, on every backend.

// The reasons a buffer is refused: not mapped, or mapped without the write
// permission an argument structure (read and written) or a buffer the
// monitor fills needs.
const (
	notMapped = "is not mapped for the guest at"
	needsRW   = "needs rw-, but the guest's page at"
	needsW    = "needs -w-, but the guest's page at"
)

func requireProtocol(t *testing.T, err error, reasons ...string) {
	t.Helper()
	pe, ok := as[*monitor.ProtocolError](err)
	require.True(t, ok, "want a ProtocolError, got %v", err)
	for _, r := range reasons {
		assert.Contains(t, pe.Error(), r)
	}
}

func TestHypercallBufferPermissions(t *testing.T) {
	cases := []struct {
		probe   string
		reasons []string
	}{
		{"console-gdt", []string{"console_write: buffer", notMapped + " 0x1000"}},
		{"console-idt", []string{"console_write: buffer", notMapped + " 0x2000"}},
		{"console-kstack", []string{"console_write: buffer", notMapped}},
		{"console-pagetables", []string{"console_write: buffer", notMapped + " 0x20000"}},
		{"console-hole", []string{"console_write: buffer", notMapped}},
		{"walltime-text", []string{"walltime: argument structure", "is r-x"}},
		{"walltime-rodata", []string{"walltime: argument structure", "is r--"}},
		{"walltime-bootinfo", []string{"walltime: argument structure", needsRW + " 0x10000 is r--"}},
		{"abort-idt", []string{"abort: message", notMapped + " 0x2000"}},
	}
	for _, b := range backends(t) {
		h := newHost(t, b)
		for _, c := range cases {
			t.Run(fmt.Sprintf("%s/%s", b, c.probe), func(t *testing.T) {
				res, out, err := runGuest(context.Background(), t, h, monitor.Config{ELF: readGuest(t, "permprobe"), Args: []string{c.probe}})
				requireProtocol(t, err, c.reasons...)
				assert.Equal(t, monitor.ExitProtocol, monitor.ExitCode(res.Status, err))
				assert.Equal(t, "permprobe: "+c.probe+"\n", out, "nothing of the buffer reached the console, nothing ran after the hypercall")
			})
		}
		// Controls: readable code and data may be written to the console,
		// and walltime may answer on the stack.
		for _, c := range []struct{ probe, out string }{
			{"console-rodata-ok", "permprobe: read from rodata\n"},
			{"console-text-ok", "served it"},
			{"walltime-stack-ok", "permprobe: walltime set\n"},
		} {
			res, out, err := runGuest(context.Background(), t, h, monitor.Config{ELF: readGuest(t, "permprobe"), Args: []string{c.probe}})
			require.NoError(t, err, "%s %s", b, c.probe)
			assert.Zero(t, res.Status)
			assert.Contains(t, out, c.out)
		}
	}
}

// TestFnBufferPermissions: fn_next's request buffer over the guest's own
// code (W^X: the guest would then call the request) or at address 0 (the
// IDT under KVM: the request would rewrite a gate and return to the guest at
// CPL 0), its reply from the IDT or the page tables, and its argument
// structure in read-only data.
func TestFnBufferPermissions(t *testing.T) {
	// mov $99, %eax; ret: what the guest would run if its code took the
	// request.
	code := []byte{0xb8, 0x63, 0, 0, 0, 0xc3}
	// An IDT gate 3 aimed at the guest's image with a CPL-0 selector.
	gate := make([]byte, 64)
	copy(gate[48:], []byte{0x00, 0x00, 0x08, 0x00, 0x00, 0xee, 0x10, 0x00})
	cases := []struct {
		probe   string
		body    []byte
		reasons []string
	}{
		{"fn-reqbuf-text", code, []string{"fn_next: request buffer", needsW, "is r-x"}},
		{"fn-reqbuf-zero", gate, []string{"fn_next: request buffer", notMapped + " 0x0"}},
		{"fn-reply-idt", []byte("x"), []string{"fn_next: reply body", notMapped + " 0x2000"}},
		{"fn-reply-pagetables", []byte("x"), []string{"fn_next: reply body", notMapped + " 0x20000"}},
		{"fn-args-rodata", []byte("x"), []string{"fn_next: argument structure", "is r--"}},
	}
	for _, b := range backends(t) {
		h := newHost(t, b)
		for _, mode := range []monitor.Mode{monitor.Cold, monitor.Warm} {
			for _, c := range cases {
				t.Run(fmt.Sprintf("%s/%s/%s", b, mode, c.probe), func(t *testing.T) {
					var out lockedBuffer
					p := newPool(t, h, "permprobe", monitor.PoolConfig{Mode: mode, Guest: monitor.Config{Args: []string{c.probe}, Console: &out}})
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					defer cancel()
					_, err := p.Invoke(ctx, monitor.Request{Body: c.body})
					requireProtocol(t, err, c.reasons...)
					assert.NotContains(t, out.String(), "calling the request")
				})
			}
		}
	}
}

func TestNetBufferPermissions(t *testing.T) {
	cases := []struct {
		probe   string
		reasons []string
	}{
		{"netwrite-idt", []string{"net_write: frame", notMapped + " 0x2000"}},
		{"netread-text", []string{"net_read: buffer", "is r-x"}},
		{"netread-bootinfo", []string{"net_read: buffer", needsW + " 0x10000 is r--"}},
		{"netinfo-rodata", []string{"net_info: argument structure", "is r--"}},
	}
	frame := make([]byte, 64)
	copy(frame, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 1, 0x88, 0xb5})
	run := func(t *testing.T, h *monitor.Host, probe string) (monitor.Result, string, error) {
		dev, ep, err := netdev.NewPipe()
		require.NoError(t, err)
		defer dev.Close()
		defer ep.Close()
		// A frame is waiting, so a read that were served would write it.
		require.NoError(t, ep.WriteFrame(frame))
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return runGuest(ctx, t, h, monitor.Config{ELF: readGuest(t, "permnet"), Args: []string{probe}, Net: map[string]netdev.Device{"net0": dev}})
	}
	for _, b := range backends(t) {
		h := newHost(t, b)
		for _, c := range cases {
			t.Run(fmt.Sprintf("%s/%s", b, c.probe), func(t *testing.T) {
				_, out, err := run(t, h, c.probe)
				requireProtocol(t, err, c.reasons...)
				assert.Equal(t, "permnet: "+c.probe+"\n", out)
			})
		}
		res, out, err := run(t, h, "netread-ok")
		require.NoError(t, err, b)
		assert.Zero(t, res.Status)
		assert.Contains(t, out, "served it")
	}
}
