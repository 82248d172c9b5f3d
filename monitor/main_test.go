package monitor_test

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// TestMain builds the guests the example boots, so `go test ./monitor` works
// on a fresh checkout.
func TestMain(m *testing.M) {
	cmd := exec.Command("make", "-s", "-C", "..", "guests")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "monitor: `make guests` failed:", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}
