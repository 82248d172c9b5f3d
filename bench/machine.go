package bench

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/tendervm/tender/monitor/kvm"
)

// Machine describes the host a report was measured on.
type Machine struct {
	// Uname is the output of `uname -a`.
	Uname string `json:"uname"`
	// NumCPU is runtime.NumCPU().
	NumCPU int `json:"num_cpu"`
	// CPU is the model name from /proc/cpuinfo.
	CPU string `json:"cpu,omitempty"`
	// MemTotalKiB is MemTotal from /proc/meminfo.
	MemTotalKiB int64 `json:"mem_total_kib"`
	// KVM is "available", or why KVM cannot be used.
	KVM string `json:"kvm"`
	// Runtimes are the versions of crun and runc, where installed.
	Runtimes map[string]string `json:"runtimes,omitempty"`
}

func describeMachine() Machine {
	m := Machine{NumCPU: runtime.NumCPU(), KVM: "available", Runtimes: map[string]string{}}
	if out, err := exec.Command("uname", "-a").Output(); err == nil {
		m.Uname = strings.TrimSpace(string(out))
	} else {
		var u unix.Utsname
		if unix.Uname(&u) == nil {
			m.Uname = strings.Join([]string{unix.ByteSliceToString(u.Sysname[:]), unix.ByteSliceToString(u.Nodename[:]),
				unix.ByteSliceToString(u.Release[:]), unix.ByteSliceToString(u.Version[:]), unix.ByteSliceToString(u.Machine[:])}, " ")
		}
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) >= 2 && f[0] == "MemTotal:" {
				m.MemTotalKiB, _ = strconv.ParseInt(f[1], 10, 64)
			}
		}
	}
	if sys, err := kvm.Open(""); err != nil {
		m.KVM = err.Error()
	} else {
		sys.Close()
	}
	for _, rt := range []string{"crun", "runc"} {
		if out, err := exec.Command(rt, "--version").Output(); err == nil {
			first, _, _ := bytes.Cut(out, []byte("\n"))
			m.Runtimes[rt] = string(first)
		}
	}
	return m
}

// String renders the machine as a few Markdown list items.
func (m Machine) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "- `uname -a`: `%s`\n", m.Uname)
	fmt.Fprintf(&b, "- CPUs (nproc): %d", m.NumCPU)
	if m.CPU != "" {
		fmt.Fprintf(&b, " (%s)", m.CPU)
	}
	fmt.Fprintf(&b, "\n- memory: %.1f GiB\n", float64(m.MemTotalKiB)/(1<<20))
	fmt.Fprintf(&b, "- KVM: %s\n", m.KVM)
	for _, rt := range []string{"crun", "runc"} {
		v, ok := m.Runtimes[rt]
		if !ok {
			v = "not installed"
		}
		fmt.Fprintf(&b, "- %s: %s\n", rt, v)
	}
	return b.String()
}
