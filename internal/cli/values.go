package cli

import (
	"errors"
	"flag"
	"time"
)

// explained is a flag's value whose Set says what a bad value should look
// like, where the flag package says only "parse error".
type explained struct {
	flag.Value
	want string
}

func (e explained) Set(s string) error {
	if err := e.Value.Set(s); err != nil {
		return errors.New(e.want)
	}
	return nil
}

// explainValues wraps fs's numeric and duration flags in explained values.
func explainValues(fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		g, ok := f.Value.(flag.Getter)
		if !ok {
			return
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
			return // bool flags keep their IsBoolFlag; strings cannot fail
		}
		f.Value = explained{f.Value, want}
	})
}
