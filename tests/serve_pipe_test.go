package tests

import (
	"io"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestServeStdoutGone runs tender-serve with its stdout a pipe whose reader
// has gone, as in `tender serve fn.elf | head -1`, and a function that
// writes console lines: the writes must cost those lines only, not kill the
// server with SIGPIPE, so it goes on answering and exits 0 on SIGTERM.
func TestServeStdoutGone(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(string(b), func(t *testing.T) {
			r, w, err := os.Pipe()
			require.NoError(t, err)
			require.NoError(t, r.Close()) // the reader went away
			s := startServeTo(t, w, 0, "-backend="+string(b), "-listen=127.0.0.1:0", "-max-instances=1",
				"-drain-delay=0", guestPath("fn_forge"))
			w.Close() // the server holds its own copy
			for i := range 5 {
				body := strings.Repeat("x", i+1)
				resp, err := http.Post(s.url+"/invoke", "application/octet-stream", strings.NewReader(body))
				require.NoError(t, err, "invocation %d: the server is gone; stderr:\n%s", i, s.logs())
				got, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				require.NoError(t, err)
				assert.Equal(t, http.StatusOK, resp.StatusCode)
				assert.Equal(t, body, string(got))
				resp, err = http.Get(s.url + "/healthz")
				require.NoError(t, err, "/healthz after invocation %d: the server is gone; stderr:\n%s", i, s.logs())
				resp.Body.Close()
				assert.Equal(t, http.StatusOK, resp.StatusCode)
			}
			// Its shutdown flushes the console queue, writing to the pipe
			// once more at the latest: a SIGPIPE death shows in the exit.
			s.stop(t)
		})
	}
}
