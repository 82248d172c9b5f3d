package cli

import (
	"flag"
	"fmt"
	"strings"

	"github.com/tendervm/tender/monitor/netdev"
)

// solo5Spellings are solo5-hvt's device options, `--KIND:NAME=VALUE`, and
// the flag each stands for (`-FLAG NAME=VALUE`); `--mem=MB` needs no
// rewriting. With them `tender run` takes a solo5-hvt command line.
var solo5Spellings = map[string]string{
	"--net:":     "net",
	"--net-mac:": "net-mac",
	"--block:":   "block",
}

// sectorSizePrefix is solo5-hvt's `--block-sector-size:NAME=N`, the block
// size of the block device NAME, which tender writes `-block NAME=PATH,bs=N`.
const sectorSizePrefix = "--block-sector-size:"

// rewriteSolo5 turns the solo5-hvt spellings among the flags at the start of
// args (up to the guest ELF or "--"; the guest's own arguments are left
// alone) into the flags of fs. A spelling whose flag fs lacks is a usage
// error.
func rewriteSolo5(fs *flag.FlagSet, args []string) ([]string, error) {
	out := make([]string, 0, len(args))
	var sizes []string // the --block-sector-size arguments, in order
	i := 0
	for ; i < len(args); i++ {
		a := args[i]
		if a == "--" || a == "-" || !strings.HasPrefix(a, "-") {
			break
		}
		if strings.HasPrefix(a, sectorSizePrefix) {
			if fs.Lookup("block") == nil {
				return nil, Usagef("%s: tender %s has no -block", a, strings.TrimPrefix(fs.Name(), "tender "))
			}
			sizes = append(sizes, a)
			continue
		}
		rewritten := false
		for prefix, name := range solo5Spellings {
			if v, ok := strings.CutPrefix(a, prefix); ok {
				if fs.Lookup(name) == nil {
					return nil, Usagef("%s: tender %s has no -%s", a, strings.TrimPrefix(fs.Name(), "tender "), name)
				}
				out, rewritten = append(out, "-"+name, v), true
				break
			}
		}
		if rewritten {
			continue
		}
		out = append(out, a)
		// A flag given as "-name value" takes the next argument too.
		name := strings.TrimLeft(a, "-")
		if strings.Contains(name, "=") {
			continue
		}
		if f := fs.Lookup(name); f != nil && i+1 < len(args) {
			if b, ok := f.Value.(interface{ IsBoolFlag() bool }); !ok || !b.IsBoolFlag() {
				i++
				out = append(out, args[i])
			}
		}
	}
	// Only tender's flags, not the guest's arguments, can name the device.
	for _, a := range sizes {
		if err := setSectorSize(out, a); err != nil {
			return nil, err
		}
	}
	return append(out, args[i:]...), nil
}

// setSectorSize applies one `--block-sector-size:NAME=N` to the -block
// flag of device NAME among the rewritten flags: it appends ",bs=N" to its
// value, which -block checks (a power of two from 512). A device without
// -block, or whose block size is given already, is a usage error.
func setSectorSize(flags []string, a string) error {
	name, n, ok := strings.Cut(strings.TrimPrefix(a, sectorSizePrefix), "=")
	if !ok || name == "" || n == "" {
		return Usagef("%s: want %sNAME=N", a, sectorSizePrefix)
	}
	for i, f := range flags {
		v := -1 // the index of the -block flag's value: "-block V" or "-block=V"
		switch {
		case (f == "-block" || f == "--block") && i+1 < len(flags):
			v = i + 1
		case strings.HasPrefix(f, "-block=") || strings.HasPrefix(f, "--block="):
			v = i
		}
		if v < 0 {
			continue
		}
		value := flags[v]
		if v == i {
			_, value, _ = strings.Cut(value, "=")
		}
		if !strings.HasPrefix(value, name+"=") {
			continue
		}
		var spec BlockFlags
		if spec.Set(value) == nil && spec[0].BlockSize != 0 {
			return Usagef("%s: the block size of %q is given twice", a, name)
		}
		flags[v] += ",bs=" + n
		return nil
	}
	return Usagef("%s: no block device %q (--block:%s=PATH)", a, name, name)
}

// MACFlags collects repeated -net-mac flags: NAME=MAC gives network device
// NAME the MAC address MAC instead of the one tender picks (a flag.Value).
type MACFlags map[string][6]byte

// String implements fmt.Stringer.
func (m *MACFlags) String() string {
	if m == nil || *m == nil {
		return ""
	}
	s := make([]string, 0, len(*m))
	for name, mac := range *m {
		s = append(s, name+"="+formatMAC(mac))
	}
	return strings.Join(s, ",")
}

// Set parses one NAME=MAC: a unicast MAC-48 address.
func (m *MACFlags) Set(v string) error {
	name, addr, ok := strings.Cut(v, "=")
	if !ok || name == "" {
		return fmt.Errorf("%q: want NAME=MAC", v)
	}
	hw, ok := parseMAC(addr)
	if !ok {
		return fmt.Errorf("%q: %q is not a MAC-48 address (like 02:00:00:00:00:01)", v, addr)
	}
	if hw[0]&1 != 0 {
		return fmt.Errorf("%q: %s is a multicast address", v, addr)
	}
	if *m == nil {
		*m = MACFlags{}
	}
	if _, dup := (*m)[name]; dup {
		return fmt.Errorf("%q: device %q given twice", v, name)
	}
	(*m)[name] = hw
	return nil
}

// macDevice is a network device with the MAC address -net-mac gave it.
type macDevice struct {
	netdev.Device
	mac [6]byte
}

// MAC implements netdev.Device.
func (d macDevice) MAC() [6]byte { return d.mac }

// parseMAC reads six two-digit hex bytes separated by ':' (solo5-hvt's
// form) or '-'. It is not net.ParseMAC because package net would link
// cgo's resolver into tender whenever cgo is enabled.
func parseMAC(s string) (mac [6]byte, ok bool) {
	if len(s) != 17 {
		return mac, false
	}
	sep := s[2]
	if sep != ':' && sep != '-' {
		return mac, false
	}
	for i := range mac {
		if i > 0 && s[3*i-1] != sep {
			return mac, false
		}
		hi, ok1 := hexDigit(s[3*i])
		lo, ok2 := hexDigit(s[3*i+1])
		if !ok1 || !ok2 {
			return mac, false
		}
		mac[i] = hi<<4 | lo
	}
	return mac, true
}

func hexDigit(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

func formatMAC(m [6]byte) string {
	return fmt.Sprintf("%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5])
}
