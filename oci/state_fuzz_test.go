package oci

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"testing"
)

// statLine is a /proc/PID/stat line as the kernel writes it, with every
// field after the state and start time a number.
func statLine(comm string, state byte, start uint64) []byte {
	f := make([]string, 49)
	for i := range f {
		f[i] = fmt.Sprint(i + 4)
	}
	f[18] = fmt.Sprint(start) // field 22
	return fmt.Appendf(nil, "4242 (%s) %c %s\n", comm, state, strings.Join(f, " "))
}

// FuzzParseStat: parseStat never panics on a stat file's bytes; what it
// accepts reads the same with another field appended (the kernel adds
// fields at the end); and a line written as the kernel does reads back its
// state and start time whatever the command name holds, parentheses and
// fake fields included.
func FuzzParseStat(f *testing.F) {
	self, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(self, "tender", byte('S'), uint64(12345))
	f.Add(statLine(") Z 1 (", 'R', 7), ") Z 1 (", byte('Z'), uint64(1))
	f.Add([]byte("1 (a) R"), "a) R 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 (", byte('X'), uint64(1<<63))
	f.Add([]byte("1 (x)"), "", byte('D'), uint64(0))
	f.Add([]byte("1 (x) RR 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 -1"), "\n\t", byte('t'), uint64(99))
	f.Fuzz(func(t *testing.T, raw []byte, comm string, state byte, start uint64) {
		if p, err := parseStat(raw); err == nil {
			more := append(bytes.Clone(raw), " 0"...)
			if q, err := parseStat(more); err != nil || q != p {
				t.Fatalf("%q: %+v, but with a field more %+v, %v", raw, p, q, err)
			}
		}
		if state < 'A' || state > 'z' {
			state = 'A' + state%26
		}
		line := statLine(comm, state, start)
		p, err := parseStat(line)
		if err != nil || p != (procState{state: state, startTime: start}) {
			t.Fatalf("%q: %+v, %v", line, p, err)
		}
	})
}
