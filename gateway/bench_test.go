package gateway_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/tendervm/tender/gateway"
	"github.com/tendervm/tender/monitor"
)

// benchEcho times sequential 64-byte POST /invoke round trips to h over
// loopback with one keep-alive connection; the client side is the same for
// every handler compared.
func benchEcho(b *testing.B, h http.Handler) {
	srv := httptest.NewServer(h)
	defer srv.Close()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	payload := bytes.Repeat([]byte("0123456789abcdef"), 4)
	url := srv.URL + "/invoke"
	buf := new(bytes.Buffer)
	round := func() {
		resp, err := client.Post(url, "application/octet-stream", bytes.NewReader(payload))
		if err != nil {
			b.Fatal(err)
		}
		buf.Reset()
		_, err = buf.ReadFrom(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || !bytes.Equal(buf.Bytes(), payload) {
			b.Fatalf("got %d %q (%v), want 200 and the payload", resp.StatusCode, buf.Bytes(), err)
		}
	}
	round() // connect, and warm the instance
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	for b.Loop() {
		round()
	}
}

// BenchmarkGatewayEcho: the gateway, logging nothing, in front of one warm
// fn_echo instance.
func BenchmarkGatewayEcho(b *testing.B) {
	p := newPool(b, newHost(b), "fn_echo", monitor.PoolConfig{MaxInstances: 1})
	benchEcho(b, gateway.New(gateway.Config{Pool: p}))
}

// BenchmarkPlainEcho: a net/http handler that echoes the body, the floor
// for BenchmarkGatewayEcho.
func BenchmarkPlainEcho(b *testing.B) {
	benchEcho(b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write(body)
	}))
}
