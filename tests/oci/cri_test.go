package oci_test

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// cniBin is where Debian's containernetworking-plugins installs the plugins.
const cniBin = "/usr/lib/cni"

const (
	pauseImage = "tender.test/pause:1"
	echoImage  = "tender.test/fn-echo:1"
)

// buildImage writes an image of one layer holding files, FROM scratch, as a
// docker-save tarball that `ctr images import` takes.
func buildImage(t *testing.T, ref string, files map[string][]byte, entrypoint []string) string {
	t.Helper()
	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	for n, b := range files {
		require.NoError(t, tw.WriteHeader(&tar.Header{Name: n, Mode: 0o755, Size: int64(len(b)), Typeflag: tar.TypeReg}))
		_, err := tw.Write(b)
		require.NoError(t, err)
	}
	require.NoError(t, tw.Close())
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(layer.Bytes())), nil })
	require.NoError(t, err)
	img, err := mutate.AppendLayers(empty.Image, l)
	require.NoError(t, err)
	cf, err := img.ConfigFile()
	require.NoError(t, err)
	cf = cf.DeepCopy()
	cf.Architecture, cf.OS = "amd64", "linux"
	cf.Config.Entrypoint = entrypoint
	img, err = mutate.ConfigFile(img, cf)
	require.NoError(t, err)
	tag, err := name.NewTag(ref)
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "image.tar")
	require.NoError(t, tarball.WriteToFile(path, tag, img))
	return path
}

// pauseBinary is a static pause: it sleeps until SIGTERM or SIGINT.
func pauseBinary(t *testing.T) []byte {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(dir, "pause.c")
	require.NoError(t, os.WriteFile(src, []byte("#include <signal.h>\n#include <unistd.h>\nstatic void stop(int s){(void)s;_exit(0);}\nint main(void){signal(SIGTERM,stop);signal(SIGINT,stop);for(;;)pause();}\n"), 0o644))
	out, err := exec.Command("gcc", "-static", "-O2", "-o", filepath.Join(dir, "pause"), src).CombinedOutput()
	require.NoError(t, err, "%s", out)
	b, err := os.ReadFile(filepath.Join(dir, "pause"))
	require.NoError(t, err)
	return b
}

// TestCRI drives containerd's CRI plugin as the kubelet does: a pod sandbox
// with RuntimeClass handler "tender" (its pause container goes through
// tender-oci to runc, its network from the CNI bridge plugin), a container
// whose image holds fn_echo.elf annotated to be served warm, a POST to the
// pod's address; then the pod is stopped and removed and nothing of it is
// left.
func TestCRI(t *testing.T) {
	needContainerd(t)
	for _, p := range []string{"bridge", "host-local", "loopback"} {
		if _, err := os.Stat(filepath.Join(cniBin, p)); err != nil {
			if os.Getenv("TENDER_REQUIRE_CONTAINERD") == "1" {
				t.Fatalf("TENDER_REQUIRE_CONTAINERD=1 but the CNI plugin %s is missing (Debian package containernetworking-plugins): %v", p, err)
			}
			t.Skipf("CNI plugin %s missing (Debian package containernetworking-plugins): %v", p, err)
		}
	}
	needNet(t)
	bridge := fmt.Sprintf("tbr%d", os.Getpid()%1000000)
	subnet := fmt.Sprintf("10.214.%d.0/24", os.Getpid()%250+1)
	t.Cleanup(func() { _ = ipCmd("link", "del", bridge) })
	netnsBefore := netnsEntries(t)
	c := startContainerdWith(t, func(dir string) string {
		conf := filepath.Join(dir, "cni")
		require.NoError(t, os.MkdirAll(conf, 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(conf, "10-tender.conflist"), fmt.Appendf(nil, `{
  "cniVersion": "0.4.0", "name": "tender-test-%d",
  "plugins": [{"type": "bridge", "bridge": %q, "isGateway": true, "ipMasq": false,
    "ipam": {"type": "host-local", "ranges": [[{"subnet": %q}]], "dataDir": %q}}]
}`, os.Getpid(), bridge, subnet, filepath.Join(dir, "ipam")), 0o644))
		return fmt.Sprintf(`[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %q
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  # The sandbox asks for oom_score_adj -998, which needs CAP_SYS_RESOURCE:
  # in a machine without it (a container) runc could not start the pause.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %q
    conf_dir = %q
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.tender]
    runtime_type = "io.containerd.runc.v2"
    pod_annotations = ["dev.tender.*"]
    container_annotations = ["dev.tender.*"]
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.tender.options]
      BinaryName = %q
      Root = %q
`, pauseImage, cniBin, conf, tenderOCI, filepath.Join(dir, "runc"))
	})
	c.ns = "k8s.io"
	echo, err := os.ReadFile(guestPath("fn_echo"))
	require.NoError(t, err)
	for ref, img := range map[string]string{
		pauseImage: buildImage(t, pauseImage, map[string][]byte{"pause": pauseBinary(t)}, []string{"/pause"}),
		echoImage:  buildImage(t, echoImage, map[string][]byte{"fn_echo.elf": echo}, []string{"/fn_echo.elf"}),
	} {
		_, stderr, err := c.ctr(t, "images", "import", img)
		require.NoError(t, err, "import %s: %s", ref, stderr)
	}

	conn, err := grpc.NewClient("unix://"+c.sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	rs := runtimeapi.NewRuntimeServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	annotations := map[string]string{"dev.tender.mode": "warm"}
	sandbox := &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: "echo", Uid: "tender-test-uid", Namespace: "default"},
		Hostname:     "echo",
		LogDirectory: t.TempDir(),
		Annotations:  annotations,
		Linux:        &runtimeapi.LinuxPodSandboxConfig{},
	}
	pod, err := rs.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: sandbox, RuntimeHandler: "tender"})
	require.NoError(t, err)
	removed := false
	defer func() {
		if !removed {
			// A context of its own: the test's may be what ran out.
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			rs.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: pod.PodSandboxId})
			rs.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: pod.PodSandboxId})
		}
	}()
	ctr, err := rs.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{
		PodSandboxId: pod.PodSandboxId,
		Config: &runtimeapi.ContainerConfig{
			Metadata:    &runtimeapi.ContainerMetadata{Name: "echo"},
			Image:       &runtimeapi.ImageSpec{Image: echoImage},
			LogPath:     "echo.log",
			Annotations: annotations,
		},
		SandboxConfig: sandbox,
	})
	require.NoError(t, err)
	_, err = rs.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: ctr.ContainerId})
	require.NoError(t, err)
	st, err := rs.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: pod.PodSandboxId})
	require.NoError(t, err)
	ip := st.Status.GetNetwork().GetIp()
	require.NotEmpty(t, ip, "the pod has no address")

	url := "http://" + ip + ":8080/invoke"
	client := &http.Client{Timeout: 5 * time.Second}
	var reply string
	require.Eventually(t, func() bool {
		resp, err := client.Post(url, "application/octet-stream", strings.NewReader("hello through the CRI"))
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		reply = string(b)
		return resp.StatusCode == http.StatusOK
	}, 20*time.Second, 50*time.Millisecond, "POST %s", url)
	assert.Equal(t, "hello through the CRI", reply)

	_, err = rs.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: pod.PodSandboxId})
	require.NoError(t, err)
	_, err = rs.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: pod.PodSandboxId})
	require.NoError(t, err)
	removed = true
	c.noLeftovers(t)
	assert.Equal(t, netnsBefore, netnsEntries(t), "network namespaces left in /run/netns")
}

// netnsEntries lists the CNI namespaces in /run/netns.
func netnsEntries(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir("/run/netns")
	if os.IsNotExist(err) {
		return nil
	}
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "cni-") {
			names = append(names, e.Name())
		}
	}
	return names
}
