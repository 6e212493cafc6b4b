package worker

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

type metrics struct {
	reg           *prometheus.Registry
	connections   prometheus.Gauge
	closes        *prometheus.CounterVec
	reaped        *prometheus.CounterVec
	allocs        *prometheus.CounterVec
	frees         *prometheus.CounterVec
	allocFailures *prometheus.CounterVec
	quotaRefusals *prometheus.CounterVec
	protoErrors   *prometheus.CounterVec
	cmdSeconds    *prometheus.HistogramVec
	cacheHits     prometheus.Counter
}

func newMetrics(w *Worker) *metrics {
	m := &metrics{
		reg:           prometheus.NewRegistry(),
		connections:   prometheus.NewGauge(prometheus.GaugeOpts{Name: "box_worker_connections", Help: "Open RPC connections."}),
		closes:        prometheus.NewCounterVec(prometheus.CounterOpts{Name: "box_worker_connections_closed_total", Help: "Connections ended, by reason."}, []string{"reason"}),
		reaped:        prometheus.NewCounterVec(prometheus.CounterOpts{Name: "box_worker_reaped_total", Help: "Connections reaped: dead-peer (keepalive) or idle."}, []string{"reason"}),
		allocs:        prometheus.NewCounterVec(prometheus.CounterOpts{Name: "box_worker_allocs_total", Help: "Buffers allocated."}, []string{"device"}),
		frees:         prometheus.NewCounterVec(prometheus.CounterOpts{Name: "box_worker_frees_total", Help: "Buffers freed."}, []string{"device"}),
		allocFailures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "box_worker_alloc_failures_total", Help: "Allocations the device refused."}, []string{"device"}),
		quotaRefusals: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "box_worker_quota_refusals_total", Help: "Allocations refused by a quota."}, []string{"limit"}),
		protoErrors:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "box_worker_protocol_errors_total", Help: "Protocol violations, by kind."}, []string{"kind"}),
		cmdSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "box_worker_command_seconds", Help: "Time to execute each RPC command.",
			Buckets: prometheus.ExponentialBuckets(1e-5, 4, 12)}, []string{"cmd"}),
		cacheHits: prometheus.NewCounter(prometheus.CounterOpts{Name: "box_worker_cache_hits_total", Help: "SET_TENSOR_HASH answered from the cache."}),
	}
	bound := prometheus.NewDesc("box_worker_bound_bytes", "Bytes bound to connections, per device.", []string{"device"}, nil)
	m.reg.MustRegister(m.connections, m.closes, m.reaped, m.allocs, m.frees, m.allocFailures, m.quotaRefusals,
		m.protoErrors, m.cmdSeconds, m.cacheHits, collectorFunc{desc: bound, collect: func(ch chan<- prometheus.Metric) {
			w.mu.Lock()
			defer w.mu.Unlock()
			for i, b := range w.backends {
				ch <- prometheus.MustNewConstMetric(bound, prometheus.GaugeValue, float64(w.devBytes[i]), b.Device.Name)
			}
		}},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

type collectorFunc struct {
	desc    *prometheus.Desc
	collect func(chan<- prometheus.Metric)
}

func (c collectorFunc) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }
func (c collectorFunc) Collect(ch chan<- prometheus.Metric) { c.collect(ch) }
