package gateway_test

import (
	"bytes"
	"sync"
	"testing"

	"github.com/tendervm/tender/gateway"
)

// TestConsoleWriter checks that every piece of guest output becomes one
// prefixed line with control bytes escaped, also under concurrent writers.
func TestConsoleWriter(t *testing.T) {
	var out bytes.Buffer
	w := gateway.NewConsoleWriter(&out, "fn: ")
	for _, s := range []string{"hello\n", "two\nlines\n", "half", "\x1b[31mred\r\n", "\n", "back\\slash \xff\n", ""} {
		if n, err := w.Write([]byte(s)); n != len(s) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", s, n, err)
		}
	}
	want := "fn: hello\nfn: two\nfn: lines\nfn: half\nfn: \\x1b[31mred\\r\nfn: \nfn: back\\\\slash \\xff\n"
	if out.String() != want {
		t.Errorf("got\n%s\nwant\n%s", out.String(), want)
	}

	out.Reset()
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				w.Write([]byte("a line from one guest\nand its second\n"))
			}
		})
	}
	wg.Wait()
	for _, l := range bytes.Split(bytes.TrimSuffix(out.Bytes(), []byte("\n")), []byte("\n")) {
		if s := string(l); s != "fn: a line from one guest" && s != "fn: and its second" {
			t.Fatalf("interleaved line %q", s)
		}
	}
}
