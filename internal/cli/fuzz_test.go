package cli

import (
	"flag"
	"io"
	"net"
	"slices"
	"strings"
	"testing"

	"github.com/tendervm/tender/hypercall"
)

// FuzzNetFlags sets -net values ("\n" between them) on one NetFlags: a
// refused value changes nothing, an accepted one adds a device whose
// String sets it again, and no two devices share a name or a descriptor.
func FuzzNetFlags(f *testing.F) {
	for _, s := range []string{
		"service0=tap0", "a=fd:3\nb=fd:3", "a=tap0\na=tap1", "a=fd:+4", "a=fd:-1", "=tap0", "a=",
		"a=tap/0", "a=b=c", "a=fd:", "a=fd:99999999999999999999", "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef=t",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		var n NetFlags
		for v := range strings.SplitSeq(in, "\n") {
			before := slices.Clone(n)
			if err := n.Set(v); err != nil {
				if !slices.Equal(n, before) {
					t.Fatalf("%q refused, but the devices are now %v", v, n)
				}
				continue
			}
			if len(n) != len(before)+1 {
				t.Fatalf("%q: %d devices after %d", v, len(n), len(before))
			}
			spec := n[len(n)-1]
			if (spec.TAP == "") == (spec.FD < 0) {
				t.Fatalf("%q: %+v", v, spec)
			}
			for _, o := range before {
				if o.Name == spec.Name || spec.TAP == "" && o.TAP == "" && o.FD == spec.FD {
					t.Fatalf("%q: %+v after %+v", v, spec, o)
				}
			}
			var again NetFlags
			if err := again.Set(spec.String()); err != nil || len(again) != 1 || again[0] != spec {
				t.Fatalf("%q: %+v, which as %q sets %v, %v", v, spec, spec.String(), again, err)
			}
		}
	})
}

// FuzzBlockFlags is FuzzNetFlags for -block: an accepted device has a
// path, a block size of 0 (the default) or a power of two in the ABI's
// range, and its String sets the same device again.
func FuzzBlockFlags(f *testing.F) {
	for _, s := range []string{
		"storage=disk.img", "d=a,b,ro", "d=a,bs=4096,ro", "d=a,ro,bs=512", "d=a,bs=3", "d=a,bs=1048576",
		"d=,ro", "d=a,bs=512,bs=1024", "d=x\nd=y", "=x", "d=a,bs=4096,x", "d=a,,ro", "d=a,bs=+512",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		var b BlockFlags
		for v := range strings.SplitSeq(in, "\n") {
			before := slices.Clone(b)
			if err := b.Set(v); err != nil {
				if !slices.Equal(b, before) {
					t.Fatalf("%q refused, but the devices are now %v", v, b)
				}
				continue
			}
			if len(b) != len(before)+1 {
				t.Fatalf("%q: %d devices after %d", v, len(b), len(before))
			}
			spec := b[len(b)-1]
			if spec.Path == "" || spec.Name == "" || strings.Contains(spec.Name, "=") {
				t.Fatalf("%q: %+v", v, spec)
			}
			if bs := spec.BlockSize; bs != 0 && (bs < hypercall.BlockSizeMin || bs > hypercall.BlockSizeMax || bs&(bs-1) != 0) {
				t.Fatalf("%q: block size %d", v, bs)
			}
			for _, o := range before {
				if o.Name == spec.Name {
					t.Fatalf("%q: device %q twice", v, spec.Name)
				}
			}
			var again BlockFlags
			if err := again.Set(spec.String()); err != nil || len(again) != 1 || again[0] != spec {
				t.Fatalf("%q: %+v, which as %q sets %v, %v", v, spec, spec.String(), again, err)
			}
		}
	})
}

// FuzzMACFlags: parseMAC reads a 17-character address exactly as
// net.ParseMAC reads a MAC-48 in the ':' or '-' form (tender cannot link
// package net), and -net-mac accepts the unicast ones, which print back
// to themselves.
func FuzzMACFlags(f *testing.F) {
	for _, s := range []string{
		"02:00:00:00:00:01", "02-00-00-00-00-01", "01:00:5e:00:00:01", "02:00:00:00:00:0G", "02:00-00:00:00:01",
		"0200.0000.0001", "02:00:00:00:00:01:02", "2:00:00:00:00:001", "AA:bb:CC:dd:EE:fe", "02:00:00:00:00:1",
	} {
		f.Add("net0", s)
	}
	f.Fuzz(func(t *testing.T, name, addr string) {
		mac, ok := parseMAC(addr)
		hw, err := net.ParseMAC(addr)
		want := err == nil && len(hw) == 6 && len(addr) == 17
		if ok != want || ok && !slices.Equal(mac[:], hw) {
			t.Fatalf("%q: parseMAC %x, %v; net.ParseMAC %x, %v", addr, mac, ok, hw, err)
		}
		var m MACFlags
		err = m.Set(name + "=" + addr)
		if err != nil {
			return
		}
		if strings.Contains(name, "=") || name == "" || !ok || mac[0]&1 != 0 || len(m) != 1 || m[name] != mac {
			t.Fatalf("%q=%q: set %v", name, addr, m)
		}
		if again, ok := parseMAC(formatMAC(mac)); !ok || again != mac {
			t.Fatalf("%x prints as %q", mac, formatMAC(mac))
		}
		if m.Set(name+"="+addr) == nil {
			t.Fatalf("%q given twice", name)
		}
	})
}

// FuzzRewriteSolo5 rewrites command lines ("\n" between arguments) for
// tender run's flags. As documented, each solo5-hvt device spelling
// becomes a flag and its value (one argument more), each
// --block-sector-size goes into its -block (one fewer) and nothing else
// is added; the arguments from the guest ELF on stay as they are; and the
// result, which holds no solo5-hvt spelling any more, rewrites to itself.
func FuzzRewriteSolo5(f *testing.F) {
	for _, s := range []string{
		"--mem=32\n--net:service0=tap0\n--net-mac:service0=02:00:00:00:00:07\n-no-seccomp\n-mem\n16\n--\nunikernel.hvt\n--net:x=y",
		"--block:d=disk.img\n--block-sector-size:d=4096\ng.elf",
		"--block-sector-size:d=4096\n--block:d=disk.img,bs=512\ng",
		"-block=d=f\n--block-sector-size:d=512\n-",
		"-mem\n--net:a=b\n--net:c=d\nguest",
		"--net:\n--net-mac:\n--block:\n--block-sector-size:",
		"--block-sector-size:d=4096\nguest\n--block:d=f",
		"-net\n--net:a=b",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		var g GuestFlags
		fs := flag.NewFlagSet("tender run", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		g.Register(fs)
		args := strings.Split(in, "\n")
		out, err := rewriteSolo5(fs, slices.Clone(args))
		if err != nil {
			return
		}
		spelled := 0
		for _, a := range args {
			for prefix := range solo5Spellings {
				if strings.HasPrefix(a, prefix) {
					spelled++
				}
			}
		}
		// Spellings among the guest's arguments, or taken as another
		// flag's value ("-mem" "" "--net:"), are counted too: the bound is
		// an upper one.
		if len(out) > len(args)+spelled {
			t.Fatalf("%q: %d arguments become %d: %q", args, len(args), len(out), out)
		}
		again, err := rewriteSolo5(fs, slices.Clone(out))
		if err != nil || !slices.Equal(again, out) {
			t.Fatalf("%q: rewritten %q, which rewrites to %q, %v", args, out, again, err)
		}
	})
}

// FuzzExplainBadValue: any text the flag package could print is either left
// as it is or has exactly its "parse error" replaced, and nothing panics.
func FuzzExplainBadValue(f *testing.F) {
	for _, s := range []string{
		"invalid value \"5\" for flag -timeout: parse error\nusage: tender run\n",
		"invalid value \"-1\" for flag -mem: parse error\n",
		"invalid value \"x\" for flag -nope: parse error\n",
		"invalid value \"x\" for flag -timeout: value out of range",
		"invalid value \"",
		"flag provided but not defined: -x\n",
		"",
	} {
		f.Add(s)
	}
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.Duration("timeout", 0, "")
	fs.Uint64("mem", 0, "")
	fs.Int("n", 0, "")
	f.Fuzz(func(t *testing.T, out string) {
		got := explainBadValue(fs, out)
		if got != out && !strings.Contains(got, "want a ") && !strings.Contains(got, "out of range") {
			t.Fatalf("%q became %q", out, got)
		}
	})
}
