package bench

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func sampleReport() *Report {
	rows := []RowResult{
		{Key: "process", Name: "process: static C echo (glibc)", Notes: "fork+exec | per request",
			Latency:    Summary{N: 3, Median: 530 * time.Microsecond, P90: 610 * time.Microsecond, P99: 1200 * time.Microsecond},
			Throughput: 3450.4, MemoryKiB: 652},
		{Key: "crun-default", Name: "crun, default config",
			Latency:    Summary{N: 3, Median: 7700 * time.Microsecond, P90: 9 * time.Millisecond, P99: 12345 * time.Microsecond},
			Throughput: 200, MemoryKiB: 3276.8},
		{Key: "runc-default", Name: "runc, default config", Unavailable: "unavailable: runc not installed"},
		{Key: "tender-cold", Name: "tender cold (process backend)",
			Latency:    Summary{N: 3, Median: 1100 * time.Microsecond, P90: 1300 * time.Microsecond, P99: 2 * time.Millisecond},
			Throughput: 1500, MemoryKiB: 88},
		{Key: "tender-warm", Name: "tender warm (process backend)",
			Latency:    Summary{N: 3, Median: 42 * time.Microsecond, P90: 50 * time.Microsecond, P99: 61 * time.Microsecond},
			Throughput: 40000, MemoryKiB: 2},
		{Key: "tender-invoke-cold", Name: "tender cold, whole process (process backend)",
			Latency:    Summary{N: 3, Median: 3 * time.Millisecond, P90: 4 * time.Millisecond, P99: 5 * time.Millisecond},
			Throughput: 600, MemoryKiB: -1},
	}
	return &Report{N: 3, Warmup: 1, Duration: time.Second, Concurrency: 2, Payload: "hello", Backend: "process",
		Machine: Machine{NumCPU: 2}, Rows: rows, Ratios: ratios(rows)}
}

func TestMarkdownTable(t *testing.T) {
	var b strings.Builder
	require.NoError(t, sampleReport().Markdown(&b))
	lines := strings.Split(b.String(), "\n")
	assert.Equal(t, "| row | median | p90 | p99 | throughput/s | memory/instance | notes |", lines[0])
	assert.Equal(t, "|---|---:|---:|---:|---:|---:|---|", lines[1])
	assert.Equal(t, `| process: static C echo (glibc) | 530 µs | 610 µs | 1.20 ms | 3,450 | 652 KiB | fork+exec \| per request |`, lines[2])
	assert.Equal(t, "| crun, default config | 7.70 ms | 9.00 ms | 12.3 ms | 200 | 3.2 MiB |  |", lines[3])
	assert.Equal(t, "| runc, default config | – | – | – | – | – | unavailable: runc not installed |", lines[4])
	assert.Equal(t, "| tender warm (process backend) | 42.0 µs | 50.0 µs | 61.0 µs | 40,000 | < 4 KiB |  |", lines[6])
	assert.Equal(t, "| tender cold, whole process (process backend) | 3.00 ms | 4.00 ms | 5.00 ms | 600 | – |  |", lines[7])
	out := b.String()
	assert.Contains(t, out, "\nLatency: 3 sequential requests per row after a warm-up of at least 1 requests and 20ms. Throughput: 2 concurrent requesters for 1s.")
	assert.Contains(t, out, "- cold start: tender cold (process backend) vs crun, default config: **7.00x** (target 6x, issue: at least 6x faster than crun's default config: met)")
	assert.Contains(t, out, "- cold start: tender cold, whole process (process backend) vs crun, default config: **2.57x** (target 6x, issue: at least 6x faster than crun's default config: not met)")
	assert.Contains(t, out, "- throughput: tender warm (process backend) vs process: static C echo (glibc): **11.59x** (target 10x, issue: at least 10x the Linux process: met)")
	assert.Contains(t, out, "throughput: process: static C echo (glibc) vs tender cold (process backend): **2.30x** (target 1x, paper: the Linux process beat cold ukvm in throughput: as in the paper)")
}

func TestRatiosUnavailable(t *testing.T) {
	rows := []RowResult{
		{Key: "tender-cold", Name: "tender cold", Latency: Summary{Median: time.Millisecond}, Throughput: 10},
		{Key: "crun-default", Name: "crun", Unavailable: "unavailable: crun not installed"},
	}
	byOver := map[string]Ratio{}
	for _, r := range ratios(rows) {
		byOver[r.Of+"/"+r.Over] = r
	}
	r := byOver["tender-cold/crun-default"]
	assert.Equal(t, "crun is unavailable", r.Unavailable)
	assert.False(t, r.Met)
	assert.Equal(t, "not measured in this run (-rows)", byOver["tender-warm/process"].Unavailable)
}

func TestFormat(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0:                        "0 µs",
		1234 * time.Nanosecond:   "1.23 µs",
		42 * time.Microsecond:    "42.0 µs",
		999 * time.Microsecond:   "999 µs",
		time.Millisecond:         "1.00 ms",
		20200 * time.Microsecond: "20.2 ms",
		209 * time.Millisecond:   "209 ms",
		2500 * time.Millisecond:  "2500 ms",
		12 * time.Second:         "12.0 s",
	} {
		assert.Equal(t, want, FormatDuration(d), "%v", d)
	}
	for r, want := range map[float64]string{0: "0.0", 5.97: "6.0", 99.94: "99.9", 100: "100", 1540.4: "1,540", 1234567: "1,234,567"} {
		assert.Equal(t, want, FormatRate(r), "%v", r)
	}
	for k, want := range map[float64]string{-1: "–", 0: "< 4 KiB", 3.5: "< 4 KiB", 652: "652 KiB", 1023.4: "1023 KiB", 1536: "1.5 MiB"} {
		assert.Equal(t, want, FormatKiB(k), "%v", k)
	}
}

func TestJSONRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "r.json")
	rep := sampleReport()
	require.NoError(t, rep.WriteJSON(path))
	back, err := ReadJSON(path)
	require.NoError(t, err)
	assert.Equal(t, rep.Rows, back.Rows)
	assert.Equal(t, rep.Ratios, back.Ratios)
	var raw map[string]any
	b, _ := os.ReadFile(path)
	require.NoError(t, json.Unmarshal(b, &raw))
	row := raw["rows"].([]any)[0].(map[string]any)
	assert.EqualValues(t, 530000, row["latency"].(map[string]any)["median_ns"])
}

func TestPlot(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, sampleReport().Plot(dir))
	for _, f := range []string{"latency.png", "latency.svg", "throughput.png", "throughput.svg"} {
		st, err := os.Stat(filepath.Join(dir, f))
		require.NoError(t, err, f)
		assert.Greater(t, st.Size(), int64(1000), f)
	}
	svg, err := os.ReadFile(filepath.Join(dir, "latency.svg"))
	require.NoError(t, err)
	assert.Contains(t, string(svg), "crun, default config")
	assert.NotContains(t, string(svg), "runc, default config", "unavailable rows are left out")

	err = (&Report{Rows: []RowResult{{Name: "x", Unavailable: "no"}}}).Plot(dir)
	assert.ErrorContains(t, err, "no row has a result to plot")
}

func TestSelectRows(t *testing.T) {
	all := []row{{key: "process"}, {key: "process-nolibc"}, {key: "crun-default"}, {key: "tender-cold"}, {key: "tender-cold-kvm"}, {key: "tender-warm"}}
	keys := func(rs []row) (k []string) {
		for _, r := range rs {
			k = append(k, r.key)
		}
		return k
	}
	got, err := selectRows(all, nil)
	require.NoError(t, err)
	assert.Len(t, got, len(all))
	got, err = selectRows(all, []string{"tender-cold", "process"})
	require.NoError(t, err)
	assert.Equal(t, []string{"process", "process-nolibc", "tender-cold", "tender-cold-kvm"}, keys(got), "experiment order; prefixes select")
	got, err = selectRows(all, []string{"process", "process-nolibc"})
	require.NoError(t, err, "a key that another selected key prefixes")
	assert.Equal(t, []string{"process", "process-nolibc"}, keys(got), "each row once")
	got, err = selectRows(all, []string{"tender-warm", "tender"})
	require.NoError(t, err)
	assert.Equal(t, []string{"tender-cold", "tender-cold-kvm", "tender-warm"}, keys(got))
	got, err = selectRows(all, []string{"crun"})
	require.NoError(t, err)
	assert.Equal(t, []string{"crun-default"}, keys(got))
	_, err = selectRows(all, []string{"docker"})
	assert.ErrorContains(t, err, `no row "docker"`)
	_, err = selectRows(all, []string{"tender-c"})
	assert.ErrorContains(t, err, `no row "tender-c"`, "a prefix must end at a dash")
}

func TestRowKeys(t *testing.T) {
	keys := RowKeys()
	assert.Contains(t, keys, "process")
	assert.Contains(t, keys, "crun-default")
	assert.Contains(t, keys, "runc-default")
	assert.Contains(t, keys, "tender-warm")
}

func TestOCIConfig(t *testing.T) {
	for _, full := range []bool{false, true} {
		b, err := json.Marshal(ociConfig(full))
		require.NoError(t, err)
		var m map[string]any
		require.NoError(t, json.Unmarshal(b, &m))
		proc := m["process"].(map[string]any)
		assert.Equal(t, false, proc["terminal"])
		assert.Equal(t, []any{"/echo"}, proc["args"])
		assert.Equal(t, map[string]any{"path": "rootfs", "readonly": true}, m["root"])
		assert.Contains(t, m, "mounts", "crun refuses a config without the mounts key")
		ns := m["linux"].(map[string]any)["namespaces"].([]any)
		if full {
			assert.Len(t, ns, 6)
			assert.Contains(t, proc, "capabilities")
		} else {
			assert.Equal(t, []any{map[string]any{"type": "pid"}, map[string]any{"type": "mount"}}, ns)
			assert.NotContains(t, proc, "capabilities")
		}
	}
	dir := t.TempDir()
	echo := filepath.Join(dir, "src")
	require.NoError(t, os.WriteFile(echo, []byte("#!"), 0o755))
	require.NoError(t, makeBundle(filepath.Join(dir, "b"), echo, true))
	for _, p := range []string{"config.json", "rootfs/echo", "rootfs/dev", "rootfs/proc", "rootfs/sys"} {
		_, err := os.Stat(filepath.Join(dir, "b", p))
		assert.NoError(t, err, p)
	}
}
