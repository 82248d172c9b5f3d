package oci

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Version is tender-oci's version, printed by --version.
const Version = "0.1.0"

// DefaultRoot is the state directory without --root.
const DefaultRoot = "/run/tender-oci"

// monitorCommand is the hidden command of the container's process: create
// starts tender-oci again with it.
const monitorCommand = "__monitor"

// runtime is one invocation of tender-oci: the global flags and where
// messages go.
type runtime struct {
	// args are the command line after the program name, unchanged: what
	// runc gets for a container that is not a tender guest.
	args   []string
	root   string
	log    io.Writer // --log, or stderr
	json   bool      // --log-format json
	stdout io.Writer
	stderr io.Writer
	// runc is the program delegated to: "runc" in PATH unless set.
	runc string
}

// Main runs tender-oci with the command line args (without the program
// name) and returns its exit status.
func Main(args []string, stdout, stderr io.Writer) int {
	rt := &runtime{args: args, stdout: stdout, stderr: stderr, log: stderr, runc: "runc"}
	fs := flag.NewFlagSet("tender-oci", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&rt.root, "root", DefaultRoot, "directory of the containers' state")
	logPath := fs.String("log", "", "append errors to this file (default: stderr)")
	logFormat := fs.String("log-format", "text", "text or json")
	version := fs.Bool("version", false, "print the version")
	fs.BoolVar(version, "v", false, "print the version")
	// Accepted for runc compatibility; they concern runc's own
	// containers, which get the command line unchanged.
	fs.Bool("debug", false, "accepted for runc compatibility")
	fs.Bool("systemd-cgroup", false, "accepted for runc compatibility")
	fs.String("criu", "criu", "accepted for runc compatibility")
	fs.String("rootless", "auto", "accepted for runc compatibility")
	fs.Usage = func() { usage(stderr, fs) }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 1
	}
	switch *logFormat {
	case "text":
	case "json":
		rt.json = true
	default:
		fmt.Fprintf(stderr, "tender-oci: --log-format %q: want text or json\n", *logFormat)
		return 1
	}
	if *logPath != "" {
		f, err := os.OpenFile(*logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE|syscall.O_CLOEXEC, 0o600)
		if err != nil {
			fmt.Fprintf(stderr, "tender-oci: --log: %v\n", err)
			return 1
		}
		defer f.Close()
		rt.log = f
	}
	if *version {
		fmt.Fprintf(stdout, "tender-oci version %s\nspec: %s\n", Version, specs.Version)
		return 0
	}
	if fs.NArg() == 0 {
		usage(stderr, fs)
		return 1
	}
	if abs, err := filepath.Abs(rt.root); err == nil {
		rt.root = abs
	}
	cmd, rest := fs.Arg(0), fs.Args()[1:]
	var err error
	switch cmd {
	case "create":
		err = rt.create(rest)
	case "start":
		err = rt.start(rest)
	case "state":
		err = rt.state(rest)
	case "kill":
		err = rt.kill(rest)
	case "delete":
		err = rt.delete(rest)
	case "ps":
		err = rt.ps(rest)
	case "features":
		err = rt.features()
	case monitorCommand:
		return runMonitor(rest)
	default:
		err = rt.other(cmd, rest)
	}
	if err != nil {
		rt.errorf("%v", err)
		return 1
	}
	return 0
}

func usage(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprint(w, `usage: tender-oci [global flags] COMMAND [flags] ID

A runc-compatible OCI runtime for tender guests; other containers go to runc.

commands:
  create --bundle DIR --pid-file FILE [--console-socket SOCK] ID
  start ID
  state ID
  kill ID [SIGNAL]
  delete [--force] ID
  ps [--format json] ID
  features

global flags:
`)
	fs.PrintDefaults()
}

// errorf reports an error on --log (a JSON line with --log-format json, as
// containerd's shim reads it) and on stderr when the log is elsewhere.
func (rt *runtime) errorf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if rt.json {
		b, _ := json.Marshal(map[string]string{"level": "error", "msg": msg, "time": time.Now().Format(time.RFC3339Nano)})
		fmt.Fprintf(rt.log, "%s\n", b)
	} else {
		fmt.Fprintf(rt.log, "tender-oci: %s\n", msg)
	}
	if rt.log != rt.stderr {
		fmt.Fprintf(rt.stderr, "tender-oci: %s\n", msg)
	}
}

// delegate replaces tender-oci by runc with the same command line. It
// returns only on failure.
func (rt *runtime) delegate() error {
	path, err := exec.LookPath(rt.runc)
	if err != nil {
		return fmt.Errorf("not a tender guest, and runc, which runs other containers, is not found: %w", err)
	}
	if self, err := os.Executable(); err == nil && sameFile(self, path) {
		return fmt.Errorf("not a tender guest, and %s, found as runc, is tender-oci itself", path)
	}
	err = syscall.Exec(path, append([]string{path}, rt.args...), os.Environ())
	return fmt.Errorf("exec %s: %w", path, err)
}

func sameFile(a, b string) bool {
	sa, err1 := os.Stat(a)
	sb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(sa, sb)
}

// other handles the commands tender-oci does not implement: runc's for its
// containers, an error for tender's. run and restore make a new container
// from a bundle: one create would take for a tender guest is refused, as
// runc could only fail with it or run it as a Linux program.
func (rt *runtime) other(cmd string, args []string) error {
	for _, a := range args {
		if checkID(a) != nil {
			continue
		}
		if _, err := readRecord(rt.root, a); err == nil {
			return fmt.Errorf("%s: not supported for tender containers", cmd)
		}
	}
	if cmd == "run" || cmd == "restore" {
		if err := refuseGuest(cmd, bundleFlag(args)); err != nil {
			return err
		}
	}
	return rt.delegate()
}

// refuseGuest returns an error if the bundle in dir is a tender guest's as
// create decides it: args[0] is a guest, or it has tender annotations. A
// bundle that does not load is runc's to report.
func refuseGuest(cmd, dir string) error {
	b, err := LoadBundle(dir)
	if err != nil {
		return nil
	}
	g, err := b.OpenGuest()
	if err != nil {
		return err
	}
	defer g.Close()
	if g.ELF != nil || Tendered(b.Spec.Annotations) {
		return fmt.Errorf("%s: not supported for tender guests (bundle %s runs %s): use create and start", cmd, b.Dir, g.Path)
	}
	return nil
}

// bundleFlag finds runc's --bundle in a command's arguments, in any of the
// forms runc takes (-b, --bundle, -bundle, with the value after "=" or as
// the next argument; the last one counts); "." without one, as for runc.
// The other flags are runc's, so args are scanned, not parsed.
func bundleFlag(args []string) string {
	dir := "."
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			break
		}
		name, value, hasValue := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-"), "=")
		if !strings.HasPrefix(a, "-") || (name != "b" && name != "bundle") {
			continue
		}
		switch {
		case hasValue:
			dir = value
		case i+1 < len(args):
			i++
			dir = args[i]
		}
	}
	return dir
}
