package gateway

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tendervm/tender/monitor"
	"github.com/tendervm/tender/monitor/vcpu"
)

// outcome is how an invocation ended, the "outcome" label of the metrics.
// For failures it is also the Tender-Error header.
type outcome uint8

const (
	outcomeOK            outcome = iota
	outcomeFunctionError         // a reply with a non-zero status
	outcomeFault
	outcomeCrash
	outcomeAbort
	outcomeProtocol
	outcomeTimeout
	outcomeSaturated
	outcomeTooLarge
	outcomeClosed
	outcomeCanceled
	outcomeBadRequest
	outcomeBodyTimeout
	outcomeInternal
	numOutcomes
)

var outcomeNames = [numOutcomes]string{
	outcomeOK:            "ok",
	outcomeFunctionError: "function_error",
	outcomeFault:         "fault",
	outcomeCrash:         "crash",
	outcomeAbort:         "abort",
	outcomeProtocol:      "protocol",
	outcomeTimeout:       "timeout",
	outcomeSaturated:     "saturated",
	outcomeTooLarge:      "too_large",
	outcomeClosed:        "closed",
	outcomeCanceled:      "canceled",
	outcomeBadRequest:    "bad_request",
	outcomeBodyTimeout:   "body_timeout",
	outcomeInternal:      "internal",
}

func (o outcome) String() string { return outcomeNames[o] }

// guestFailure reports whether the guest itself failed the invocation: worth
// a warning, unlike a full pool or a client that left.
func (o outcome) guestFailure() bool {
	switch o {
	case outcomeFault, outcomeCrash, outcomeAbort, outcomeProtocol, outcomeTimeout:
		return true
	}
	return false
}

// metrics are a gateway's Prometheus metrics, in a registry of their own.
type metrics struct {
	reg     *prometheus.Registry
	handler http.Handler
	// One child per outcome, resolved once so a request does no label
	// lookup.
	invocations [numOutcomes]prometheus.Counter
	durations   [numOutcomes]prometheus.Observer
}

func newMetrics(pool *monitor.Pool) *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	invocations := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tender_invocations_total",
		Help: "Invocations by outcome: ok, function_error (reply status not 0), or the failure kind.",
	}, []string{"outcome"})
	durations := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "tender_invocation_duration_seconds",
		Help: "Time from receiving an invocation to knowing its outcome (body read, queueing, run).",
		// 10µs (a warm KVM round trip) to about 9s (the default timeout).
		Buckets: prometheus.ExponentialBuckets(1e-5, 2.5, 16),
	}, []string{"outcome"})
	for o := range numOutcomes {
		// Created up front so every outcome is exported, at 0 until seen.
		m.invocations[o] = invocations.WithLabelValues(o.String())
		m.durations[o] = durations.WithLabelValues(o.String())
	}
	m.reg.MustRegister(
		invocations,
		durations,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "tender_instances",
			Help:        "Instances alive (booting, busy or idle) and idle.",
			ConstLabels: prometheus.Labels{"state": "live"},
		}, func() float64 { return float64(pool.Stats().Live) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "tender_instances",
			Help:        "Instances alive (booting, busy or idle) and idle.",
			ConstLabels: prometheus.Labels{"state": "idle"},
		}, func() float64 { return float64(pool.Stats().Idle) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "tender_instances_started_total",
			Help: "Instances ever booted.",
		}, func() float64 { return float64(pool.Stats().Started) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "tender_resets_total",
			Help: "Fresh instances put back into their snapshot after a request.",
		}, func() float64 { return float64(pool.Stats().Resets) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "tender_reset_seconds_total",
			Help: "Time spent putting fresh instances back into their snapshot.",
		}, func() float64 { return pool.Stats().ResetTime.Seconds() }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "tender_resets_lost_total",
			Help: "Fresh instances lost while being reset for a request (the request goes to a new instance, once).",
		}, func() float64 { return float64(pool.Stats().LostInReset) }),
		&exitCollector{pool: pool, desc: prometheus.NewDesc(
			"tender_exits_total",
			"vCPU exits of all instances by kind.",
			[]string{"kind"}, nil)},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	m.handler = promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
	return m
}

// record counts an invocation and returns its duration.
func (m *metrics) record(o outcome, start time.Time) time.Duration {
	d := time.Since(start)
	m.invocations[o].Inc()
	m.durations[o].Observe(d.Seconds())
	return d
}

// exitCollector exports the pool's exit counters, which the pool keeps as an
// array: one constant counter per kind seen so far.
type exitCollector struct {
	pool *monitor.Pool
	desc *prometheus.Desc
}

// Describe implements prometheus.Collector.
func (c *exitCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect implements prometheus.Collector.
func (c *exitCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.pool.Stats()
	for k, n := range s.Exits {
		if n != 0 {
			ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(n), vcpu.ExitKind(k).String())
		}
	}
}
