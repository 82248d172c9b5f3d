package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// The subset of the OCI runtime specification (config.json) the bundles use.
type (
	ociSpec struct {
		OCIVersion string     `json:"ociVersion"`
		Process    ociProcess `json:"process"`
		Root       ociRoot    `json:"root"`
		Hostname   string     `json:"hostname,omitempty"`
		Mounts     []ociMount `json:"mounts"` // crun wants the key even when empty
		Linux      ociLinux   `json:"linux"`
	}
	ociProcess struct {
		Terminal        bool        `json:"terminal"`
		User            ociUser     `json:"user"`
		Args            []string    `json:"args"`
		Env             []string    `json:"env,omitempty"`
		Cwd             string      `json:"cwd"`
		Capabilities    *ociCaps    `json:"capabilities,omitempty"`
		Rlimits         []ociRlimit `json:"rlimits,omitempty"`
		NoNewPrivileges bool        `json:"noNewPrivileges,omitempty"`
	}
	ociUser struct {
		UID uint32 `json:"uid"`
		GID uint32 `json:"gid"`
	}
	ociCaps struct {
		Bounding  []string `json:"bounding"`
		Effective []string `json:"effective"`
		Permitted []string `json:"permitted"`
	}
	ociRlimit struct {
		Type string `json:"type"`
		Hard uint64 `json:"hard"`
		Soft uint64 `json:"soft"`
	}
	ociRoot struct {
		Path     string `json:"path"`
		Readonly bool   `json:"readonly"`
	}
	ociMount struct {
		Destination string   `json:"destination"`
		Type        string   `json:"type"`
		Source      string   `json:"source"`
		Options     []string `json:"options,omitempty"`
	}
	ociLinux struct {
		Resources     *ociResources  `json:"resources,omitempty"`
		Namespaces    []ociNamespace `json:"namespaces"`
		MaskedPaths   []string       `json:"maskedPaths,omitempty"`
		ReadonlyPaths []string       `json:"readonlyPaths,omitempty"`
	}
	ociResources struct {
		Devices []ociDeviceRule `json:"devices"`
	}
	ociDeviceRule struct {
		Allow  bool   `json:"allow"`
		Access string `json:"access"`
	}
	ociNamespace struct {
		Type string `json:"type"`
	}
)

// echoInBundle is where the static echo sits in a bundle's rootfs.
const echoInBundle = "/echo"

// ociConfig returns the bundle configuration: full, like the configuration a
// runtime generates by default (six namespaces, the usual /proc, /dev and
// /sys mounts, a capability set, masked and read-only paths, a device
// cgroup denying everything), or minimal (pid and mount namespaces, /proc,
// which runc needs to close inherited descriptors, and a tmpfs on /dev).
// Both run the echo as root on a read-only rootfs, without a terminal.
//
// /dev is a tmpfs in both: without one, the runtimes create their device
// nodes and /dev/ptmx in the bundle's rootfs itself, which every run of the
// row shares, and two runs doing so at once fail ("symlink pts/ptmx
// .../rootfs/dev/ptmx: file exists").
func ociConfig(full bool) ociSpec {
	s := ociSpec{
		OCIVersion: "1.0.2",
		Process: ociProcess{
			Args: []string{echoInBundle},
			Cwd:  "/",
		},
		Root: ociRoot{Path: "rootfs", Readonly: true},
		Mounts: []ociMount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{"/dev", "tmpfs", "tmpfs", []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		},
		Linux: ociLinux{Namespaces: []ociNamespace{{Type: "pid"}, {Type: "mount"}}},
	}
	if !full {
		return s
	}
	caps := []string{"CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"}
	s.Process.Env = []string{"PATH=/", "TERM=xterm"}
	s.Process.Capabilities = &ociCaps{Bounding: caps, Effective: caps, Permitted: caps}
	s.Process.Rlimits = []ociRlimit{{Type: "RLIMIT_NOFILE", Hard: 1024, Soft: 1024}}
	s.Process.NoNewPrivileges = true
	s.Hostname = "tender-bench"
	s.Mounts = append(s.Mounts,
		ociMount{"/dev/pts", "devpts", "devpts", []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}},
		ociMount{"/dev/shm", "tmpfs", "shm", []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
		ociMount{"/dev/mqueue", "mqueue", "mqueue", []string{"nosuid", "noexec", "nodev"}},
		ociMount{"/sys", "sysfs", "sysfs", []string{"nosuid", "noexec", "nodev", "ro"}},
		ociMount{"/sys/fs/cgroup", "cgroup", "cgroup", []string{"nosuid", "noexec", "nodev", "relatime", "ro"}},
	)
	s.Linux = ociLinux{
		Resources: &ociResources{Devices: []ociDeviceRule{{Allow: false, Access: "rwm"}}},
		Namespaces: []ociNamespace{
			{Type: "pid"}, {Type: "network"}, {Type: "ipc"}, {Type: "uts"}, {Type: "mount"}, {Type: "cgroup"},
		},
		MaskedPaths: []string{
			"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
			"/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
			"/sys/firmware", "/sys/dev/block",
		},
		ReadonlyPaths: []string{
			"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
		},
	}
	return s
}

// makeBundle writes an OCI bundle under dir: config.json and a rootfs
// holding the static echo and the empty directories the mounts need (the
// runtimes create /dev entries there, which a read-only rootfs cannot).
func makeBundle(dir, echo string, full bool) error {
	rootfs := filepath.Join(dir, "rootfs")
	for _, d := range []string{"dev", "proc", "sys"} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			return err
		}
	}
	if err := copyFile(echo, filepath.Join(rootfs, strings.TrimPrefix(echoInBundle, "/")), 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(ociConfig(full), "", "\t")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "config.json"), append(b, '\n'), 0o644)
}

// cgroup2Hybrid is the cgroup2 mount of a hybrid cgroup layout, which crun
// refuses ("cgroups in hybrid mode not supported").
const cgroup2Hybrid = "/sys/fs/cgroup/unified"

// enterPrivateMountNS moves the calling goroutine, locked to its thread for
// good, into a new mount namespace of that thread alone, with every mount
// made private (so nothing below propagates back to the host) and the hybrid
// cgroup2 mount detached. Processes the goroutine starts inherit that
// namespace: crun then sees a plain cgroup v1 layout, and the host's mounts
// are untouched. The thread is never unlocked, so the Go runtime ends it
// when the goroutine returns.
func enterPrivateMountNS() error {
	runtime.LockOSThread()
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		return fmt.Errorf("unshare(CLONE_NEWNS): %w", err)
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("making mounts private: %w", err)
	}
	err := unix.Unmount(cgroup2Hybrid, unix.MNT_DETACH)
	if err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("umount %s: %w", cgroup2Hybrid, err)
	}
	return nil
}

// ociSetup prepares a bundle and runs `RUNTIME run --bundle DIR ID` per
// request with a unique ID and a state directory of its own, deleting any
// container a failed request leaves behind. privateNS runs the runtime in
// the mount namespace of enterPrivateMountNS.
func (e *env) ociSetup(runtimeName string, full, privateNS bool) func(context.Context) (runner, error) {
	return func(ctx context.Context) (runner, error) {
		path, err := exec.LookPath(runtimeName)
		if err != nil {
			return nil, unavailable("%s not installed (`make bench-deps` installs crun and runc)", runtimeName)
		}
		if err := needFile(e.hostEcho()); err != nil {
			return nil, err
		}
		if os.Geteuid() != 0 {
			return nil, unavailable("%s needs root here (rootless containers are not measured)", runtimeName)
		}
		dir, err := os.MkdirTemp("", "tender-bench-"+runtimeName+"-")
		if err != nil {
			return nil, err
		}
		bundle, state := filepath.Join(dir, "bundle"), filepath.Join(dir, "state")
		if err := os.Mkdir(state, 0o700); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		if err := makeBundle(bundle, e.hostEcho(), full); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		global := []string{"--root", state}
		if runtimeName == "crun" && !full {
			global = append(global, "--cgroup-manager=disabled")
		}
		var seq atomic.Uint64
		prefix := fmt.Sprintf("tender-bench-%d-%s-", os.Getpid(), filepath.Base(dir)[len("tender-bench-"+runtimeName+"-"):])
		r := &procRunner{path: path, payload: e.cfg.Payload, maxrss: e.maxrss(), retryEmpty: true}
		if privateNS {
			r.enterFn = enterPrivateMountNS
		}
		del := func(id string) error {
			out, err := exec.Command(path, "--root", state, "delete", "--force", id).CombinedOutput()
			if err != nil {
				return fmt.Errorf("%s delete %s: %v: %s", runtimeName, id, err, trim(out))
			}
			return nil
		}
		r.argsFor = func() []string {
			return append(append([]string(nil), global...), "run", "--bundle", bundle, fmt.Sprintf("%s%d", prefix, seq.Add(1)))
		}
		r.after = func(args []string, err error) {
			if err != nil {
				del(args[len(args)-1]) // whatever the failed run left
			}
		}
		r.cleanup = func() error {
			// Delete leftovers (from the same namespace the runs used), then
			// the bundle and the state directory.
			err := inGoroutine(r, func() error {
				ents, err := os.ReadDir(state)
				if err != nil {
					return err
				}
				var errs []error
				for _, ent := range ents {
					if ent.IsDir() {
						errs = append(errs, del(ent.Name()))
					}
				}
				return errors.Join(errs...)
			})
			return errors.Join(err, os.RemoveAll(dir))
		}
		// One request now, so that a runtime that cannot work here is
		// reported with its own message.
		if err := inGoroutine(r, func() error { return onceWithTimeout(ctx, r) }); err != nil {
			return nil, errors.Join(unavailable("%s does not run here: %v", runtimeName, err), r.cleanup())
		}
		return r, nil
	}
}
