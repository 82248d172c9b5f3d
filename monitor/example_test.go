package monitor_test

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/tendervm/tender/monitor"
)

// Boot the hello guest, send its console to stdout and report how it ended.
func Example() {
	image, err := os.ReadFile("../bin/guest/hello.elf") // built by `make`
	if err != nil {
		fmt.Println(err)
		return
	}
	host, err := monitor.NewHost(monitor.HostConfig{Backend: monitor.BackendAuto})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer host.Close()

	vm, err := host.New(monitor.Config{ELF: image, Name: "hello", Console: os.Stdout})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer vm.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := vm.Run(ctx)
	fmt.Printf("status %d, error %v, %d hypercalls\n", res.Status, err, res.Stats.ExitCounts()["hypercall"])
	// Output:
	// hello from tender guest
	// status 0, error <nil>, 2 hypercalls
}

// Serve invocations of the fn_upper function from a warm pool.
func ExamplePool() {
	image, err := os.ReadFile("../bin/guest/fn_upper.elf") // built by `make`
	if err != nil {
		fmt.Println(err)
		return
	}
	host, err := monitor.NewHost(monitor.HostConfig{Backend: monitor.BackendAuto})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer host.Close()

	pool, err := host.NewPool(monitor.PoolConfig{
		Guest:        monitor.Config{ELF: image},
		Mode:         monitor.Warm,
		MaxInstances: 4,
		Timeout:      time.Second,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer pool.Close()

	for _, body := range []string{"hello", "tender"} {
		rep, err := pool.Invoke(context.Background(), monitor.Request{Body: []byte(body)})
		fmt.Printf("%s %v\n", rep.Body, err)
	}
	fmt.Println("instances booted:", pool.Stats().Started)
	// Output:
	// HELLO <nil>
	// TENDER <nil>
	// instances booted: 1
}
