package kvm

import (
	"errors"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// maxTeardowns bounds the VMs being destroyed in the background at once;
// past it, Close destroys the VM itself, so a burst of closes slows its
// callers rather than piling up dead VMs.
const maxTeardowns = 8

// teardown closes the descriptors of VMs in the background. Closing the
// last descriptor of a VM makes the kernel destroy it there and then, which
// costs 150-450 µs on kvm_pvm hosts: a cold invocation's caller need not
// wait for it once the guest has answered.
type teardown struct {
	slots chan struct{}
	wg    sync.WaitGroup
	mu    sync.Mutex
	err   error // the first close that failed
	// done: wait has begun; closes from then on happen before close
	// returns (the WaitGroup takes no Add once waited on).
	done bool
	// delay holds each background close back this long; tests set it, to
	// see that waiting for them waits.
	delay time.Duration
}

func (t *teardown) init() { t.slots = make(chan struct{}, maxTeardowns) }

// close closes the descriptors (-1 for none), in order, in the background
// while fewer than maxTeardowns are under way, else before it returns.
func (t *teardown) close(fds ...int) {
	t.mu.Lock()
	if t.done {
		t.mu.Unlock()
		t.record(closeAll(fds))
		return
	}
	select {
	case t.slots <- struct{}{}:
		t.wg.Add(1)
		t.mu.Unlock()
		go func() {
			defer t.wg.Done()
			time.Sleep(t.delay)
			t.record(closeAll(fds))
			<-t.slots
		}()
	default:
		t.mu.Unlock()
		t.record(closeAll(fds))
	}
}

// wait waits for every teardown under way and returns the first error.
// Closes from then on are done by their callers.
func (t *teardown) wait() error {
	t.mu.Lock()
	t.done = true
	t.mu.Unlock()
	t.wg.Wait()
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.err
}

func (t *teardown) record(err error) {
	if err == nil {
		return
	}
	t.mu.Lock()
	if t.err == nil {
		t.err = err
	}
	t.mu.Unlock()
}

func closeAll(fds []int) error {
	var errs []error
	for _, fd := range fds {
		if fd >= 0 {
			errs = append(errs, unix.Close(fd))
		}
	}
	return errors.Join(errs...)
}
