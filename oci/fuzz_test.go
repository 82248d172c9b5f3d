package oci

import (
	"strings"
	"testing"
)

// FuzzParseAnnotations: any value of any tender annotation is accepted with
// settings in range or refused with an error naming the annotation; it never
// panics.
func FuzzParseAnnotations(f *testing.F) {
	for _, s := range [][2]string{
		{AnnotationMemory, "64"}, {AnnotationMemory, "1Gi"}, {AnnotationMemory, "18446744073709551615M"},
		{AnnotationMemory, "2147483648G"}, {AnnotationTimeout, "1h"}, {AnnotationTimeout, "-0s"},
		{AnnotationBackend, "auto"}, {AnnotationMode, "cold"}, {AnnotationPort, "+80"},
		{AnnotationPort, "0x50"}, {"dev.tender.", ""}, {"other", "x"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, key, value string) {
		o, err := ParseAnnotations(map[string]string{key: value})
		if err != nil {
			if !strings.Contains(err.Error(), "annotation "+key) {
				t.Fatalf("error %q does not name the annotation", err)
			}
			return
		}
		if o.MemMiB < 4 || o.MemMiB > 4096 || o.MemMiB%2 != 0 || o.Port < 1 || o.Port > 65535 || o.Timeout < 0 {
			t.Fatalf("%s=%q accepted as %+v", key, value, o)
		}
	})
}

// FuzzParseConfig: a config.json is accepted with a process, arguments and
// a root, or refused with an error; it never panics.
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(`{"ociVersion":"1.0.2","process":{"args":["/hello.elf"],"cwd":"/"},"root":{"path":"rootfs"}}`))
	f.Add([]byte(`{"process":{"args":[]},"root":{"path":"rootfs"}}`))
	f.Add([]byte(`{"process":{"args":["x"]},"root":{"path":""},"annotations":{"dev.tender.port":"80"}}`))
	f.Add([]byte(`{"process":{"args":["x"]},"root":{"path":"r"},"linux":{"namespaces":[{"type":"network","path":"/proc/1/ns/net"}]}}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`{"process":null}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseConfig(b)
		if err != nil {
			if s != nil {
				t.Fatal("spec and error both returned")
			}
			if !strings.HasPrefix(err.Error(), "config.json: ") {
				t.Fatalf("error %q does not name config.json", err)
			}
			return
		}
		if s.Process == nil || len(s.Process.Args) == 0 || s.Process.Args[0] == "" || s.Root == nil || s.Root.Path == "" {
			t.Fatalf("accepted %q", b)
		}
		if _, err := networkNamespace(s); err != nil && !strings.Contains(err.Error(), "user namespaces") {
			t.Fatalf("networkNamespace: %v", err)
		}
	})
}
