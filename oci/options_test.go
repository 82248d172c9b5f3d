package oci

import (
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tendervm/tender/monitor"
	"github.com/tendervm/tender/monitor/loader"
)

func TestParseAnnotationsDefaults(t *testing.T) {
	o, err := ParseAnnotations(map[string]string{"io.kubernetes.cri.container-type": "container"})
	require.NoError(t, err)
	assert.Equal(t, Options{MemMiB: 64, Backend: monitor.BackendKVM, Mode: ModeRun, Port: DefaultPort}, o)
	assert.False(t, o.Serves())
}

func TestParseAnnotations(t *testing.T) {
	o, err := ParseAnnotations(map[string]string{
		AnnotationMemory:  "1Gi",
		AnnotationTimeout: "1500ms",
		AnnotationBackend: "process",
		AnnotationMode:    "fresh",
		AnnotationPort:    "9090",
	})
	require.NoError(t, err)
	assert.Equal(t, Options{MemMiB: 1024, Timeout: 1500 * time.Millisecond, Backend: monitor.BackendProcess, Mode: "fresh", Port: 9090}, o)
	assert.True(t, o.Serves())
	for v, want := range map[string]uint64{"4": 4, "128M": 128, "128Mi": 128, "256MiB": 256, "2G": 2048, "3GiB": 3072, "4Gi": 4096, "4096": 4096} {
		o, err := ParseAnnotations(map[string]string{AnnotationMemory: v})
		require.NoError(t, err, v)
		assert.Equal(t, want, o.MemMiB, v)
	}
}

// TestCheckMemory: above 3 GiB, the memory annotation is refused for a
// tender guest and accepted for a Solo5 guest, whose limit is 4 GiB.
func TestCheckMemory(t *testing.T) {
	tender, s5 := &loader.Image{}, &loader.Image{Solo5: &loader.Solo5Manifest{}}
	for _, v := range []string{"64", "3Gi", "3072"} {
		o, err := ParseAnnotations(map[string]string{AnnotationMemory: v})
		require.NoError(t, err, v)
		assert.NoError(t, o.CheckMemory(tender), v)
		assert.NoError(t, o.CheckMemory(s5), v)
	}
	for _, v := range []string{"3074", "4Gi"} {
		o, err := ParseAnnotations(map[string]string{AnnotationMemory: v})
		require.NoError(t, err, v)
		assert.ErrorContains(t, o.CheckMemory(tender), "annotation dev.tender.memory: "+strconv.FormatUint(o.MemMiB, 10)+" MiB: a tender guest takes at most 3072 MiB (a Solo5 guest 4096 MiB)", v)
		assert.NoError(t, o.CheckMemory(s5), v)
	}
}

func TestParseAnnotationsErrors(t *testing.T) {
	for _, c := range []struct{ key, value, want string }{
		{AnnotationMemory, "3", "even number of MiB from 4 to 4096 (3072 for a tender guest)"},
		{AnnotationMemory, "4098", "even number of MiB"},
		{AnnotationMemory, "5Gi", "even number of MiB"},
		{AnnotationMemory, "64k", "even number of MiB"},
		{AnnotationMemory, "", "even number of MiB"},
		{AnnotationMemory, "-64", "even number of MiB"},
		{AnnotationTimeout, "ten", "want a duration"},
		{AnnotationTimeout, "-1s", "want a duration"},
		{AnnotationBackend, "qemu", "want kvm, process or auto"},
		{AnnotationMode, "hot", "want run, warm, fresh or cold"},
		{AnnotationPort, "0", "port from 1 to 65535"},
		{AnnotationPort, "65536", "port from 1 to 65535"},
		{AnnotationPort, "http", "port from 1 to 65535"},
		{"dev.tender.memroy", "64", "unknown tender annotation"},
	} {
		_, err := ParseAnnotations(map[string]string{c.key: c.value})
		assert.ErrorContains(t, err, c.want, "%s=%q", c.key, c.value)
		assert.ErrorContains(t, err, "annotation "+c.key, "%s=%q", c.key, c.value)
	}
}

func TestTendered(t *testing.T) {
	assert.False(t, Tendered(nil))
	assert.False(t, Tendered(map[string]string{"dev.tenderloin": "x"}))
	assert.True(t, Tendered(map[string]string{AnnotationPort: "80"}))
	assert.True(t, Tendered(map[string]string{AnnotationPort: "80", criContainerType: "container"}))
	assert.False(t, Tendered(map[string]string{AnnotationPort: "80", criContainerType: "sandbox"}), "a pod's pause container")
	assert.False(t, Tendered(map[string]string{AnnotationPort: "80", crioContainerType: "sandbox"}), "a pod's pause container")
}

func TestParseSignal(t *testing.T) {
	for s, want := range map[string]int{"9": 9, "KILL": 9, "SIGKILL": 9, "term": 15, "SIGTERM": 15, "15": 15, "64": 64} {
		sig, err := ParseSignal(s)
		require.NoError(t, err, s)
		assert.Equal(t, want, int(sig), s)
	}
	for s, want := range map[string]string{"0": "want 1 to 64", "65": "want 1 to 64", "SIGFOO": "unknown signal", "": "unknown signal"} {
		_, err := ParseSignal(s)
		assert.ErrorContains(t, err, want, s)
	}
}

func TestCheckID(t *testing.T) {
	for _, id := range []string{"a", "c1", "k8s_pod-1.2+x", "0123456789abcdef"} {
		assert.NoError(t, checkID(id), id)
	}
	for _, id := range []string{"", ".", "..", "a/b", "../x", "a b", "a\x00"} {
		assert.ErrorContains(t, checkID(id), "invalid container ID", id)
	}
}
