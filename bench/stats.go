package bench

import (
	"math"
	"slices"
	"time"
)

// Summary describes a set of latency samples.
type Summary struct {
	// N is the number of samples.
	N      int           `json:"n"`
	Mean   time.Duration `json:"mean_ns"`
	Median time.Duration `json:"median_ns"`
	P90    time.Duration `json:"p90_ns"`
	P99    time.Duration `json:"p99_ns"`
	Min    time.Duration `json:"min_ns"`
	Max    time.Duration `json:"max_ns"`
}

// Summarize returns the summary of samples (which it does not modify); the
// zero Summary when there are none.
func Summarize(samples []time.Duration) Summary {
	if len(samples) == 0 {
		return Summary{}
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	var sum float64
	for _, d := range s {
		sum += float64(d)
	}
	return Summary{
		N:      len(s),
		Mean:   time.Duration(math.Round(sum / float64(len(s)))),
		Median: Percentile(s, 50),
		P90:    Percentile(s, 90),
		P99:    Percentile(s, 99),
		Min:    s[0],
		Max:    s[len(s)-1],
	}
}

// Percentile returns the p-th percentile (0 <= p <= 100) of sorted samples,
// interpolating linearly between the two nearest ranks: the sample at
// fractional position p/100*(n-1). The 50th percentile of an even number of
// samples is the mean of the middle two; 0 and 100 are the minimum and the
// maximum. It returns 0 for no samples.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	p = math.Min(math.Max(p, 0), 100)
	pos := p / 100 * float64(n-1)
	lo := int(math.Floor(pos))
	if lo >= n-1 {
		return sorted[n-1]
	}
	frac := pos - float64(lo)
	a, b := float64(sorted[lo]), float64(sorted[lo+1])
	return time.Duration(math.Round(a + frac*(b-a)))
}

// median returns the median of integer samples (which it sorts), 0 for none.
func median(v []int64) float64 {
	if len(v) == 0 {
		return 0
	}
	slices.Sort(v)
	if len(v)%2 == 1 {
		return float64(v[len(v)/2])
	}
	return float64(v[len(v)/2-1]+v[len(v)/2]) / 2
}
