// Command confined is the process TestInstall, TestInstallCgo and
// TestForbiddenCall confine: built without cgo, like tender, or with it, it
// installs tender run's KVM policy and
// then, by its argument, works within it until stdin closes, or makes a
// forbidden call.
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
	if err := confine.Install(confine.Policy{Backend: monitor.BackendKVM}); err != nil {
		fmt.Fprintln(os.Stderr, "install:", err)
		os.Exit(1)
	}
	switch os.Args[1] {
	case "work":
		// What the Go runtime does on its own: threads, locks, sleeps,
		// garbage collection, preemption.
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
		fmt.Println("ready")
		io.Copy(io.Discard, os.Stdin)
	case "getppid":
		unix.Getppid() // not on the KVM list
		fmt.Println("still alive")
	case "socket":
		_, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
		fmt.Println("still alive:", err)
	}
}
