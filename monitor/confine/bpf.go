package confine

import (
	"fmt"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// Offsets in struct seccomp_data, which the filter reads.
const (
	offNr   = 0
	offArch = 4
	offArgs = 16 // args[i] at offArgs+8*i, low half first (little-endian)
)

// Actions of the filter.
const (
	// actAllow lets the call run.
	actAllow = unix.SECCOMP_RET_ALLOW
	// actTrap stops a forbidden call before it runs and raises SIGSYS in
	// the calling thread, whose handler reports it and exits (sigsys.go).
	actTrap = unix.SECCOMP_RET_TRAP
	// actKill kills the process outright: for calls made through another
	// architecture's entry (int $0x80), whose numbers the allow-list does
	// not describe.
	actKill = unix.SECCOMP_RET_KILL_PROCESS
)

// program assembles rules into a seccomp program:
//
//	check the architecture (else kill)
//	for each rule: if nr matches, check its arguments (allow or trap)
//	trap
//
// Every rule's block is self-contained (its jumps stay inside it or go to
// the next rule), so no jump is longer than one rule.
func program(rules []Rule) ([]bpf.Instruction, error) {
	p := []bpf.Instruction{
		bpf.LoadAbsolute{Off: offArch, Size: 4},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.AUDIT_ARCH_X86_64, SkipTrue: 1},
		bpf.RetConstant{Val: actKill},
		bpf.LoadAbsolute{Off: offNr, Size: 4},
	}
	for _, r := range rules {
		body, err := ruleBody(r)
		if err != nil {
			return nil, err
		}
		if len(body) > 255 {
			return nil, fmt.Errorf("confine: the checks of %s take %d instructions, more than a jump can skip", r.Name, len(body))
		}
		p = append(p, bpf.JumpIf{Cond: bpf.JumpEqual, Val: r.Nr, SkipFalse: uint8(len(body))})
		p = append(p, body...)
	}
	p = append(p, bpf.RetConstant{Val: actTrap})
	if _, err := bpf.Assemble(p); err != nil {
		return nil, fmt.Errorf("confine: %w", err)
	}
	return p, nil
}

// ruleBody is the code run once the call number matched r: it returns allow
// when one of r's alternatives holds, else trap. It never falls through.
func ruleBody(r Rule) ([]bpf.Instruction, error) {
	if r.Errno != 0 {
		return []bpf.Instruction{bpf.RetConstant{Val: unix.SECCOMP_RET_ERRNO | uint32(r.Errno)&unix.SECCOMP_RET_DATA}}, nil
	}
	if len(r.Any) == 0 {
		return []bpf.Instruction{bpf.RetConstant{Val: actAllow}}, nil
	}
	var body []bpf.Instruction
	for _, alt := range r.Any {
		code, err := altCode(alt)
		if err != nil {
			return nil, fmt.Errorf("confine: %s: %w", r.Name, err)
		}
		body = append(body, code...)
	}
	return append(body, bpf.RetConstant{Val: actTrap}), nil
}

// altCode checks every condition of one alternative and returns allow when
// all hold; when one fails it continues after its own last instruction (the
// next alternative, or the rule's trap).
func altCode(conds []Cond) ([]bpf.Instruction, error) {
	// Built back to front: a failed comparison skips the rest of the
	// alternative, whose length is known by then.
	code := []bpf.Instruction{bpf.RetConstant{Val: actAllow}}
	for i := len(conds) - 1; i >= 0; i-- {
		c := conds[i]
		if c.Arg < 0 || c.Arg > 5 || len(c.In) == 0 {
			return nil, fmt.Errorf("condition on argument %d with %d values", c.Arg, len(c.In))
		}
		off := uint32(offArgs + 8*c.Arg)
		if c.High {
			off += 4
		}
		head := []bpf.Instruction{bpf.LoadAbsolute{Off: off, Size: 4}}
		if c.Mask != 0 {
			head = append(head, bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: c.Mask})
		}
		// With In, value k matching jumps over the remaining comparisons
		// and the last one failing jumps over the rest of the
		// alternative; with Except, any value matching does.
		n := len(c.In)
		cmp := make([]bpf.Instruction, n)
		for k, v := range c.In {
			jt, jf := n-1-k, 0
			switch {
			case c.Except:
				jt = n - 1 - k + len(code)
			case k == n-1:
				jf = len(code) // past this alternative's allow
			}
			if jt > 255 || jf > 255 {
				return nil, fmt.Errorf("condition on argument %d too long to jump over", c.Arg)
			}
			cmp[k] = bpf.JumpIf{Cond: bpf.JumpEqual, Val: v, SkipTrue: uint8(jt), SkipFalse: uint8(jf)}
		}
		code = append(append(head, cmp...), code...)
	}
	return code, nil
}
