// Package proctest reads what tests check of a running process in /proc:
// fields of its threads' status, its descriptors and its memory.
package proctest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// ThreadField returns the named field of /proc/PID/task/*/status (such as
// "Seccomp" or "NoNewPrivs"), by thread id. Threads that end while it reads
// are left out.
func ThreadField(pid int, field string) (map[string]string, error) {
	dirs, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*", pid))
	if err != nil {
		return nil, err
	}
	got := map[string]string{}
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "status"))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if v, ok := statusField(string(b), field); ok {
			got[filepath.Base(d)] = v
		}
	}
	return got, nil
}

// Field returns the named field of /proc/PID/status (such as "Threads" or
// "VmRSS").
func Field(pid int, field string) (string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return "", err
	}
	v, ok := statusField(string(b), field)
	if !ok {
		return "", fmt.Errorf("/proc/%d/status has no %s", pid, field)
	}
	return v, nil
}

// FDs counts the process's open descriptors.
func FDs(pid int) (int, error) {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return len(ents), err
}

func statusField(status, field string) (string, bool) {
	for _, line := range strings.Split(status, "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return strings.TrimSpace(v), true
		}
	}
	return "", false
}

// Mapping is one line of /proc/PID/maps.
type Mapping struct {
	Start, End uint64
	// Perms is the permission field, such as "rw-p".
	Perms string
	// Name is the path or pseudo-name ("[stack]"), "" for none.
	Name string
}

// Maps returns the mappings of process pid, in address order.
func Maps(pid int) ([]Mapping, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		return nil, err
	}
	var ms []Mapping
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(line)
		lo, hi, ok := strings.Cut(f[0], "-")
		if len(f) < 5 || !ok {
			return nil, fmt.Errorf("proctest: maps line %q", line)
		}
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err := errors.Join(err1, err2); err != nil {
			return nil, fmt.Errorf("proctest: maps line %q: %w", line, err)
		}
		m := Mapping{Start: start, End: end, Perms: f[1]}
		if len(f) > 5 {
			m.Name = strings.Join(f[5:], " ")
		}
		ms = append(ms, m)
	}
	return ms, nil
}
