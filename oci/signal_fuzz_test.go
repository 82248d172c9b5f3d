package oci

import (
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// FuzzParseSignal: what ParseSignal accepts is a signal from 1 to 64, and
// it reads the same from each form the function documents: its number, and
// for a named signal its name with and without SIG, in any case.
func FuzzParseSignal(f *testing.F) {
	for _, s := range []string{
		"9", "KILL", "SIGKILL", "sigterm", "term", "0", "65", "64", "-1", "+9", "009",
		"SIG", "", "SIGSIGKILL", "SIGRTMIN", "99999999999999999999", "1e1", " 9",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sig, err := ParseSignal(s)
		if err != nil {
			if sig != 0 {
				t.Fatalf("%q: refused, yet %d", s, sig)
			}
			return
		}
		if sig < 1 || sig > 64 {
			t.Fatalf("%q: signal %d", s, sig)
		}
		forms := []string{strconv.Itoa(int(sig))}
		if name := unix.SignalName(sig); name != "" {
			short := strings.TrimPrefix(name, "SIG")
			forms = append(forms, name, short, strings.ToLower(name), strings.ToLower(short))
		}
		for _, form := range forms {
			if again, err := ParseSignal(form); err != nil || again != sig {
				t.Fatalf("%q is %d, but %q is %d, %v", s, sig, form, again, err)
			}
		}
	})
}
