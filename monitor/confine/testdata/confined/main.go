// Command confined is the process TestInstall, TestInstallCgo,
// TestInstallUnprivileged, TestForbiddenCall, TestForbiddenCallStderrFull and
// TestSentSIGSYS confine: built without cgo,
// like tender, or with it, it installs tender run's KVM policy (from main,
// or with "goroutine" from another goroutine) and then, by its argument,
// works within it until stdin closes, or makes a forbidden call (with
// "full-stderr", once its stderr is full).
package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tendervm/tender/monitor"
	"github.com/tendervm/tender/monitor/confine"
)

func main() {
	if os.Args[1] == "goroutine" {
		installInGoroutine()
		return
	}
	install()
	switch os.Args[1] {
	case "work":
		work()
		fmt.Println("ready")
		io.Copy(io.Discard, os.Stdin)
	case "getppid":
		unix.Getppid() // not on the KVM list
		fmt.Println("still alive")
	case "socket":
		_, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
		fmt.Println("still alive:", err)
	case "full-stderr":
		// stderr is a pipe nobody reads: fill it, then leave it blocking,
		// so that only the handler's own care keeps its write from
		// blocking for ever.
		fl, err := unix.FcntlInt(2, unix.F_GETFL, 0)
		if err == nil {
			_, err = unix.FcntlInt(2, unix.F_SETFL, fl|unix.O_NONBLOCK)
		}
		for buf := make([]byte, 4096); err == nil; {
			_, err = unix.Write(2, buf)
		}
		if err != unix.EAGAIN {
			fmt.Println("filling stderr:", err)
			os.Exit(1)
		}
		if _, err := unix.FcntlInt(2, unix.F_SETFL, fl&^unix.O_NONBLOCK); err != nil {
			fmt.Println("stderr blocking again:", err)
			os.Exit(1)
		}
		fmt.Println("full")
		unix.Getppid()
		fmt.Println("still alive")
	}
}

func install() {
	if err := confine.Install(confine.Policy{Backend: monitor.BackendKVM}); err != nil {
		fmt.Fprintln(os.Stderr, "install:", err)
		os.Exit(1)
	}
}

// installInGoroutine installs the filter from a goroutine of its own while
// others keep the scheduler busy, as a program's set-up may: Install must
// hold on to one thread, whose no_new_privs seccomp checks.
func installInGoroutine() {
	done := make(chan struct{})
	busy := make(chan struct{})
	for range 8 {
		go func() {
			for {
				select {
				case <-busy:
					return
				default:
					_ = make([]byte, 4096)
					runtime.Gosched()
				}
			}
		}()
	}
	go func() {
		install()
		close(done)
	}()
	<-done
	close(busy)
	work()
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin)
}

// work does what the Go runtime does on its own: threads, locks, sleeps,
// garbage collection, preemption.
func work() {
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread() // the thread exits with the goroutine
			s := make([][]byte, 0, 64)
			for j := range 2000 {
				s = append(s, make([]byte, 1024*(i+1)))
				if len(s) == cap(s) {
					s = s[:0]
				}
				if j%100 == 0 {
					time.Sleep(time.Millisecond)
				}
			}
		}()
	}
	wg.Wait()
	runtime.GC()
}
