package tests

import (
	"errors"
	"net"
	"os"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The network benchmarks run in a namespace of their own (see newNetns):
// the guest net_udpecho on the TAP at 198.51.100.2 answers ping and UDP echo,
// and beside it, for comparison, the host answers at 198.51.100.1 inside the
// same namespace (the kernel for ping, a Go UDP echo server for UDP). Both
// paths are measured from the same sockets in the namespace, so the
// difference is what the TAP, the monitor and the guest add. They need root
// and are skipped without it.

var (
	benchGuest = [4]byte{198, 51, 100, 2}
	benchHost  = [4]byte{198, 51, 100, 1}
)

const hostEchoPort = 7007

// BenchmarkNet boots the guest once per backend and measures, side by side:
// ping round trip (median), UDP echo round trip (median) and UDP echo
// packets per second with 32 datagrams in flight.
func BenchmarkNet(b *testing.B) {
	needNetns(b)
	for _, be := range benchBackends(b) {
		b.Run(string(be), func(b *testing.B) {
			ns := newNetns(b)
			tap := ns.openTAP(b)
			startTAPGuest(b, be, tap, "net_udpecho")
			serveUDPEcho(b, ns)
			p := newPinger(b, ns)
			targets := []struct {
				name string
				ip   [4]byte
				port int
			}{{"guest", benchGuest, 7}, {"host", benchHost, hostEchoPort}}

			for _, tg := range targets {
				b.Run("ping/"+tg.name, func(b *testing.B) {
					measureRTT(b, func() (time.Duration, error) { return p.ping(tg.ip) })
				})
			}
			for _, tg := range targets {
				b.Run("udp-rtt/"+tg.name, func(b *testing.B) {
					c := ns.dialUDP(b, (&net.UDPAddr{IP: net.IP(tg.ip[:]), Port: tg.port}).String())
					msg := make([]byte, 64)
					buf := make([]byte, 2048)
					roundTrip := func() (time.Duration, error) {
						t0 := time.Now()
						c.SetDeadline(t0.Add(2 * time.Second))
						if _, err := c.Write(msg); err != nil {
							return 0, err
						}
						_, err := c.Read(buf)
						return time.Since(t0), err
					}
					measureRTT(b, roundTrip)
				})
			}
			for _, tg := range targets {
				b.Run("udp-pps/"+tg.name, func(b *testing.B) {
					c := ns.dialUDP(b, (&net.UDPAddr{IP: net.IP(tg.ip[:]), Port: tg.port}).String())
					const window = 32
					msg := make([]byte, 64)
					buf := make([]byte, 2048)
					c.SetDeadline(time.Now().Add(2 * time.Second))
					c.Write(msg) // ARP, warm-up
					if _, err := c.Read(buf); err != nil {
						b.Fatal(err)
					}
					c.SetDeadline(time.Time{})
					b.ResetTimer()
					start := time.Now()
					inflight, got, lost := 0, 0, 0
					for got < b.N {
						for ; inflight < window && got+inflight < b.N; inflight++ {
							if _, err := c.Write(msg); err != nil {
								b.Fatal(err)
							}
						}
						c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
						if _, err := c.Read(buf); err != nil {
							if !errors.Is(err, os.ErrDeadlineExceeded) {
								b.Fatal(err)
							}
							lost += inflight // what is missing now will not come
							inflight = 0
							continue
						}
						inflight--
						got++
					}
					el := time.Since(start)
					b.ReportMetric(float64(got)/el.Seconds(), "pkts/s")
					if lost > 0 {
						b.ReportMetric(float64(lost), "lost")
					}
				})
			}
		})
	}
}

// measureRTT runs roundTrip once to warm up (ARP), then b.N times, and
// reports the median and p99.
func measureRTT(b *testing.B, roundTrip func() (time.Duration, error)) {
	if _, err := roundTrip(); err != nil {
		b.Fatal(err)
	}
	rtts := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		d, err := roundTrip()
		if err != nil {
			b.Fatal(err)
		}
		rtts = append(rtts, d)
	}
	slices.Sort(rtts)
	b.ReportMetric(float64(rtts[len(rtts)/2].Nanoseconds())/1e3, "median-µs")
	b.ReportMetric(float64(rtts[len(rtts)*99/100].Nanoseconds())/1e3, "p99-µs")
}

// serveUDPEcho runs a Go UDP echo server on 198.51.100.1:hostEchoPort inside
// the namespace until the benchmark ends.
func serveUDPEcho(b *testing.B, ns *netns) {
	var c *net.UDPConn
	if err := ns.do(func() (err error) {
		c, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IP(benchHost[:]), Port: hostEchoPort})
		return err
	}); err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			n, from, err := c.ReadFromUDP(buf)
			if err != nil {
				return
			}
			c.WriteToUDP(buf[:n], from)
		}
	}()
	b.Cleanup(func() {
		c.Close()
		<-done
	})
}

// pinger sends ICMP echo requests from a raw socket in the namespace, one at
// a time.
type pinger struct {
	fd  int
	id  uint16
	seq uint16
	buf []byte
}

func newPinger(b *testing.B, ns *netns) *pinger {
	p := &pinger{id: uint16(os.Getpid()), buf: make([]byte, 2048)}
	if err := ns.do(func() (err error) {
		p.fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMP)
		return err
	}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { unix.Close(p.fd) })
	if err := unix.SetsockoptTimeval(p.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 2}); err != nil {
		b.Fatal(err)
	}
	return p
}

// ping sends one 56-byte echo request and waits for its reply.
func (p *pinger) ping(dst [4]byte) (time.Duration, error) {
	p.seq++
	msg := icmpEcho(8, p.id, p.seq, make([]byte, 56))
	t0 := time.Now()
	if err := unix.Sendto(p.fd, msg, 0, &unix.SockaddrInet4{Addr: dst}); err != nil {
		return 0, err
	}
	for {
		n, _, err := unix.Recvfrom(p.fd, p.buf, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, err
		}
		ip := p.buf[:n]
		if n < 20 {
			continue
		}
		icmp := ip[int(ip[0]&0xf)*4:]
		// The raw socket also sees the requests to 198.51.100.1.
		if len(icmp) >= 8 && icmp[0] == 0 && icmp[4] == byte(p.id>>8) && icmp[5] == byte(p.id) &&
			icmp[6] == byte(p.seq>>8) && icmp[7] == byte(p.seq) {
			return time.Since(t0), nil
		}
	}
}
