package gateway

import (
	"bufio"
	"bytes"
	"net/http"
	"strings"
	"testing"
)

// FuzzHealthCheck compares healthCheck, which reads a reserve connection's
// request line by hand, with net/http's parser: whenever http.ReadRequest
// accepts the bytes (completed with an empty line), healthCheck passes them
// exactly when they are a GET or HEAD of /healthz. healthCheck is stricter
// than net/http in ways that only refuse, and the property leaves those
// inputs out:
//   - it sees the first 256 bytes only (triage's buffer), and bytes with no
//     CRLF at all are refused, where net/http accepts a bare LF (a request
//     line ended by a bare LF and followed by a CRLF reads the same to both);
//   - it compares the raw target, so a percent-encoded spelling of the path
//     (/%68ealthz, which net/http decodes and keeps in URL.RawPath) or the
//     absolute form (GET http://host/healthz) is no health check.
func FuzzHealthCheck(f *testing.F) {
	for _, s := range []string{
		"GET /healthz?x HTTP/1.1\r\n",
		"HEAD /healthz HTTP/1.0\r\n",
		"GET /healthz",
		"POST /healthz HTTP/1.1\r\n",
		"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /healthz/ HTTP/1.1\r\n",
		"GET /healthzz HTTP/1.1\r\n",
		"get /healthz HTTP/1.1\r\n",
		"GET /%68ealthz HTTP/1.1\r\n",
		"GET http://h/healthz HTTP/1.1\r\n",
		"GET /healthz HTTP/1.1\n\r\n",
		"GET /healthz#x HTTP/1.1\r\n",
		"GET  /healthz HTTP/1.1\r\n",
		"GET /healthz HTTP/1.1 \r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, head []byte) {
		got := healthCheck(head) // must not panic, whatever the bytes
		if len(head) > 256 {
			return
		}
		if !bytes.Contains(head, []byte("\r\n")) {
			if got {
				t.Fatalf("%q: passed without a CRLF", head)
			}
			return
		}
		in := head
		if !bytes.Contains(in, []byte("\r\n\r\n")) {
			in = append(bytes.Clone(in), "\r\n\r\n"...)
		}
		req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(in)))
		if err != nil {
			return
		}
		if req.URL.RawPath != "" || !strings.HasPrefix(req.RequestURI, "/") {
			if got {
				t.Fatalf("%q: passed a target net/http spells %q", head, req.RequestURI)
			}
			return
		}
		want := (req.Method == http.MethodGet || req.Method == http.MethodHead) && req.URL.Path == "/healthz"
		if got != want {
			t.Fatalf("%q: healthCheck %v, net/http reads %s %q (path %q)", head, got, req.Method, req.RequestURI, req.URL.Path)
		}
	})
}
