package tests

import (
	"context"
	"net"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tendervm/tender/hypercall/solo5"
	"github.com/tendervm/tender/monitor"
	"github.com/tendervm/tender/monitor/netdev"
	"github.com/tendervm/tender/monitor/vcpu"
)

func solo5Guest(t testing.TB, name string) []byte {
	t.Helper()
	return readGuest(t, filepath.Join("solo5", name))
}

// TestSolo5Guests boots the clean-room Solo5-ABI guests (guest/solo5) on
// each backend, at CPL 3 with their privileged set-up emulated, and checks
// their output, status and typed errors, hostile cases included.
func TestSolo5Guests(t *testing.T) {
	type check func(t *testing.T, res monitor.Result, err error, out string)
	exitsWith := func(status int, output string) check {
		return func(t *testing.T, res monitor.Result, err error, out string) {
			require.NoError(t, err)
			assert.Equal(t, status, res.Status)
			assert.Contains(t, out, output)
		}
	}
	faults := func(vector uint8, code uint64) check {
		return func(t *testing.T, res monitor.Result, err error, out string) {
			fe, ok := as[*monitor.FaultError](err)
			require.True(t, ok, "want a FaultError, got %v", err)
			assert.Equal(t, vector, fe.Vector, "vector: %v", err)
			assert.Equal(t, code, fe.ErrorCode, "error code: %v", err)
			assert.GreaterOrEqual(t, fe.RIP, uint64(0x100000), "fault RIP inside the image")
			assert.Equal(t, monitor.ExitCrashed, monitor.ExitCode(res.Status, err))
		}
	}
	protocol := func(reason string) check {
		return func(t *testing.T, res monitor.Result, err error, out string) {
			pe, ok := as[*monitor.ProtocolError](err)
			require.True(t, ok, "want a ProtocolError, got %v", err)
			assert.Contains(t, pe.Error(), reason)
			assert.Equal(t, monitor.ExitProtocol, monitor.ExitCode(res.Status, err))
		}
	}
	cases := []struct {
		guest string
		args  []string
		check check
	}{
		{"hello", []string{"a", "b"}, exitsWith(0, "cmdline: a b\nSUCCESS\n")},
		{"exit", []string{"7"}, exitsWith(7, "")},
		{"exit", []string{"239"}, exitsWith(239, "")},
		{"exit", []string{"240"}, protocol("exit status 240: want 0 to 239, or 255 to abort")},
		{"abort", nil, func(t *testing.T, res monitor.Result, err error, out string) {
			ae, ok := as[*monitor.AbortError](err)
			require.True(t, ok, "want an AbortError, got %v", err)
			assert.Contains(t, ae.Message, "abort status (255)")
			assert.Equal(t, "about to abort\n", out)
			assert.Equal(t, monitor.ExitAborted, monitor.ExitCode(res.Status, err))
		}},
		{"time", nil, exitsWith(0, "SUCCESS")},
		{"tls", nil, exitsWith(0, "SUCCESS")},
		{"fpu", nil, exitsWith(0, "SUCCESS")},
		// The benchmarks' guests (BenchmarkSolo5Compute, BenchmarkSolo5Console):
		// the state is the host program's (bin/guest/host/compute_host 1000).
		{"compute", []string{"1000"}, exitsWith(0, "compute: 1000 rounds, 12eaead265975125, ")},
		{"putsloop", []string{"3"}, exitsWith(0, "putsloop: 3 calls, ")},
		{"hostile", []string{"devices"}, exitsWith(0, "SUCCESS")},
		{"hostile", []string{"puts-ptr"}, protocol("solo5_puts: buffer: guest range [0x4001000, +0x4) outside guest memory")},
		{"hostile", []string{"puts-len"}, protocol("solo5_puts: length 1099511627776 exceeds 65536")},
		{"hostile", []string{"puts-monitor"}, protocol("solo5_puts: buffer: guest range [0x1000, +0x10) is not mapped for the guest")},
		{"hostile", []string{"arg-ptr"}, protocol("solo5_walltime: argument structure: guest range [0xfffff000, +0x8) outside guest memory")},
		{"hostile", []string{"arg-ro"}, protocol("needs rw-, but the guest's page")},
		{"hostile", []string{"halt-ptr"}, protocol("solo5_halt: argument structure")},
		{"hostile", []string{"halt-status"}, protocol("exit status 300")},
		{"hostile", []string{"unknown"}, protocol("unknown hypercall 20")},
		{"hostile", []string{"badport"}, protocol("4-byte out on port 0x5ff is not a hypercall")},
		{"hostile", []string{"execdata"}, faults(14, 0x15)},
		{"hostile", []string{"wrmsr"}, faults(13, 0)},
		{"hostile", []string{"cr3"}, faults(13, 0)},
		{"hostile", []string{"lret"}, faults(13, 0x10)},
		{"hostile", []string{"hlt"}, func(t *testing.T, res monitor.Result, err error, out string) {
			ce, ok := as[*monitor.CrashError](err)
			require.True(t, ok, "want a CrashError, got %v", err)
			assert.Equal(t, vcpu.ExitHalt, ce.Kind)
			assert.Equal(t, monitor.ExitCrashed, monitor.ExitCode(res.Status, err))
		}},
	}
	for _, b := range backends(t) {
		h := newHost(t, b)
		for _, c := range cases {
			t.Run(string(b)+"/"+c.guest+"/"+firstArg(c.args), func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				res, out, err := runGuest(ctx, t, h, monitor.Config{ELF: solo5Guest(t, c.guest), Args: c.args})
				c.check(t, res, err, out)
			})
		}
	}
}

func firstArg(args []string) string {
	if len(args) == 0 {
		return "-"
	}
	return args[0]
}

// TestSolo5EmulationLoop: a guest that traps for emulation for ever is still
// stopped by its context, on each backend.
func TestSolo5EmulationLoop(t *testing.T) {
	for _, b := range backends(t) {
		h := newHost(t, b)
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		res, _, err := runGuest(ctx, t, h, monitor.Config{ELF: solo5Guest(t, "hostile"), Args: []string{"cli-loop"}})
		cancel()
		_, ok := as[*monitor.StoppedError](err)
		require.True(t, ok, "%s: want a StoppedError, got %v", b, err)
		assert.Equal(t, monitor.ExitTimeout, monitor.ExitCode(res.Status, err), b)
		assert.EqualValues(t, 1, res.Stats.Exits[vcpu.ExitKicked], b)
	}
}

// TestSolo5Config: a Solo5 guest's arguments follow tender's rules, and a
// device it does not declare cannot be attached.
func TestSolo5Config(t *testing.T) {
	h := newHost(t, monitor.BackendProcess)
	_, err := h.New(monitor.Config{ELF: solo5Guest(t, "hello"), Args: []string{"has space"}})
	assert.ErrorContains(t, err, "guest argument 0 (\"has space\") is empty or contains white space")
	dev, ep, err := netdev.NewPipe()
	require.NoError(t, err)
	defer dev.Close()
	defer ep.Close()
	_, err = h.New(monitor.Config{ELF: solo5Guest(t, "hello"), Net: map[string]netdev.Device{"service0": dev}})
	assert.ErrorContains(t, err, `network device "service0" was attached but the guest declares no network devices`)
}

// TestSolo5Memory4GiB: a Solo5 guest may have 4 GiB of memory, as Solo5
// allows (its stack, at the top, and hypercall arguments there included);
// a tender guest at most hypercall.MemMax.
func TestSolo5Memory4GiB(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(string(b), func(t *testing.T) {
			h := newHost(t, b)
			res, out, err := runGuest(context.Background(), t, h, monitor.Config{ELF: solo5Guest(t, "hello"), Args: []string{"mem"}, MemSize: solo5.MemMax})
			require.NoError(t, err)
			assert.Equal(t, 0, res.Status)
			assert.Equal(t, "Hello, Solo5 from tender! cmdline: mem\nmem_size 4294967296, stack near 4293918720\nSUCCESS\n", out)

			_, err = h.New(monitor.Config{ELF: solo5Guest(t, "hello"), MemSize: solo5.MemMax + solo5.MemAlign})
			assert.ErrorContains(t, err, "want a multiple of 2 MiB from 4 MiB to 3072 MiB (4096 MiB for a Solo5 guest)")
			_, err = h.New(monitor.Config{ELF: readGuest(t, "hello"), MemSize: solo5.MemMax})
			assert.ErrorContains(t, err, "guest memory of 4294967296 bytes: want a multiple of 2 MiB from 4 MiB to 3072 MiB")
		})
	}
}

// TestSolo5NetEcho: a Solo5 guest's network device, through the in-process
// pipe device: the manifest copy says it is attached with its MAC and MTU,
// poll's ready set has its handle's bit, and frames go both ways.
func TestSolo5NetEcho(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(string(b), func(t *testing.T) {
			h := newHost(t, b)
			dev, ep, err := netdev.NewPipe()
			require.NoError(t, err)
			defer dev.Close()
			defer ep.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			const n = 3
			type result struct {
				res monitor.Result
				out string
				err error
			}
			done := make(chan result, 1)
			go func() {
				res, out, err := runGuest(ctx, t, h, monitor.Config{ELF: solo5Guest(t, "netecho"), Args: []string{"3"},
					Net: map[string]netdev.Device{"service0": dev}})
				done <- result{res, out, err}
			}()
			mac := ep.GuestMAC()
			peer := [6]byte{0x02, 0, 0, 0, 0, 0x99}
			for i := range n {
				frame := append(append(append([]byte{}, mac[:]...), peer[:]...), 0x88, 0xb5, byte(i), 'x', 'y')
				require.NoError(t, ep.WriteFrame(frame))
				echo, err := ep.ReadFrame(ctx)
				require.NoError(t, err)
				want := append(append(append([]byte{}, peer[:]...), mac[:]...), 0x88, 0xb5, byte(i), 'x', 'y')
				assert.Equal(t, want, echo)
			}
			r := <-done
			require.NoError(t, r.err)
			assert.Equal(t, 0, r.res.Status)
			assert.Equal(t, "mac "+net.HardwareAddr(mac[:]).String()+"\nready\nSUCCESS\n", r.out)
			require.Len(t, r.res.Stats.Net, 1)
			assert.EqualValues(t, n, r.res.Stats.Net[0].FramesIn)
			assert.EqualValues(t, n, r.res.Stats.Net[0].FramesOut)
			hc := r.res.Stats.HypercallCounts()
			assert.EqualValues(t, n, hc["solo5_net_write"], "%v", hc)
			assert.EqualValues(t, 1, hc["solo5_halt"], "%v", hc)
		})
	}
}

// TestSolo5Manifest: every device a Solo5 guest declares must be attached,
// and only those.
func TestSolo5Manifest(t *testing.T) {
	h := newHost(t, monitor.BackendProcess)
	dev, ep, err := netdev.NewPipe()
	require.NoError(t, err)
	defer dev.Close()
	defer ep.Close()
	_, err = h.New(monitor.Config{ELF: solo5Guest(t, "netecho")})
	assert.EqualError(t, err, `monitor: guest declares network device "service0" but none was attached (-net service0=...)`)
	_, err = h.New(monitor.Config{ELF: solo5Guest(t, "netecho"), Net: map[string]netdev.Device{"eth0": dev}})
	assert.EqualError(t, err, `monitor: network device "eth0" was attached but the guest declares only "service0"`)
}

// TestSolo5TAP runs the Solo5 echo guest on a TAP with solo5-hvt's
// spellings of the device flags (`--net:NAME=TAP`, `--net-mac:NAME=MAC`)
// and exchanges a raw Ethernet frame with it from the host's side.
func TestSolo5TAP(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(string(b), func(t *testing.T) {
			ns := newNetns(t)
			// The frame's exchange goes through a packet socket on the
			// namespace's side of the TAP.
			var fd int
			var hostMAC net.HardwareAddr
			require.NoError(t, ns.do(func() error {
				ifi, err := net.InterfaceByName("tap0")
				if err != nil {
					return err
				}
				hostMAC = ifi.HardwareAddr
				fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(0x88b5)))
				if err != nil {
					return err
				}
				return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(0x88b5), Ifindex: ifi.Index})
			}))
			defer unix.Close(fd)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			var out lockedBuffer
			cmd := ns.command(ctx, filepath.Join(root, "bin", "tender"), "run", "-backend", string(b),
				"--net:service0=tap0", "--net-mac:service0=02:00:00:00:00:07", "--mem=32",
				solo5GuestPath("netecho"), "1")
			cmd.Stdout, cmd.Stderr = &out, &out
			require.NoError(t, cmd.Start())
			guest := [6]byte{2, 0, 0, 0, 0, 7}
			frame := append(append(append([]byte{}, guest[:]...), hostMAC...), 0x88, 0xb5, 's', 'o', 'l', 'o', '5')
			buf := make([]byte, 2048)
			// Until the guest is up its TAP drops frames: resend.
			var echo []byte
			for echo == nil && ctx.Err() == nil {
				_, err := unix.Write(fd, frame)
				require.NoError(t, err)
				tv := unix.NsecToTimeval(int64(200 * time.Millisecond))
				require.NoError(t, unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv))
				for {
					n, err := unix.Read(fd, buf)
					if err == unix.EINTR {
						continue
					}
					if err != nil {
						break
					}
					// The socket also sees the frames the host sends.
					if n >= 14 && [6]byte(buf[6:12]) == guest {
						echo = buf[:n]
						break
					}
				}
			}
			require.NoError(t, cmd.Wait(), "%s", out.String())
			require.NotNil(t, echo, "no echo: %s", out.String())
			assert.Equal(t, []byte(hostMAC), echo[:6])
			assert.Equal(t, []byte("solo5"), echo[14:19])
			assert.Contains(t, out.String(), "mac 02:00:00:00:00:07\nready\n")
			assert.Contains(t, out.String(), "SUCCESS")
		})
	}
}

func solo5GuestPath(name string) string { return guestPath(filepath.Join("solo5", name)) }

func htons(v uint16) uint16 { return v<<8 | v>>8 }
