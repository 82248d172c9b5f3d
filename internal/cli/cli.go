// Package cli holds what tender's commands share: the guest flags, reading a
// guest ELF, the exit-code contract and signal handling. It depends on
// package monitor only, so that `tender run` links nothing it does not need.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/tendervm/tender/hypercall"
	"github.com/tendervm/tender/hypercall/solo5"
	"github.com/tendervm/tender/monitor"
	"github.com/tendervm/tender/monitor/blockdev"
	"github.com/tendervm/tender/monitor/confine"
	"github.com/tendervm/tender/monitor/kvm"
	"github.com/tendervm/tender/monitor/loader"
	"github.com/tendervm/tender/monitor/netdev"
)

// UsageError marks command-line mistakes, which exit with monitor.ExitUsage.
type UsageError struct{ Err error }

// Error implements error.
func (e UsageError) Error() string { return e.Err.Error() }

// Unwrap returns the mistake.
func (e UsageError) Unwrap() error { return e.Err }

// Usagef returns a UsageError with a formatted message.
func Usagef(format string, args ...any) error { return UsageError{fmt.Errorf(format, args...)} }

// NewFlagSet makes the flag set of `tender NAME ARGS`; -h prints summary and
// the flags.
func NewFlagSet(name, args, summary string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("tender "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: tender %s %s\n\n%s\n\nflags:\n", name, args, summary)
		fs.PrintDefaults()
	}
	return fs
}

// Parse parses a command's flags, solo5-hvt's spellings of them included
// (`--net:NAME=TAP`, `--net-mac:NAME=MAC`, `--block:NAME=PATH`,
// `--block-sector-size:NAME=N`), and
// requires the guest ELF argument. When
// parsing ends the command (-h, a mistake) it returns ok false and the exit
// code to use.
func Parse(fs *flag.FlagSet, args []string) (rest []string, code int, ok bool) {
	args, err := rewriteSolo5(fs, args)
	if err != nil {
		fmt.Fprintf(fs.Output(), "%s: %v\n", fs.Name(), err)
		return nil, monitor.ExitUsage, false
	}
	// What Parse prints goes through explainBadValue.
	out := fs.Output()
	var msg strings.Builder
	fs.SetOutput(&msg)
	err = fs.Parse(args)
	fs.SetOutput(out)
	io.WriteString(out, explainBadValue(fs, msg.String()))
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, 0, false
		}
		return nil, monitor.ExitUsage, false
	}
	if fs.NArg() < 1 {
		fmt.Fprintf(fs.Output(), "%s: missing the guest ELF\n", fs.Name())
		fs.Usage()
		return nil, monitor.ExitUsage, false
	}
	for _, a := range fs.Args()[1:] {
		// The guest's arguments are its own, but one named like a flag
		// of tender's was most likely meant for tender.
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if strings.HasPrefix(a, "-") && name != "" && fs.Lookup(name) != nil {
			fmt.Fprintf(fs.Output(), "%s: note: %s follows the guest ELF, so it is the guest's argument; tender's flags go before it\n", fs.Name(), a)
			break
		}
	}
	return fs.Args(), 0, true
}

// GuestFlags are the flags of every command that boots a guest.
type GuestFlags struct {
	MemMiB       uint64
	Backend      string
	ConsoleLimit int64
	// Net are the -net flags: network devices to attach.
	Net NetFlags
	// Block are the -block flags: block devices to attach.
	Block BlockFlags
	// NetMAC are the -net-mac flags: MAC addresses for -net devices.
	NetMAC MACFlags
	// NoSeccomp is -no-seccomp: Confine does nothing.
	NoSeccomp bool

	path   string             // the guest ELF's, by Config
	opened []netdev.Device    // by Config, closed by Close
	blocks []*blockdev.Device // by Config, closed by Close
}

// NetSpec is one -net flag: NAME=TAP attaches the TAP interface TAP,
// NAME=fd:N the open TAP file descriptor N, as the guest's device NAME.
type NetSpec struct {
	Name string
	// TAP is the interface name, or "" when FD is used.
	TAP string
	// FD is the inherited TAP descriptor, or -1.
	FD int
}

// String implements fmt.Stringer.
func (s NetSpec) String() string {
	if s.TAP != "" {
		return s.Name + "=" + s.TAP
	}
	return fmt.Sprintf("%s=fd:%d", s.Name, s.FD)
}

// NetFlags collects repeated -net flags (a flag.Value).
type NetFlags []NetSpec

// String implements fmt.Stringer.
func (n *NetFlags) String() string {
	if n == nil {
		return ""
	}
	s := make([]string, len(*n))
	for i, spec := range *n {
		s[i] = spec.String()
	}
	return strings.Join(s, ",")
}

// Set parses one NAME=TAP or NAME=fd:N.
func (n *NetFlags) Set(v string) error {
	name, dev, ok := strings.Cut(v, "=")
	if !ok || name == "" || dev == "" {
		return fmt.Errorf("%q: want NAME=TAP (a TAP interface) or NAME=fd:N (an open TAP descriptor)", v)
	}
	if len(name) > solo5.NameSize-1 {
		return fmt.Errorf("%q: device name longer than %d characters", v, solo5.NameSize-1)
	}
	for _, spec := range *n {
		if spec.Name == name {
			return fmt.Errorf("%q: device %q given twice", v, name)
		}
	}
	spec := NetSpec{Name: name, FD: -1}
	if fd, isFD := strings.CutPrefix(dev, "fd:"); isFD {
		k, err := strconv.Atoi(fd)
		if err != nil || k < 0 {
			return fmt.Errorf("%q: fd:%s is not a file descriptor number", v, fd)
		}
		// Each device owns its descriptor and Close closes it: a second
		// owner would close it twice, the second time perhaps another file
		// that reused the number.
		for _, other := range *n {
			if other.TAP == "" && other.FD == k {
				return fmt.Errorf("%q: fd %d is given to device %q already", v, k, other.Name)
			}
		}
		spec.FD = k
	} else {
		if len(dev) >= unix.IFNAMSIZ || strings.ContainsAny(dev, "/: \t\n") {
			return fmt.Errorf("%q: %q is not an interface name (at most %d characters, no '/', ':' or spaces)", v, dev, unix.IFNAMSIZ-1)
		}
		spec.TAP = dev
	}
	*n = append(*n, spec)
	return nil
}

// Register adds the guest flags to fs.
func (g *GuestFlags) Register(fs *flag.FlagSet) {
	g.register(fs)
	fs.Var(&g.Net, "net", "attach network device `NAME=TAP` (a TAP interface) or NAME=fd:N (an open TAP descriptor); repeat for more devices")
	fs.Var(&g.Block, "block", "attach block device `NAME=PATH[,bs=N][,ro]`: the regular file PATH, its size a multiple of the block size N (512 unless given; a power of two up to 65536), read-only with ro; repeat for more devices")
	fs.Var(&g.NetMAC, "net-mac", "give network device `NAME=MAC` that MAC address instead of a random one")
}

// RegisterPool adds the guest flags of a command that serves a function
// from a pool: its devices are refused (RefuseDevices), and its help says
// so.
func (g *GuestFlags) RegisterPool(fs *flag.FlagSet) {
	g.register(fs)
	fs.Var(&g.Net, "net", "`NAME=TAP`: refused, a function takes requests through fn_next, not network devices (run network guests with tender run)")
	fs.Var(&g.Block, "block", "`NAME=PATH`: refused, the instances of a pool would share the device (run block-device guests with tender run)")
	fs.Var(&g.NetMAC, "net-mac", "`NAME=MAC`: refused, as -net is")
}

func (g *GuestFlags) register(fs *flag.FlagSet) {
	fs.Uint64Var(&g.MemMiB, "mem", monitor.DefaultMemSize>>20, "guest memory in MiB (even, 4 to 3072; 4096 for a Solo5 guest); only touched pages are allocated")
	fs.StringVar(&g.Backend, "backend", string(monitor.BackendKVM), "how to run guests: kvm, process (seccomp-confined process, for hosts without KVM), or auto")
	fs.Int64Var(&g.ConsoleLimit, "console-limit", monitor.DefaultConsoleLimit, "end a guest after this many bytes of console output; a function's count starts anew with each request (0: the default; negative: no limit)")
	fs.BoolVar(&g.NoSeccomp, "no-seccomp", false, "do not confine the monitor with its seccomp filter once set up (for debugging; see docs/security.md)")
}

// Named prefixes the guest ELF's path to err when err rejects the ELF
// (loader.ErrInvalid), as ReadELF's errors are.
func (g *GuestFlags) Named(err error) error {
	if g.path != "" && errors.Is(err, loader.ErrInvalid) && !strings.HasPrefix(err.Error(), g.path+": ") {
		return fmt.Errorf("%s: %w", g.path, err)
	}
	return err
}

// RefuseDevices is the usage error of a pool's command given -net, -net-mac
// or -block: one device cannot be shared by the instances of a pool, and
// nothing would order their writes to one file.
func (g *GuestFlags) RefuseDevices() error {
	switch {
	case len(g.Net) > 0:
		return Usagef("-net: functions take requests through fn_next, not network devices; run network guests with tender run")
	case len(g.NetMAC) > 0:
		return Usagef("-net-mac: functions have no network devices; run network guests with tender run")
	case len(g.Block) > 0:
		return Usagef("-block: the instances of a pool would share the device; run block-device guests with tender run")
	}
	return nil
}

// Confine installs the seccomp filter of p, widened for the -net and -block
// devices, unless -no-seccomp was given. Call it once set-up is done.
func (g *GuestFlags) Confine(p confine.Policy) error {
	prog, err := g.Compile(p)
	if err != nil {
		return err
	}
	return prog.Install()
}

// CPUIDCacheEnv names the environment variable that says where tender's
// commands keep the KVM backend's CPUID cache: a file, or empty for none.
const CPUIDCacheEnv = "TENDER_CPUID_CACHE"

// CPUIDCache is the CPUID cache file of tender's commands
// (monitor.HostConfig.CPUIDCache): $TENDER_CPUID_CACHE when set (empty:
// none), else kvm-cpuid in /run/tender for root and in
// $XDG_RUNTIME_DIR/tender for other users; none without either.
func CPUIDCache() string {
	if p, ok := os.LookupEnv(CPUIDCacheEnv); ok {
		return p
	}
	if os.Geteuid() == 0 {
		return "/run/tender/kvm-cpuid"
	}
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "tender", "kvm-cpuid")
	}
	return ""
}

// Procs raises GOMAXPROCS to twice what Go chose when h's guests compute
// aside (monitor.Host.GuestsAside: the process backend), unless
// $GOMAXPROCS set it, and returns the value in effect. A command that runs
// many guests at once calls it before it serves: otherwise each guest that
// computes holds one of Go's Ps, and the HTTP work stalls behind them.
func Procs(h *monitor.Host) int {
	if _, set := os.LookupEnv("GOMAXPROCS"); set || !h.GuestsAside() {
		return runtime.GOMAXPROCS(0)
	}
	n := 2 * runtime.GOMAXPROCS(0)
	runtime.GOMAXPROCS(n)
	return n
}

// Compile is Confine's filter, built ahead of its installation
// (confine.Program); nil with -no-seccomp.
func (g *GuestFlags) Compile(p confine.Policy) (*confine.Program, error) {
	if g.NoSeccomp {
		return nil, nil
	}
	p.Net = p.Net || len(g.Net) > 0
	p.Block = p.Block || len(g.Block) > 0
	return confine.Compile(p)
}

// Config reads the guest ELF named by args[0] and builds the configuration of
// a guest with arguments args[1:] and the given console. It opens the -net
// and -block devices; Close closes them once the guest has run.
func (g *GuestFlags) Config(args []string, console io.Writer) (monitor.HostConfig, monitor.Config, error) {
	switch monitor.Backend(g.Backend) {
	case monitor.BackendKVM, monitor.BackendProcess, monitor.BackendAuto:
	default:
		return monitor.HostConfig{}, monitor.Config{}, Usagef("-backend %q: want kvm, process or auto", g.Backend)
	}
	// Built only when needed: formatting costs page faults at every start.
	memErr := func() error {
		return Usagef("-mem %d: want an even number of MiB from %d to %d (%d for a Solo5 guest)", g.MemMiB, hypercall.MemMin>>20, hypercall.MemMax>>20, solo5.MemMax>>20)
	}
	if g.MemMiB < hypercall.MemMin>>20 || g.MemMiB > solo5.MemMax>>20 || g.MemMiB%2 != 0 {
		return monitor.HostConfig{}, monitor.Config{}, memErr()
	}
	g.path = args[0]
	image, err := ReadELF(args[0])
	if err != nil {
		return monitor.HostConfig{}, monitor.Config{}, err
	}
	if g.MemMiB > hypercall.MemMax>>20 {
		// Only a Solo5 guest may have more; an ELF that does not parse is
		// reported when the VM is created.
		if img, err := loader.Parse(image, g.MemMiB<<20); err == nil && img.Solo5 == nil {
			return monitor.HostConfig{}, monitor.Config{}, memErr()
		}
	}
	net, err := g.openNet()
	if err != nil {
		return monitor.HostConfig{}, monitor.Config{}, err
	}
	block, err := g.openBlock()
	if err != nil {
		return monitor.HostConfig{}, monitor.Config{}, err
	}
	return monitor.HostConfig{Backend: monitor.Backend(g.Backend), CPUIDCache: CPUIDCache()}, monitor.Config{
		ELF:          image,
		Name:         strings.TrimSuffix(filepath.Base(args[0]), ".elf"),
		Args:         args[1:],
		MemSize:      g.MemMiB << 20,
		Console:      console,
		ConsoleLimit: g.ConsoleLimit,
		Net:          net,
		Block:        block,
	}, nil
}

// openNet opens the -net devices, or none of them.
func (g *GuestFlags) openNet() (map[string]netdev.Device, error) {
	for name := range g.NetMAC {
		if !slices.ContainsFunc(g.Net, func(s NetSpec) bool { return s.Name == name }) {
			return nil, Usagef("-net-mac %s: no -net device %q", name, name)
		}
	}
	if len(g.Net) == 0 {
		return nil, nil
	}
	m := make(map[string]netdev.Device, len(g.Net))
	for _, spec := range g.Net {
		var (
			dev netdev.Device
			err error
		)
		if spec.TAP != "" {
			dev, err = netdev.OpenTAP(spec.TAP)
		} else {
			dev, err = netdev.TAPFromFD(spec.FD)
		}
		if err != nil {
			g.Close()
			return nil, fmt.Errorf("-net %s: %w", spec, err)
		}
		g.opened = append(g.opened, dev)
		if mac, ok := g.NetMAC[spec.Name]; ok {
			dev = macDevice{dev, mac}
		}
		m[spec.Name] = dev
	}
	return m, nil
}

// Close closes the network and block devices Config opened.
func (g *GuestFlags) Close() error {
	var errs []error
	for _, d := range g.opened {
		errs = append(errs, d.Close())
	}
	for _, d := range g.blocks {
		errs = append(errs, d.Close())
	}
	g.opened, g.blocks = nil, nil
	return errors.Join(errs...)
}

// ReadELF reads a guest executable. It checks the file's size and its ELF
// header before reading the rest, so a huge or foreign file is refused at
// once (loader.MaxFileSize bounds it).
func ReadELF(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	size := st.Size()
	var hdr [64]byte
	head := min(size, int64(len(hdr)))
	if _, err := io.ReadFull(f, hdr[:head]); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := loader.CheckHeader(hdr[:head], uint64(size)); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	// One buffer of the file's size (plus a byte to notice growth), rather
	// than io.ReadAll's doubling: fresh heap pages cost a page fault each,
	// which is dear on paravirtual hosts.
	b := make([]byte, size+1)
	copy(b, hdr[:head])
	n, err := io.ReadFull(f, b[head:])
	switch {
	case err == io.ErrUnexpectedEOF || err == io.EOF:
		return b[:head+int64(n)], nil
	case err != nil:
		return nil, err
	}
	return nil, fmt.Errorf("%s: grew while being read", path)
}

// Report prints err (if any) and returns the process exit code for the
// outcome: the guest status, or one of monitor's Exit* codes.
func Report(stderr io.Writer, status int, err error) int {
	var ue UsageError
	if errors.As(err, &ue) {
		fmt.Fprintf(stderr, "tender: %v\n", err)
		return monitor.ExitUsage
	}
	if err != nil {
		fmt.Fprintf(stderr, "tender: %v\n", err)
		if errors.Is(err, kvm.ErrUnavailable) {
			if errors.Is(err, os.ErrPermission) {
				fmt.Fprintln(stderr, "tender: /dev/kvm is usually open to the kvm group: add your user to it (then log in again)")
			}
			fmt.Fprintln(stderr, "tender: without KVM, -backend=process runs guests as confined processes")
		}
		if errors.Is(err, confine.ErrUnsupported) {
			fmt.Fprintln(stderr, "tender: -no-seccomp runs the monitor without its seccomp filter")
		}
	}
	return monitor.ExitCode(status, err)
}

// SignalContext is cancelled by SIGINT and SIGTERM, with the signal as its
// cause, so an interrupted guest is stopped and reported like a timeout
// ("guest stopped: interrupted by SIGINT"), and a server drains.
func SignalContext() (context.Context, context.CancelFunc) {
	ctx, cancel, registered := WatchSignals()
	<-registered
	return ctx, cancel
}

// WatchSignals is SignalContext with the handlers registered in the
// background: Go's signal machinery starts a thread of its own on first use,
// 0.2 ms that `tender run` spends on its own work instead. registered is
// closed once they are; until then SIGINT and SIGTERM end the process as
// they would without tender's handlers. cancel waits for the registration,
// so that it can undo it.
func WatchSignals() (ctx context.Context, cancel context.CancelFunc, registered <-chan struct{}) {
	ctx, stop := context.WithCancelCause(context.Background())
	sigs := make(chan os.Signal, 1)
	done := make(chan struct{})
	go func() {
		signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
		close(done)
		select {
		case s := <-sigs:
			stop(&Interrupted{Signal: s})
		case <-ctx.Done():
		}
	}()
	return ctx, func() {
		<-done
		signal.Stop(sigs)
		stop(nil)
	}, done
}

// Interrupted is the cause of a SignalContext cancelled by a signal.
type Interrupted struct{ Signal os.Signal }

// Error implements error.
func (e *Interrupted) Error() string {
	name := "SIGTERM"
	if e.Signal == os.Interrupt {
		name = "SIGINT"
	}
	return "interrupted by " + name
}
