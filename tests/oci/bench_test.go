package oci_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkCtrRun times `ctr run --rm` of hello.elf through tender-oci and
// of a static C hello through runc (tender-oci hands it on), interleaved so
// both see the same host, and reports the medians and their ratio:
//
//	go test -run '^$' -bench CtrRun -benchtime 50x ./tests/oci
func BenchmarkCtrRun(b *testing.B) {
	c := startContainerd(b)
	fs := rootfs(b, "hello")
	staticC(b, fs, "hello from runc", 0)
	var tender, runc []time.Duration
	lost := 0
	for i := 0; b.Loop(); i++ {
		for _, r := range []struct {
			args []string
			to   *[]time.Duration
		}{{[]string{"/hello.elf"}, &tender}, {[]string{"/hello"}, &runc}} {
			id := "b" + strconv.Itoa(i) + r.args[0][1:4]
			start := time.Now()
			out, stderr, err := c.ctr(b, c.runArgs(fs, id, nil, r.args...)...)
			*r.to = append(*r.to, time.Since(start))
			if err != nil {
				b.Fatalf("ctr run %s: %v %s", r.args[0], err, stderr)
			}
			if out == "" {
				lost++ // containerd issue 5741, see runOutput
			}
		}
	}
	mt, mr := median(tender), median(runc)
	b.ReportMetric(float64(mt.Microseconds())/1e3, "tender-ms")
	b.ReportMetric(float64(mr.Microseconds())/1e3, "runc-ms")
	b.ReportMetric(float64(mt)/float64(mr), "tender/runc")
	b.ReportMetric(float64(lost), "outputs-lost")
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

// BenchmarkPodInvoke times POST /invoke of a warm fn_echo container on its
// pod's address (through the pod's veth) against `tender serve` of the same
// guest on the host's loopback and started by hand in the pod's namespace,
// interleaved, and reports the medians and their ratios:
//
//	go test -run '^$' -bench PodInvoke -benchtime 2000x ./tests/oci
func BenchmarkPodInvoke(b *testing.B) {
	c := startContainerd(b)
	p := newPod(b)
	fs := rootfs(b, "fn_echo")
	_, stderr, err := c.ctr(b, "run", "-d", "--runc-binary", tenderOCI, "--runc-root", c.runcRoot,
		"--with-ns", "network:"+p.path, "--annotation", "dev.tender.mode=warm",
		"--rootfs", fs, "echo", "/fn_echo.elf")
	if err != nil {
		b.Fatalf("ctr run: %v: %s", err, stderr)
	}
	b.Cleanup(func() {
		c.ctr(b, "tasks", "kill", "--signal", "SIGKILL", "echo")
		for range 100 {
			if _, _, err := c.ctr(b, "tasks", "delete", "echo"); err == nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		c.ctr(b, "containers", "delete", "echo")
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	host := l.Addr().String()
	l.Close()
	serve := exec.Command(filepath.Join(root, "bin", "tender-serve"), "-listen", host, "-mode", "warm", "-console", "none", guestPath("fn_echo"))
	if err := serve.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { serve.Process.Kill(); serve.Wait() })
	// The same server started by hand in the pod's namespace: what the
	// pod's network path costs without tender-oci.
	inPod := exec.Command("ip", "netns", "exec", p.name, filepath.Join(root, "bin", "tender-serve"), "-listen", ":8090", "-mode", "warm", "-console", "none", guestPath("fn_echo"))
	if err := inPod.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { inPod.Process.Kill(); inPod.Wait() })

	client := &http.Client{Timeout: 5 * time.Second}
	post := func(url string) error {
		resp, err := client.Post(url, "application/octet-stream", strings.NewReader("ping"))
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err == nil && (resp.StatusCode != http.StatusOK || string(body) != "ping") {
			err = fmt.Errorf("%s: %s %q", url, resp.Status, body)
		}
		return err
	}
	urls := []string{"http://" + p.podIP + ":8080/invoke", "http://" + host + "/invoke", "http://" + p.podIP + ":8090/invoke"}
	for _, u := range urls {
		deadline := time.Now().Add(20 * time.Second)
		for post(u) != nil {
			if time.Now().After(deadline) {
				b.Fatalf("%s does not answer: %v", u, post(u))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// Each round starts with the next server: the first request of a round
	// is measurably slower here, whichever server it goes to.
	times := make([][]time.Duration, len(urls))
	for round := 0; b.Loop(); round++ {
		for k := range urls {
			i := (round + k) % len(urls)
			start := time.Now()
			if err := post(urls[i]); err != nil {
				b.Fatal(err)
			}
			times[i] = append(times[i], time.Since(start))
		}
	}
	mp, mh, mn := median(times[0]), median(times[1]), median(times[2])
	b.ReportMetric(float64(mp.Nanoseconds())/1e3, "pod-us")
	b.ReportMetric(float64(mh.Nanoseconds())/1e3, "host-us")
	b.ReportMetric(float64(mp)/float64(mh), "pod/host")
	b.ReportMetric(float64(mp)/float64(mn), "pod/by-hand-in-pod")
}
