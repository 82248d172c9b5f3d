package oci_test

import (
	"slices"
	"strconv"
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
	for i := 0; b.Loop(); i++ {
		for _, r := range []struct {
			args []string
			to   *[]time.Duration
		}{{[]string{"/hello.elf"}, &tender}, {[]string{"/hello"}, &runc}} {
			id := "b" + strconv.Itoa(i) + r.args[0][1:4]
			start := time.Now()
			out, stderr, err := c.ctr(b, c.runArgs(fs, id, nil, r.args...)...)
			*r.to = append(*r.to, time.Since(start))
			if err != nil || out == "" {
				b.Fatalf("ctr run %s: %v %s", r.args[0], err, stderr)
			}
		}
	}
	mt, mr := median(tender), median(runc)
	b.ReportMetric(float64(mt.Microseconds())/1e3, "tender-ms")
	b.ReportMetric(float64(mr.Microseconds())/1e3, "runc-ms")
	b.ReportMetric(float64(mt)/float64(mr), "tender/runc")
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}
