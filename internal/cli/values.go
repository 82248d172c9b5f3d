package cli

import (
	"flag"
	"regexp"
	"time"
)

// badValue is how the flag package reports a value it could not parse.
var badValue = regexp.MustCompile(`(invalid value ".*" for flag -([^:\s]+)): (parse error|value out of range)`)

// explainBadValue replaces the flag package's "parse error" in out with
// what the flag wants: a duration with its unit, a whole number.
func explainBadValue(fs *flag.FlagSet, out string) string {
	return badValue.ReplaceAllStringFunc(out, func(m string) string {
		sub := badValue.FindStringSubmatch(m)
		f := fs.Lookup(sub[2])
		if f == nil {
			return m
		}
		g, ok := f.Value.(flag.Getter)
		if !ok {
			return m
		}
		switch g.Get().(type) {
		case time.Duration:
			return sub[1] + ": want a duration with its unit, such as 500ms, 10s or 1m"
		case uint, uint64:
			return sub[1] + ": want a whole number, 0 or more"
		case int, int64:
			return sub[1] + ": want a whole number"
		}
		return m
	})
}
