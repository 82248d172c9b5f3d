// Package kvm runs a guest in a KVM virtual machine with one vCPU. The guest
// runs at CPL 3 under page tables, GDT, IDT and TSS built by package x86, so
// on hosts where KVM emulates CPL-0 code (nested, paravirtual KVM) the guest
// still runs at native speed, and on any host it cannot change its own page
// permissions.
//
// The KVM structures and ioctl encoding come from
// github.com/bobuhiro11/gokvm/kvm; the calls go through ioctl (ioctl.go),
// which retries them when a signal interrupts them. system.go holds the
// open device and what it reads once, vcpu.go a VM with its vCPU (created,
// run, kicked, closed), exit.go and priv.go decode exits and emulate a
// Solo5 guest's privileged instructions, snapshot.go and teardown.go reset
// and destroy VMs.
package kvm

import "errors"

// DefaultDevice is the KVM device node.
const DefaultDevice = "/dev/kvm"

// ErrUnavailable is returned (wrapped) by Open when KVM cannot be used.
var ErrUnavailable = errors.New("KVM is not available")

// ErrClosed is NewVCPU's error once its System is closed.
var ErrClosed = errors.New("kvm: closed")

// Control-register and EFER bits.
const (
	cr0PE = 1 << 0
	cr0MP = 1 << 1
	cr0ET = 1 << 4
	cr0NE = 1 << 5
	cr0WP = 1 << 16
	cr0PG = 1 << 31

	cr4PAE        = 1 << 5
	cr4OSFXSR     = 1 << 9
	cr4OSXMMEXCPT = 1 << 10
	cr4OSXSAVE    = 1 << 18

	eferLME = 1 << 8
	eferLMA = 1 << 10
	eferNXE = 1 << 11

	msrLSTAR = 0xC0000082
	msrTSC   = 0x10
)

// kvm_run offsets (include/uapi/linux/kvm.h).
const (
	runImmediateExit = 1
	runExitReason    = 8
	runUnion         = 32
	runValidRegs     = 288
	runDirtyRegs     = 296
	runSyncRegs      = 304               // struct kvm_regs in kvm_run.s.regs
	runSyncSregs     = runSyncRegs + 144 // struct kvm_sregs after it
	exitSentinel     = 0xFFFFFFFF
)
