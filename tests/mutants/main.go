// Command mutants checks that the tests catch a broken promise: it applies
// each one-line mutation of mutants.txt, one at a time, to a scratch copy of
// the tree, runs the tests named for it there and reports whether they
// failed (caught) or passed (survived). It exits 1 if any mutation survived
// or could not be applied.
//
//	go run ./tests/mutants [-list tests/mutants/mutants.txt] [-only NAME,...]
//
// Each entry of the list is a block of "key: value" lines, blocks separated
// by blank lines, '#' starting a comment line:
//
//	name: queue-limit
//	promise: a full queue refuses callers at once (docs/abi.md)
//	file: monitor/pool.go
//	old: if p.cfg.QueueLimit < 0 || len(p.waiters) >= p.cfg.QueueLimit {
//	new: if p.cfg.QueueLimit < 0 {
//	test: ./tests TestQueueLimit
//
// old must occur exactly once in file. test is a package pattern and a -run
// expression; several test lines run in turn, and any failure catches.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

type mutant struct {
	name, promise, file, old, new string
	tests                         [][2]string // package, -run
	line                          int
}

func parse(path string) ([]mutant, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var ms []mutant
	var cur *mutant
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		if strings.TrimSpace(line) == "" {
			cur = nil
			continue
		}
		key, val, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("%s:%d: want key: value", path, n)
		}
		val = strings.TrimPrefix(val, " ")
		if cur == nil {
			ms = append(ms, mutant{line: n})
			cur = &ms[len(ms)-1]
		}
		switch key {
		case "name":
			cur.name = val
		case "promise":
			cur.promise = val
		case "file":
			cur.file = val
		case "old":
			cur.old = val
		case "new":
			cur.new = val
		case "test":
			pkg, run, _ := strings.Cut(val, " ")
			cur.tests = append(cur.tests, [2]string{pkg, strings.TrimSpace(run)})
		default:
			return nil, fmt.Errorf("%s:%d: unknown key %q", path, n, key)
		}
	}
	for _, m := range ms {
		if m.name == "" || m.file == "" || m.old == "" || len(m.tests) == 0 {
			return nil, fmt.Errorf("%s:%d: entry needs name, file, old and test", path, m.line)
		}
	}
	return ms, sc.Err()
}

func main() {
	list := flag.String("list", "tests/mutants/mutants.txt", "the mutations")
	only := flag.String("only", "", "comma-separated names to run (default all)")
	keep := flag.Bool("keep", false, "keep the scratch copy")
	flag.Parse()
	ms, err := parse(*list)
	if err != nil {
		fmt.Fprintln(os.Stderr, "mutants:", err)
		os.Exit(2)
	}
	scratch, err := os.MkdirTemp("", "tender-mutants-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "mutants:", err)
		os.Exit(2)
	}
	if !*keep {
		defer os.RemoveAll(scratch)
	}
	// A copy of the working tree, built guests included (cp -a keeps their
	// times, so make does not rebuild them).
	if out, err := exec.Command("cp", "-a", ".", scratch).CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "mutants: copy the tree: %v\n%s", err, out)
		os.Exit(2)
	}
	want := map[string]bool{}
	for _, n := range strings.Split(*only, ",") {
		if n != "" {
			want[n] = true
		}
	}
	var caught, survived, broken int
	fmt.Printf("| mutation | promise | result |\n|---|---|---|\n")
	for _, m := range ms {
		if len(want) > 0 && !want[m.name] {
			continue
		}
		res := run(scratch, m)
		switch {
		case strings.HasPrefix(res, "caught"):
			caught++
		case strings.HasPrefix(res, "SURVIVED"):
			survived++
		default:
			broken++
		}
		fmt.Printf("| %s | %s | %s |\n", m.name, m.promise, res)
	}
	fmt.Printf("\n%d caught, %d survived, %d not applied\n", caught, survived, broken)
	if survived+broken > 0 {
		os.Exit(1)
	}
}

// run applies m in the scratch tree, runs its tests and restores the file.
func run(dir string, m mutant) string {
	path := filepath.Join(dir, m.file)
	orig, err := os.ReadFile(path)
	if err != nil {
		return "not applied: " + err.Error()
	}
	if n := strings.Count(string(orig), m.old); n != 1 {
		return fmt.Sprintf("not applied: `old` occurs %d times in %s", n, m.file)
	}
	if err := os.WriteFile(path, []byte(strings.Replace(string(orig), m.old, m.new, 1)), 0o644); err != nil {
		return "not applied: " + err.Error()
	}
	defer os.WriteFile(path, orig, 0o644)
	start := time.Now()
	for _, t := range m.tests {
		args := []string{"test", "-count=1", "-timeout", "300s"}
		if t[1] != "" {
			args = append(args, "-run", t[1])
		}
		cmd := exec.Command("go", append(args, t[0])...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			if strings.Contains(string(out), "[build failed]") || strings.Contains(string(out), "[setup failed]") {
				// A mutation that does not compile proves nothing.
				return "not applied: the mutated tree does not build"
			}
			return fmt.Sprintf("caught by %s %s (%.1fs)", t[0], t[1], time.Since(start).Seconds())
		}
	}
	return fmt.Sprintf("SURVIVED %d test runs (%.1fs)", len(m.tests), time.Since(start).Seconds())
}
