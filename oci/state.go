package oci

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Files in a container's state directory, <root>/<id>.
const (
	stateFile = "tender.json"
	// fifoFile is what the monitor process waits on until start opens it.
	fifoFile = "exec.fifo"
)

// validID is what runc accepts as a container ID; it keeps IDs plain names
// inside the root directory.
var validID = regexp.MustCompile(`^[\w+\-.]+$`)

// ErrNotExist is returned for a container that tender-oci does not have.
var ErrNotExist = errors.New("container does not exist")

// Record is what create writes of a tender container, in
// <root>/<id>/tender.json.
type Record struct {
	ID     string `json:"id"`
	Bundle string `json:"bundle"`
	Rootfs string `json:"rootfs"`
	// Pid is the monitor process; 0 while it is being created.
	Pid int `json:"pid"`
	// StartTime is the process's start time in clock ticks since boot
	// (/proc/PID/stat field 22), so a recycled PID is not taken for it.
	StartTime   uint64            `json:"start_time"`
	Created     time.Time         `json:"created"`
	Annotations map[string]string `json:"annotations,omitempty"`
	// Args are process.args; Name is the guest's name.
	Args    []string `json:"args"`
	Name    string   `json:"name"`
	Options Options  `json:"options"`
	// NetNS is the network namespace joined (a path), "" when created
	// or the host's.
	NetNS string `json:"netns,omitempty"`
	// NetDevice is a network guest's device; TAP the TAP create made for
	// it in NetNS, and NetArgs what the guest is told of eth0.
	NetDevice string   `json:"net_device,omitempty"`
	TAP       string   `json:"tap,omitempty"`
	NetArgs   []string `json:"net_args,omitempty"`
}

// checkID refuses IDs that are not plain names.
func checkID(id string) error {
	if id == "" || id == "." || id == ".." || !validID.MatchString(id) {
		return fmt.Errorf("invalid container ID %q: want letters, digits and the characters _+-. only", id)
	}
	return nil
}

// stateDir is the state directory of container id under root.
func stateDir(root, id string) string { return filepath.Join(root, id) }

// readRecord reads container id's record, or ErrNotExist.
func readRecord(root, id string) (*Record, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(filepath.Join(stateDir(root, id), stateFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("container %s: %w", id, ErrNotExist)
	}
	if err != nil {
		return nil, err
	}
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("container %s: state file: %w", id, err)
	}
	return &r, nil
}

// errCreating is lockState's error while create holds the lock.
var errCreating = errors.New("its create is still at work")

// lockState takes the exclusive lock on container state directory dir
// (flock, so the kernel drops it when its holder dies), or fails at once
// with errCreating if it is held. It returns the function that drops it.
func lockState(dir string) (func(), error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: dir, Err: err}
	}
	if err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		unix.Close(fd)
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, errCreating
		}
		return nil, &os.PathError{Op: "flock", Path: dir, Err: err}
	}
	return func() { unix.Close(fd) }, nil
}

// writeRecord replaces the record atomically (rename), so a concurrent
// state never reads half of it.
func writeRecord(root string, r *Record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return writeAtomic(filepath.Join(stateDir(root, r.ID), stateFile), b)
}

// writeAtomic writes a file through a temporary file and a rename. The
// temporary file is new (O_EXCL) with a random name: the pid file's
// directory may be writable by anyone, and a fixed name there could be a
// planted link that root would write through.
func writeAtomic(path string, b []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// procState is a process as /proc/PID/stat shows it.
type procState struct {
	state     byte // R, S, Z, ...
	startTime uint64
}

// readProc reads /proc/PID/stat; an error means no such process.
func readProc(pid int) (procState, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procState{}, err
	}
	p, err := parseStat(b)
	if err != nil {
		return procState{}, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return p, nil
}

// parseStat parses the contents of a /proc/PID/stat.
func parseStat(b []byte) (procState, error) {
	// The command name, in parentheses, may hold anything: the fields
	// that follow start after its last ')'.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return procState{}, errors.New("no command name")
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state), so field 22 (starttime) is f[19].
	if len(f) < 20 || len(f[0]) != 1 {
		return procState{}, fmt.Errorf("%d fields", len(f))
	}
	st, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return procState{}, fmt.Errorf("start time: %w", err)
	}
	return procState{state: f[0][0], startTime: st}, nil
}

// alive reports whether r's monitor process still runs: same PID and start
// time, and not a zombie waiting for the shim to reap it.
func (r *Record) alive() bool {
	if r.Pid <= 0 {
		return false
	}
	p, err := readProc(r.Pid)
	return err == nil && p.startTime == r.StartTime && p.state != 'Z' && p.state != 'X'
}

// Status is the container's OCI state: creating until create has recorded
// the process (for good if create died first: delete removes it), created
// while it waits for start (its FIFO exists), running until it exits, then
// stopped.
func (r *Record) Status(root string) specs.ContainerState {
	switch {
	case r.Pid == 0:
		return specs.StateCreating
	case !r.alive():
		return specs.StateStopped
	}
	if _, err := os.Lstat(filepath.Join(stateDir(root, r.ID), fifoFile)); err == nil {
		return specs.StateCreated
	}
	return specs.StateRunning
}

// stateJSON is the `state` output: the OCI state plus what runc adds and
// containerd's go-runc reads (rootfs, created).
type stateJSON struct {
	specs.State
	Rootfs  string    `json:"rootfs"`
	Created time.Time `json:"created"`
	Owner   string    `json:"owner"`
}

// ociState returns the container's state as `state` prints it.
func (r *Record) ociState(root string) stateJSON {
	st := r.Status(root)
	s := stateJSON{
		State: specs.State{
			Version:     specs.Version,
			ID:          r.ID,
			Status:      st,
			Bundle:      r.Bundle,
			Annotations: r.Annotations,
		},
		Rootfs:  r.Rootfs,
		Created: r.Created,
	}
	if st == specs.StateCreated || st == specs.StateRunning {
		s.Pid = r.Pid
	}
	return s
}
