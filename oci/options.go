// Package oci is tender-oci, a runc-compatible OCI runtime: containerd (its
// runc shim, `ctr run --runc-binary`, the CRI plugin) runs tender guests
// through it, and it hands every other container to runc unchanged.
//
// A container is a tender guest when process.args[0] in its rootfs is an ELF
// with tender's ABI note. create starts the container's process, the monitor,
// which waits on a FIFO in the state directory until start opens it, so the
// guest runs only after start; its exit status is the guest's (0-239) or
// tender's outcome code (240-244, 255 for a monitor error). See
// docs/kubernetes.md.
package oci

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/tendervm/tender/hypercall"
	"github.com/tendervm/tender/hypercall/solo5"
	"github.com/tendervm/tender/monitor"
	"github.com/tendervm/tender/monitor/loader"
)

// The annotations tender-oci reads from config.json. Any other annotation
// with the dev.tender. prefix is refused, so a misspelt one is not ignored.
const (
	// AnnotationMemory is the guest memory: MiB, or a size with a suffix
	// M, Mi, MiB, G, Gi or GiB (binary units). Default 64 MiB; at most
	// 3072 MiB for a tender guest, 4096 MiB for a Solo5 guest.
	AnnotationMemory = "dev.tender.memory"
	// AnnotationTimeout stops the guest after a Go duration ("30s"); 0 or
	// absent: no limit.
	AnnotationTimeout = "dev.tender.timeout"
	// AnnotationBackend is kvm (the default), process or auto.
	AnnotationBackend = "dev.tender.backend"
	// AnnotationMode is run (the default: boot the guest once, its console on
	// stdout) or warm, fresh or cold: serve the function guest over HTTP
	// on AnnotationPort, as `tender serve -mode MODE` does.
	AnnotationMode = "dev.tender.mode"
	// AnnotationPort is the TCP port a served function listens on in the
	// container's network namespace, 1-65535; default 8080.
	AnnotationPort = "dev.tender.port"

	annotationPrefix = "dev.tender."
)

// The annotations by which containerd's CRI plugin and CRI-O mark a pod's
// sandbox container.
const (
	criContainerType  = "io.kubernetes.cri.container-type"
	crioContainerType = "io.kubernetes.cri-o.ContainerType"
)

// Modes of AnnotationMode.
const (
	ModeRun = "run"
)

// DefaultPort is the port of a served function without AnnotationPort.
const DefaultPort = 8080

// Options are a tender container's settings, from its annotations.
type Options struct {
	MemMiB  uint64          `json:"mem_mib"`
	Timeout time.Duration   `json:"timeout"`
	Backend monitor.Backend `json:"backend"`
	Mode    string          `json:"mode"`
	Port    int             `json:"port"`
}

// Serves reports whether the guest is served over HTTP rather than run once.
func (o Options) Serves() bool { return o.Mode != ModeRun }

// ParseAnnotations reads the dev.tender.* annotations, with defaults for the
// absent ones. An unknown dev.tender.* key or a bad value is an error naming
// the annotation and what it accepts.
func ParseAnnotations(a map[string]string) (Options, error) {
	o := Options{
		MemMiB:  monitor.DefaultMemSize >> 20,
		Backend: monitor.BackendKVM,
		Mode:    ModeRun,
		Port:    DefaultPort,
	}
	for k, v := range a {
		if !strings.HasPrefix(k, annotationPrefix) {
			continue
		}
		var err error
		switch k {
		case AnnotationMemory:
			o.MemMiB, err = parseMemory(v)
		case AnnotationTimeout:
			o.Timeout, err = time.ParseDuration(v)
			if err == nil && o.Timeout < 0 {
				err = fmt.Errorf("negative")
			}
			if err != nil {
				err = fmt.Errorf("want a duration such as 30s or 500ms, 0 for none (%v)", err)
			}
		case AnnotationBackend:
			switch b := monitor.Backend(v); b {
			case monitor.BackendKVM, monitor.BackendProcess, monitor.BackendAuto:
				o.Backend = b
			default:
				err = fmt.Errorf("want kvm, process or auto")
			}
		case AnnotationMode:
			switch m := monitor.Mode(v); {
			case v == ModeRun, m == monitor.Warm, m == monitor.Fresh, m == monitor.Cold:
				o.Mode = v
			default:
				err = fmt.Errorf("want run, warm, fresh or cold")
			}
		case AnnotationPort:
			o.Port, err = strconv.Atoi(v)
			if err != nil || o.Port < 1 || o.Port > 65535 {
				err = fmt.Errorf("want a TCP port from 1 to 65535")
			}
		default:
			err = fmt.Errorf("unknown tender annotation (known: %s, %s, %s, %s, %s)",
				AnnotationMemory, AnnotationTimeout, AnnotationBackend, AnnotationMode, AnnotationPort)
		}
		if err != nil {
			return Options{}, fmt.Errorf("annotation %s=%q: %w", k, v, err)
		}
	}
	return o, nil
}

// Tendered reports whether a has any dev.tender.* annotation and is not a
// pod's sandbox: such a container is meant for tender, so it is never handed
// to runc. The CRI plugin copies a pod's annotations to its sandbox (pause)
// container too, which runc must run.
func Tendered(a map[string]string) bool {
	if a[criContainerType] == "sandbox" || a[crioContainerType] == "sandbox" {
		return false
	}
	for k := range a {
		if strings.HasPrefix(k, annotationPrefix) {
			return true
		}
	}
	return false
}

// CheckMemory refuses a memory above what the guest's ABI allows.
// ParseAnnotations accepts up to a Solo5 guest's limit, the larger, since
// which kind of guest it is is known only once img is parsed.
func (o Options) CheckMemory(img *loader.Image) error {
	if img.Solo5 == nil && o.MemMiB > hypercall.MemMax>>20 {
		return fmt.Errorf("annotation %s: %d MiB: a tender guest takes at most %d MiB (a Solo5 guest %d MiB)",
			AnnotationMemory, o.MemMiB, hypercall.MemMax>>20, solo5.MemMax>>20)
	}
	return nil
}

// parseMemory parses AnnotationMemory into MiB, up to a Solo5 guest's
// limit (CheckMemory applies a tender guest's).
func parseMemory(v string) (uint64, error) {
	num, scale := v, uint64(1)
	for _, s := range []struct {
		suffix string
		scale  uint64
	}{{"GiB", 1024}, {"Gi", 1024}, {"G", 1024}, {"MiB", 1}, {"Mi", 1}, {"M", 1}} {
		if n, ok := strings.CutSuffix(v, s.suffix); ok {
			num, scale = n, s.scale
			break
		}
	}
	n, err := strconv.ParseUint(num, 10, 32)
	lo, hi := uint64(hypercall.MemMin>>20), uint64(solo5.MemMax>>20)
	if err != nil || n*scale < lo || n*scale > hi || n*scale%2 != 0 {
		return 0, fmt.Errorf("want an even number of MiB from %d to %d (%d for a tender guest), optionally with a suffix M, Mi, MiB, G, Gi or GiB",
			lo, hi, hypercall.MemMax>>20)
	}
	return n * scale, nil
}
