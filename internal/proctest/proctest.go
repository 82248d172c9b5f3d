// Package proctest reads what tests check of a running process in /proc:
// fields of its threads' status, its descriptors and its memory.
package proctest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
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
