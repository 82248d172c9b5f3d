package cli

import (
	"flag"
	"strings"
	"time"
)

// explainBadValue replaces the flag package's "parse error" in out, the
// text of its `invalid value "V" for flag -NAME: parse error` line, with
// what the flag wants: a duration with its unit, a whole number. (Plain
// string search: package regexp would add 0.4 MB and its initialisation
// to every tender run.)
func explainBadValue(fs *flag.FlagSet, out string) string {
	const prefix, mid = `invalid value "`, `" for flag -`
	i := strings.Index(out, prefix)
	if i < 0 {
		return out
	}
	j := strings.Index(out[i:], mid)
	if j < 0 {
		return out
	}
	rest := out[i+j+len(mid):]
	name, reason, ok := strings.Cut(rest, ": ")
	if !ok || strings.ContainsAny(name, " \n") {
		return out
	}
	end := strings.IndexByte(reason, '\n')
	if end < 0 {
		end = len(reason)
	}
	if r := reason[:end]; r != "parse error" && r != "value out of range" {
		return out
	}
	f := fs.Lookup(name)
	if f == nil {
		return out
	}
	g, ok := f.Value.(flag.Getter)
	if !ok {
		return out
	}
	var want string
	switch g.Get().(type) {
	case time.Duration:
		want = "want a duration with its unit, such as 500ms, 10s or 1m"
	case uint, uint64:
		want = "want a whole number, 0 or more"
	case int, int64:
		want = "want a whole number"
	default:
		return out
	}
	if reason[:end] == "value out of range" {
		want = "out of range"
	}
	at := len(out) - len(reason)
	return out[:at] + want + out[at+end:]
}
