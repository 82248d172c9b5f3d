package bench

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func ms(v ...float64) []time.Duration {
	var d []time.Duration
	for _, x := range v {
		d = append(d, time.Duration(x*float64(time.Millisecond)))
	}
	return d
}

func TestPercentile(t *testing.T) {
	s := ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
	for _, c := range []struct {
		p    float64
		want time.Duration
	}{
		{0, time.Millisecond},
		{50, 5500 * time.Microsecond}, // mean of the middle two
		{90, 9100 * time.Microsecond}, // position 8.1
		{99, 9910 * time.Microsecond}, // position 8.91
		{100, 10 * time.Millisecond},
		{-5, time.Millisecond},
		{150, 10 * time.Millisecond},
	} {
		assert.Equal(t, c.want, Percentile(s, c.p), "p%v", c.p)
	}
	assert.Equal(t, 7*time.Millisecond, Percentile(ms(7), 99), "one sample is every percentile")
	assert.Equal(t, time.Duration(0), Percentile(nil, 50))
	assert.Equal(t, 2*time.Millisecond, Percentile(ms(1, 2, 3), 50), "odd count: the middle one")
}

func TestSummarize(t *testing.T) {
	in := ms(9, 1, 5, 3, 7)
	s := Summarize(in)
	assert.Equal(t, Summary{N: 5, Mean: 5 * time.Millisecond, Median: 5 * time.Millisecond,
		P90: 8200 * time.Microsecond, P99: 8920 * time.Microsecond,
		Min: time.Millisecond, Max: 9 * time.Millisecond}, s)
	assert.Equal(t, ms(9, 1, 5, 3, 7), in, "the samples are not reordered")
	assert.Equal(t, Summary{}, Summarize(nil))
}

// The percentiles of a large uniform sample are where they should be, and
// ordered.
func TestSummarizeUniform(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var in []time.Duration
	for range 100001 {
		in = append(in, time.Duration(r.IntN(1_000_000)))
	}
	s := Summarize(in)
	assert.InDelta(t, 500_000, float64(s.Median), 10_000)
	assert.InDelta(t, 900_000, float64(s.P90), 10_000)
	assert.InDelta(t, 990_000, float64(s.P99), 10_000)
	assert.InDelta(t, 500_000, float64(s.Mean), 10_000)
	assert.True(t, s.Min <= s.Median && s.Median <= s.P90 && s.P90 <= s.P99 && s.P99 <= s.Max)
}

func TestMedian(t *testing.T) {
	assert.Equal(t, 0.0, median(nil))
	assert.Equal(t, 3.0, median([]int64{5, 3, 1}))
	assert.Equal(t, 2.5, median([]int64{4, 1, 3, 2}))
}
