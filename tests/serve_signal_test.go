package tests

import (
	"fmt"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestServeSecondSignal: as the README's SIGTERM bullet says, a second
// signal skips the waiting. With a 30 s -drain-delay and a request in
// flight (its body never comes, and -body-timeout and -shutdown-timeout are
// longer still), tender-serve is still draining a while after the first
// SIGTERM, and exits 0 promptly after the second.
func TestServeSecondSignal(t *testing.T) {
	// It only waits: see "Parallel tests" in main_test.go.
	t.Parallel()
	const prompt = 5 * time.Second // far below each wait skipped
	for _, b := range backends(t) {
		t.Run(string(b), func(t *testing.T) {
			s := startServe(t, 0, "-backend="+string(b), "-listen=127.0.0.1:0", "-max-instances=1",
				"-drain-delay=30s", "-shutdown-timeout=60s", "-body-timeout=60s", guestPath("fn_echo"))
			addr := strings.TrimPrefix(s.url, "http://")

			// A request in flight: headers sent, the body held back.
			c, err := net.Dial("tcp", addr)
			require.NoError(t, err)
			defer c.Close()
			_, err = fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: %s\r\nContent-Length: 100\r\n\r\n", addr)
			require.NoError(t, err)

			require.NoError(t, s.cmd.Process.Signal(syscall.SIGTERM))
			// The second signal counts once the server listens for it,
			// which it does before it logs "draining".
			require.Eventually(t, func() bool { return strings.Contains(s.logs(), `"msg":"draining"`) },
				serveHangCheck, 10*time.Millisecond, "no draining line; stderr:\n%s", s.logs())
			resp, err := http.Get(s.url + "/healthz")
			require.NoError(t, err, "still serving while draining")
			resp.Body.Close()
			assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
			select {
			case <-s.exited:
				t.Fatalf("exited during a 30 s drain delay after one signal; stderr:\n%s", s.logs())
			case <-time.After(500 * time.Millisecond):
			}

			start := time.Now()
			require.NoError(t, s.cmd.Process.Signal(syscall.SIGTERM))
			select {
			case <-s.exited:
				assert.NoError(t, s.exitErr, "stderr:\n%s", s.logs())
				t.Logf("exited %v after the second signal", time.Since(start).Round(time.Millisecond))
			case <-time.After(prompt):
				t.Fatalf("still running %v after the second signal; stderr:\n%s", prompt, s.logs())
			}
			assert.Contains(t, s.logs(), `"msg":"stopped"`)
		})
	}
}
