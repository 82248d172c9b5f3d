package process

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/tendervm/tender/monitor/guestmem"
	"github.com/tendervm/tender/monitor/vcpu"
)

// NewFresh is New for a guest that will be reset to a snapshot (Fresh
// instances): the kernel also records which pages of its writable regions
// and signal stack the process writes (track.go), which costs a few system
// calls at set-up. It fails with an error wrapping ErrNoWriteTracking on
// kernels before 6.7.
func NewFresh(s *Spawner, mem *guestmem.Memory, boot vcpu.Boot) (*VCPU, error) {
	return s.startWith(mem, boot, options{track: true})
}

// Offsets in the signal frame the kernel builds on the signal stack
// (struct rt_sigframe: the restorer's address, then struct ucontext, whose
// uc_mcontext is struct sigcontext).
const (
	frameSSSP   = 8 + 16       // uc_stack.ss_sp
	frameSSSz   = 8 + 32       // uc_stack.ss_size
	frameRDX    = 8 + 40 + 96  // uc_mcontext.rdx
	frameRAX    = 8 + 40 + 104 // uc_mcontext.rax
	frameRIP    = 8 + 40 + 128 // uc_mcontext.rip
	frameRFLAGS = 8 + 40 + 136 // uc_mcontext.eflags
	frameHead   = frameRIP + 8 // what identifies a frame
)

// RFLAGS bits the handler must not load before a reset's rt_sigreturn,
// which takes them from the frame anyway: the trap flag would trap in the
// handler, alignment checking could.
const rflagsTFAC = 1<<8 | 1<<18

// State is the state of a guest process parked at a hypercall, which Reset
// puts a process back into: its signal stack, which holds the signal frame
// and with it every register of the guest (general registers, RFLAGS and
// the FPU, SSE and AVX state the frame's fpstate points to; its RIP past
// the hypercall), and the reset block (stub.go): the data segment
// selectors, the FS and GS bases, where the frame is and the RFLAGS bits
// rt_sigreturn does not restore. Guest memory is the caller's to keep. A
// State is read-only once taken: several processes of the same guest may
// be reset to it.
type State struct {
	frame uint64 // address of the signal frame
	// stack is the signal stack, [altBase, altBase+altSize), with the
	// frame as a reset returns through it.
	stack []byte
	// tmpl is the template (stub.go): the reset block, then from tmplPages
	// the stack's pages from the frame's first one to the top.
	tmpl []byte
	skip uint64 // how far the hypercall's answer advanced RIP
	// bases: the block holds the FS and GS bases, which a reset loads.
	bases bool
	// report is the RIP, RAX and RDX the hypercall's report carried.
	report [3]uint64
}

// Snapshot records the state of the guest parked at the hypercall Run
// returned last, and starts the record of written pages afresh: Reset
// reports the pages written from here on. The data segment selectors and
// the FS and GS bases are not in the frame: the handler stores them in the
// save block at the bottom of the signal stack, in one more round trip
// (Snapshot copies them into the template; the bases where the kernel lets
// processes use FSGSBASE, and so a guest change them; elsewhere they stay
// 0). The next Run completes the hypercall as a reset to the State does,
// so the guest goes on from the frame whatever it did to reach the
// hypercall (it may have forged the report, see handlerCode). A process
// takes one State: Snapshot (and Adopt) before its first reset, whose
// seal fixes its template.
func (v *VCPU) Snapshot() (*State, error) {
	if err := v.parked(); err != nil {
		return nil, err
	}
	bases := v.spawner != nil && v.spawner.fsgsbase
	if err := v.saveRegs(bases); err != nil {
		return nil, err
	}
	s := &State{stack: make([]byte, altSize), skip: v.skip, bases: bases, report: [3]uint64(v.notif.Args[3:])}
	if err := v.peek(altBase, s.stack); err != nil {
		return nil, err
	}
	// The frame is the one the handler reported from: search from the top,
	// where the kernel puts it, for the restorer and signal stack that
	// start every frame and the RIP and RAX the report carried.
	le := binary.LittleEndian
	found := false
	for off := altSize - frameHead; off >= pageSize; off -= 8 {
		b := s.stack[off:]
		if le.Uint64(b) == stubBase+stubRestorer && le.Uint64(b[frameSSSP:]) == altBase &&
			le.Uint64(b[frameSSSz:]) == altSize && le.Uint64(b[frameRIP:]) == v.notif.Args[3] &&
			le.Uint64(b[frameRAX:]) == v.notif.Args[4] && le.Uint64(b[frameRDX:]) == v.notif.Args[5] {
			s.frame, found = altBase+uint64(off), true
			break
		}
	}
	if !found {
		return nil, errors.New("process: no signal frame for the guest's hypercall on the signal stack")
	}
	// A reset resumes past the hypercall, through this frame, with the
	// RFLAGS bits rt_sigreturn leaves as it finds them (ID, NT) loaded
	// first.
	f := s.stack[s.frame-altBase:]
	le.PutUint64(f[frameRIP:], v.notif.Args[3]+v.skip)
	page := s.frame &^ (pageSize - 1)
	if pageSize+altBase+altSize-page > tmplSize { // frames are found above the bottom page
		return nil, errors.New("process: the signal frame does not fit the template")
	}
	s.tmpl = make([]byte, pageSize+altBase+altSize-page)
	copy(s.tmpl, s.stack[:blockFrame]) // the save block: bases, selectors
	le.PutUint64(s.tmpl[blockFrame:], s.frame)
	le.PutUint64(s.tmpl[blockRFLAGS:], le.Uint64(f[frameRFLAGS:])&^rflagsTFAC)
	le.PutUint64(s.tmpl[blockDst:], page)
	le.PutUint64(s.tmpl[blockLen:], altBase+altSize-page)
	copy(s.tmpl[pageSize:], s.stack[page-altBase:])
	if err := v.writeTemplate(s); err != nil {
		return nil, err
	}
	// The kernel writes the frame's pages at every exit, and every reset
	// copies them back from the template: tracking them would only cost a
	// fault per exit.
	t := v.track
	if last := &t.ranges[len(t.ranges)-1]; last[0] >= altBase {
		last[1] = page
	}
	if err := v.track.scan(func(uint64, uint64) {}); err != nil {
		return nil, err
	}
	v.answerAs(s)
	return s, nil
}

// Reset puts the guest, parked at a hypercall that Run returned, back into
// state s: it calls restore for each range of guest memory the process
// wrote since Snapshot or the last Reset, for the caller to copy its
// snapshot back, and restores the written pages of the signal stack below
// the frame's, so that the next Run completes the hypercall of s (the
// handler copies the frame's pages back from the template) and the guest
// continues from there with the registers it had. Pages the monitor wrote
// through its own mapping are not reported: the caller restores those
// itself. A process is reset to one State only (the one Snapshot took, or
// Adopt or its first Reset gave it): its first reset seals its template.
func (v *VCPU) Reset(s *State, restore func(addr, n uint64) error) error {
	if err := v.parked(); err != nil {
		return err
	}
	if v.tmpl != nil && v.tmpl != s {
		return errors.New("process: Reset to a State other than the one this process's template holds")
	}
	var err error
	var stack [][2]uint64
	scanErr := v.track.scan(func(addr, n uint64) {
		switch {
		case err != nil:
		case addr >= altBase:
			stack = append(stack, [2]uint64{addr, n})
		default:
			err = restore(addr, n)
		}
	})
	if err = errors.Join(scanErr, err); err != nil {
		return err
	}
	for _, r := range stack {
		off := r[0] - altBase
		if err := v.poke(r[0], s.stack[off:off+r[1]]); err != nil {
			return err
		}
	}
	if v.tmpl == nil {
		if err := v.writeTemplate(s); err != nil {
			return err
		}
	}
	v.answerAs(s)
	return nil
}

// writeTemplate writes s's template into the guest process, which has not
// sealed it yet: a process is reset to one State only.
func (v *VCPU) writeTemplate(s *State) error {
	if v.sealed {
		return errors.New("process: template already sealed: a process takes one State (Snapshot or Adopt before its first reset)")
	}
	if err := v.poke(tmplBase, s.tmpl); err != nil {
		return fmt.Errorf("process: write the template: %w", err)
	}
	v.tmpl = s
	return nil
}

// answerAs makes the next Run answer the guest's hypercall with a reset to
// s (answerReset), whatever registers the handler runs with, sealing the
// template first the first time.
func (v *VCPU) answerAs(s *State) {
	v.skip = answerReset
	if s.bases {
		v.skip |= answerWithBases
	}
	if !v.sealed {
		v.skip |= answerSeal
	}
}

// Adopt puts the guest, parked at the hypercall where Snapshot just took
// own, into state s of another process of the same guest instead: it
// writes the pages of the signal stack where s differs and s's template,
// so that the next Run completes the hypercall of s. Guest memory is the
// caller's to make s's. Adopt reports false, and changes nothing, when the
// guest's frame is not where s has it or its hypercall was reported with
// another RIP, RAX (the argument) or RDX (the port): the guest did not
// reach the same hypercall.
func (v *VCPU) Adopt(own, s *State) (bool, error) {
	if err := v.parked(); err != nil {
		return false, err
	}
	if own.frame != s.frame || own.report != s.report || own.bases != s.bases || own.skip != s.skip {
		return false, nil
	}
	for off := 0; off < altSize; off += pageSize {
		if b := s.stack[off : off+pageSize]; !bytes.Equal(own.stack[off:off+pageSize], b) {
			if err := v.poke(altBase+uint64(off), b); err != nil {
				return false, err
			}
		}
	}
	if err := v.writeTemplate(s); err != nil {
		return false, err
	}
	v.answerAs(s)
	return true, nil
}

// saveRegs makes the handler of the parked guest store its data segment
// selectors in the save block, and with bases its FS and GS bases, and
// report the same hypercall again.
func (v *VCPU) saveRegs(bases bool) error {
	was := v.notif
	answer := uint64(answerSave)
	if bases {
		answer |= answerWithBases
	}
	if err := v.answer(answer); err != nil {
		return fmt.Errorf("process: answer the guest process: %w", err)
	}
	v.pending = false
	if err := v.receive(); err != nil {
		v.ended = fmt.Errorf("process: receive from the guest process: %w", err)
		return v.ended
	}
	v.pending = true
	if v.notif.Nr != was.Nr || v.notif.IP != was.IP || v.notif.Args != was.Args {
		return errors.New("process: the guest did not report its hypercall again after storing its selectors")
	}
	return nil
}

// parked checks the guest waits in a hypercall Run returned, with write
// tracking on.
func (v *VCPU) parked() error {
	switch {
	case v.track == nil:
		return errors.New("process: the guest process was not started by NewFresh")
	case v.ended != nil:
		return v.ended
	case !v.pending || v.notif.Nr != handlerNr || v.notif.IP != handlerSyscallRet || v.skip == 0:
		return errors.New("process: the guest is not parked at a hypercall")
	}
	return nil
}
