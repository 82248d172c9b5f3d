package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"time"
)

// Ratio compares two rows of the same run.
type Ratio struct {
	// Name says what is compared.
	Name string `json:"name"`
	// Metric is "latency" (Over's median divided by Of's: how many times
	// faster Of starts) or "throughput" (Of's divided by Over's).
	Metric string `json:"metric"`
	// Of and Over are row keys.
	Of   string `json:"of"`
	Over string `json:"over"`
	// Value is the ratio; 0 when Unavailable is set.
	Value float64 `json:"value,omitempty"`
	// Target is the value the issue or the paper asks for; Met whether Value
	// reaches it.
	Target float64 `json:"target"`
	Met    bool    `json:"met"`
	// Source says where the target comes from.
	Source string `json:"source"`
	// Unavailable, when not empty, is why there is no value.
	Unavailable string `json:"unavailable,omitempty"`
}

// ratioSpecs are the comparisons printed under the table.
var ratioSpecs = []Ratio{
	{Name: "cold start: %[1]s vs %[2]s", Metric: "latency", Of: "tender-cold", Over: "crun-default", Target: 6, Source: "issue: at least 6x faster than crun's default config"},
	{Name: "cold start: %[1]s vs %[2]s", Metric: "latency", Of: "tender-invoke-cold", Over: "crun-default", Target: 6, Source: "issue: at least 6x faster than crun's default config"},
	{Name: "cold start: %[1]s vs %[2]s", Metric: "latency", Of: "tender-fresh", Over: "crun-default", Target: 100, Source: "issue 12: a fresh instance at least 100x faster than crun's default config"},
	{Name: "throughput: %[1]s vs %[2]s", Metric: "throughput", Of: "tender-warm", Over: "process", Target: 10, Source: "issue: at least 10x the Linux process"},
	{Name: "throughput: %[1]s vs %[2]s", Metric: "throughput", Of: "tender-cold", Over: "crun-default", Target: 6, Source: "paper: unikernels at least 6x containers"},
	{Name: "throughput: %[1]s vs %[2]s", Metric: "throughput", Of: "process", Over: "tender-cold", Target: 1, Source: "paper: the Linux process beat cold ukvm in throughput"},
}

// ratios computes ratioSpecs from rows.
func ratios(rows []RowResult) []Ratio {
	byKey := make(map[string]RowResult)
	for _, r := range rows {
		byKey[r.Key] = r
	}
	var out []Ratio
	for _, spec := range ratioSpecs {
		of, okOf := byKey[spec.Of]
		over, okOver := byKey[spec.Over]
		r := spec
		nameOf, nameOver := spec.Of, spec.Over
		if okOf {
			nameOf = of.Name
		}
		if okOver {
			nameOver = over.Name
		}
		r.Name = fmt.Sprintf(spec.Name, nameOf, nameOver)
		switch {
		case !okOf || !okOver:
			r.Unavailable = "not measured in this run (-rows)"
		case !of.OK():
			r.Unavailable = nameOf + " is unavailable"
		case !over.OK():
			r.Unavailable = nameOver + " is unavailable"
		case spec.Metric == "latency" && of.Latency.Median > 0:
			r.Value = float64(over.Latency.Median) / float64(of.Latency.Median)
		case spec.Metric == "throughput" && over.Throughput > 0:
			r.Value = of.Throughput / over.Throughput
		default:
			r.Unavailable = "no positive value to divide by"
		}
		r.Met = r.Unavailable == "" && r.Value >= r.Target
		out = append(out, r)
	}
	return out
}

// Markdown writes the results table and, under it, the ratios.
func (rep *Report) Markdown(w io.Writer) error {
	var b strings.Builder
	b.WriteString("| row | median | p90 | p99 | throughput/s | memory/instance | notes |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---|\n")
	for _, r := range rep.Rows {
		if !r.OK() {
			fmt.Fprintf(&b, "| %s | – | – | – | – | – | %s |\n", cell(r.Name), cell(r.Unavailable))
			continue
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s |\n", cell(r.Name),
			FormatDuration(r.Latency.Median), FormatDuration(r.Latency.P90), FormatDuration(r.Latency.P99),
			FormatRate(r.Throughput), FormatKiB(r.MemoryKiB), cell(r.Notes))
	}
	// Warmup is a minimum: a fast row runs more until minWarmup has passed.
	fmt.Fprintf(&b, "\nLatency: %d sequential requests per row after a warm-up of at least %d requests and %v. Throughput: %d concurrent requesters for %v. Payload %q. tender backend: %s.\n",
		rep.N, rep.Warmup, minWarmup, rep.Concurrency, rep.Duration, rep.Payload, rep.Backend)
	if len(rep.Ratios) > 0 {
		b.WriteString("\nRatios (this run):\n\n")
		for _, r := range rep.Ratios {
			if r.Unavailable != "" {
				fmt.Fprintf(&b, "- %s: n/a (%s); target %sx (%s)\n", r.Name, r.Unavailable, trimFloat(r.Target), r.Source)
				continue
			}
			verdict := "not met"
			switch {
			case r.Met && strings.HasPrefix(r.Source, "paper"):
				verdict = "as in the paper"
			case strings.HasPrefix(r.Source, "paper"):
				verdict = "unlike the paper"
			case r.Met:
				verdict = "met"
			}
			fmt.Fprintf(&b, "- %s: **%.2fx** (target %sx, %s: %s)\n", r.Name, r.Value, trimFloat(r.Target), r.Source, verdict)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// cell makes s safe inside a Markdown table cell.
func cell(s string) string {
	s = strings.ReplaceAll(s, "|", `\|`)
	return strings.Join(strings.Fields(s), " ")
}

func trimFloat(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

// FormatDuration renders a latency with three significant digits: µs below
// a millisecond, ms below ten seconds, else seconds.
func FormatDuration(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return sig3(float64(d)/1e3) + " µs"
	case d < 10*time.Second:
		return sig3(float64(d)/1e6) + " ms"
	default:
		return sig3(d.Seconds()) + " s"
	}
}

// sig3 prints v with three significant digits (all the integer digits of
// values of 1000 and more).
func sig3(v float64) string {
	if v == 0 {
		return "0"
	}
	digits := 3 - int(math.Floor(math.Log10(math.Abs(v)))) - 1
	if digits < 0 {
		digits = 0
	}
	return strconv.FormatFloat(v, 'f', digits, 64)
}

// FormatRate renders requests per second: whole numbers with thousands
// separators, one decimal below 100.
func FormatRate(r float64) string {
	if r < 100 {
		return strconv.FormatFloat(r, 'f', 1, 64)
	}
	s := strconv.FormatInt(int64(math.Round(r)), 10)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// FormatKiB renders a memory size: KiB below 1 MiB, else MiB; "< 4 KiB"
// below one page (Linux's resident-set counters are per-CPU and approximate:
// a process of a few pages may read as 0); "–" for none (negative).
func FormatKiB(kib float64) string {
	switch {
	case kib < 0:
		return "–"
	case kib < 4:
		return "< 4 KiB"
	case kib < 1024:
		return strconv.FormatFloat(kib, 'f', 0, 64) + " KiB"
	default:
		return strconv.FormatFloat(kib/1024, 'f', 1, 64) + " MiB"
	}
}

// WriteJSON writes the report as indented JSON to path.
func (rep *Report) WriteJSON(path string) error {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// ReadJSON reads a report written by WriteJSON.
func ReadJSON(path string) (*Report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var rep Report
	if err := json.Unmarshal(b, &rep); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &rep, nil
}
