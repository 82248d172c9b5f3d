package main

import (
	"fmt"
	"strings"
)

// figures holds every measurement of a run by source: "PKG BenchmarkNAME"
// for a Go benchmark ("tests BenchmarkWarmInvoke/kvm"), or the outside
// tool's name ("kvm_floor 4MiB", "wrk kvm", "tender bench kvm/tender-cold").
type figures struct {
	results map[string]result
	order   []string
	// failed says why a source has no result: the benchmark failed, a
	// command could not run.
	failed map[string]string
	// runErrs are the errors of whole runs by the prefix of the sources they
	// would have produced ("tests", "wrk"), for sources that are absent.
	runErrs map[string][]string
}

func newFigures() *figures {
	return &figures{results: map[string]result{}, failed: map[string]string{}, runErrs: map[string][]string{}}
}

func (f *figures) put(src string, r result) {
	if _, ok := f.results[src]; !ok {
		f.order = append(f.order, src)
	}
	f.results[src] = r
}

// addBench adds what one `go test -bench` run of package pkg printed.
func (f *figures) addBench(pkg string, out benchOutput) {
	for _, name := range out.Order {
		f.put(pkg+" "+name, out.Results[name])
	}
	for name, why := range out.Failed {
		f.failed[pkg+" "+name] = "benchmark failed: " + why
	}
}

// runError notes that a run meant to produce the sources under prefix
// failed as a whole.
func (f *figures) runError(prefix string, err error) {
	f.runErrs[prefix] = append(f.runErrs[prefix], err.Error())
}

// missingError is a figure that is not there, and why.
type missingError struct {
	src, unit string
	// absent: the source printed nothing at all (as opposed to failing, or
	// printing other metrics).
	absent bool
	// noMetric: the source reported, but not this metric.
	noMetric bool
	why      string
}

func (e *missingError) Error() string { return e.why }

// metric returns the figure of src in unit, or a *missingError that says
// why there is none in words fit for the report.
func (f *figures) metric(src, unit string) (float64, error) {
	if why, ok := f.failed[src]; ok {
		return 0, &missingError{src: src, unit: unit, why: src + ": " + why}
	}
	r, ok := f.results[src]
	if !ok {
		why := src + " not in the output"
		prefix, _, _ := strings.Cut(src, " ")
		if errs := f.runErrs[prefix]; len(errs) > 0 {
			why += " (" + strings.Join(errs, "; ") + ")"
		}
		return 0, &missingError{src: src, unit: unit, absent: true, why: why}
	}
	v, ok := r.Metrics[unit]
	if !ok {
		return 0, &missingError{src: src, unit: unit, noMetric: true, why: fmt.Sprintf("metric %q not found in %s output (it reports %s)",
			unit, src, strings.Join(r.Units, ", "))}
	}
	return v, nil
}

// fig names one figure: a source's metric times scale, printed with format.
// "{be}" in src and unit stands for the backend of the target's row.
type fig struct {
	src, unit string
	scale     float64
	format    string
}

func (g fig) at(be string) fig {
	g.src = strings.ReplaceAll(g.src, "{be}", be)
	g.unit = strings.ReplaceAll(g.unit, "{be}", be)
	return g
}

func (g fig) get(f *figures) (float64, error) {
	v, err := f.metric(g.src, g.unit)
	if g.scale != 0 {
		v *= g.scale
	}
	return v, err
}
