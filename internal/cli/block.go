package cli

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/tendervm/tender/hypercall"
	"github.com/tendervm/tender/hypercall/solo5"
	"github.com/tendervm/tender/monitor/blockdev"
)

// BlockSpec is one -block flag: NAME=PATH[,bs=N][,ro] attaches the regular
// file PATH as the guest's block device NAME, with blocks of N bytes
// (blockdev.DefaultBlockSize when 0), read-only with ro.
type BlockSpec struct {
	Name, Path string
	BlockSize  uint64
	ReadOnly   bool
}

// String implements fmt.Stringer.
func (s BlockSpec) String() string {
	v := s.Name + "=" + s.Path
	if s.BlockSize != 0 {
		v += ",bs=" + strconv.FormatUint(s.BlockSize, 10)
	}
	if s.ReadOnly {
		v += ",ro"
	}
	return v
}

// BlockFlags collects repeated -block flags (a flag.Value).
type BlockFlags []BlockSpec

// String implements fmt.Stringer.
func (b *BlockFlags) String() string {
	if b == nil {
		return ""
	}
	s := make([]string, len(*b))
	for i, spec := range *b {
		s[i] = spec.String()
	}
	return strings.Join(s, " ")
}

// Set parses one NAME=PATH[,bs=N][,ro]. Options are read from the end, so
// a path may contain commas as long as no part after one is itself an
// option.
func (b *BlockFlags) Set(v string) error {
	name, rest, ok := strings.Cut(v, "=")
	if !ok || name == "" || rest == "" {
		return fmt.Errorf("%q: want NAME=PATH[,bs=N][,ro] (a regular file)", v)
	}
	// A Solo5 manifest allows longer names than tender's own device note;
	// the loader holds tender's guests to hypercall.DeviceNameMax, so a
	// longer name just matches none of their devices.
	if len(name) > solo5.NameSize-1 {
		return fmt.Errorf("%q: device name longer than %d characters", v, solo5.NameSize-1)
	}
	for _, spec := range *b {
		if spec.Name == name {
			return fmt.Errorf("%q: device %q given twice", v, name)
		}
	}
	spec := BlockSpec{Name: name}
	parts := strings.Split(rest, ",")
	for len(parts) > 1 {
		opt := parts[len(parts)-1]
		if opt == "ro" {
			spec.ReadOnly = true
		} else if n, isBS := strings.CutPrefix(opt, "bs="); isBS {
			bs, err := strconv.ParseUint(n, 10, 32)
			if err != nil || bs < hypercall.BlockSizeMin || bs > hypercall.BlockSizeMax || bs&(bs-1) != 0 {
				return fmt.Errorf("%q: bs=%s: want a power of two from %d to %d", v, n, hypercall.BlockSizeMin, hypercall.BlockSizeMax)
			}
			spec.BlockSize = bs
		} else {
			break
		}
		parts = parts[:len(parts)-1]
	}
	spec.Path = strings.Join(parts, ",")
	if spec.Path == "" {
		return fmt.Errorf("%q: want NAME=PATH[,bs=N][,ro] (a regular file)", v)
	}
	*b = append(*b, spec)
	return nil
}

// openBlock opens the -block devices, or none of them.
func (g *GuestFlags) openBlock() (map[string]*blockdev.Device, error) {
	if len(g.Block) == 0 {
		return nil, nil
	}
	m := make(map[string]*blockdev.Device, len(g.Block))
	for _, spec := range g.Block {
		dev, err := blockdev.Open(spec.Name, spec.Path, blockdev.Options{BlockSize: spec.BlockSize, ReadOnly: spec.ReadOnly})
		if err != nil {
			g.Close()
			return nil, fmt.Errorf("-block %s: %w", spec, err)
		}
		g.blocks = append(g.blocks, dev)
		m[spec.Name] = dev
	}
	return m, nil
}
