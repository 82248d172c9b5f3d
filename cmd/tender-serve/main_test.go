package main

import (
	"bytes"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/tendervm/tender/gateway"
	"github.com/tendervm/tender/monitor"
)

// TestWriteBackstop: the server's write timeout covers the body, the
// invocation and the reply as the gateway and the pool read their flags
// (0: their defaults), is none when the body or the reply has no limit,
// and saturates rather than wrapping negative.
func TestWriteBackstop(t *testing.T) {
	const s = time.Second
	defaults := gateway.DefaultBodyTimeout + monitor.DefaultFnTimeout + gateway.DefaultWriteTimeout
	for _, c := range []struct {
		name            string
		body, fn, write time.Duration
		want            time.Duration
	}{
		{"set", 1 * s, 2 * s, 3 * s, 6 * s},
		{"defaults", gateway.DefaultBodyTimeout, monitor.DefaultFnTimeout, gateway.DefaultWriteTimeout, defaults},
		{"zeros mean defaults", 0, 0, 0, defaults},
		{"zero timeout", 1 * s, 0, 3 * s, 4*s + monitor.DefaultFnTimeout},
		{"negative timeout", 1 * s, -1, 3 * s, 4*s + monitor.DefaultFnTimeout},
		{"zero body timeout", 0, 2 * s, 3 * s, 5*s + gateway.DefaultBodyTimeout},
		{"zero write timeout", 1 * s, 2 * s, 0, 3*s + gateway.DefaultWriteTimeout},
		{"no body limit", -1, 2 * s, 3 * s, 0},
		{"no reply limit", 1 * s, 2 * s, -1, 0},
		{"huge timeout", 1 * s, math.MaxInt64, 3 * s, math.MaxInt64},
		{"huge everything", math.MaxInt64, math.MaxInt64, math.MaxInt64, math.MaxInt64},
	} {
		if got := writeBackstop(c.body, c.fn, c.write); got != c.want {
			t.Errorf("%s: writeBackstop(%v, %v, %v) = %v, want %v", c.name, c.body, c.fn, c.write, got, c.want)
		}
	}
}

// TestServeUsage: command lines that cannot be served are usage errors (exit
// 254) found before anything starts: the guest ELF is not even read.
func TestServeUsage(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-prewarm=2", "-mode=cold", "../../bin/guest/fn_echo.elf"}, "-prewarm 2: a cold pool keeps no instances to prewarm"},
		{[]string{"-prewarm=2", "-mode=cold", "/nonexistent/fn.elf"}, "-prewarm 2: a cold pool keeps no instances to prewarm"},
		{[]string{"-prewarm=-1", "/nonexistent/fn.elf"}, "-prewarm -1: want 0 or more"},
	} {
		var stdout, stderr bytes.Buffer
		code := serve(c.args, &stdout, &stderr)
		if code != monitor.ExitUsage || !strings.Contains(stderr.String(), c.want) {
			t.Errorf("serve %v: exit %d, stderr %q; want %d and %q", c.args, code, stderr.String(), monitor.ExitUsage, c.want)
		}
	}
}

// TestServeQueueHelp: -h says what -queue 0 means, as it does for negative
// values.
func TestServeQueueHelp(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := serve([]string{"-h"}, &stdout, &stderr); code != 0 {
		t.Fatalf("serve -h: exit %d", code)
	}
	want := fmt.Sprintf("(0: %d; negative: none wait)", monitor.DefaultQueueLimit)
	if !strings.Contains(stderr.String(), want) {
		t.Errorf("serve -h does not say what -queue 0 means (%q):\n%s", want, stderr.String())
	}
}
