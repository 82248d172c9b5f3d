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

// rewriteSolo5 turns the solo5-hvt spellings among the flags at the start of
// args (up to the guest ELF or "--"; the guest's own arguments are left
// alone) into the flags of fs. A spelling whose flag fs lacks is a usage
// error.
func rewriteSolo5(fs *flag.FlagSet, args []string) ([]string, error) {
	out := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" || a == "-" || !strings.HasPrefix(a, "-") {
			return append(out, args[i:]...), nil
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
	return out, nil
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
