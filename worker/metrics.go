package worker

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/boxproj/box/rpc"
	"github.com/boxproj/box/worker/ctl"
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
	processStarts prometheus.Counter
	crashes       prometheus.Counter
	unreleased    prometheus.Counter
	refused       *prometheus.CounterVec
}

// histograms adds up the command latencies of processes that ended; live
// processes' figures are read from their pages at scrape time.
type histograms struct {
	counts    [ctl.MaxCmds][ctl.NBuckets]uint64
	sums      [ctl.MaxCmds]float64
	cacheHits uint64
}

func (h *histograms) add(p *ctl.Page) {
	for cmd := range ctl.MaxCmds {
		counts, sum := p.Histogram(cmd)
		for i, n := range counts {
			h.counts[cmd][i] += n
		}
		h.sums[cmd] += sum.Seconds()
	}
	h.cacheHits += p.Read().CacheHits
}

func newMetrics(w *Worker) *metrics {
	m := &metrics{
		reg:           prometheus.NewRegistry(),
		connections:   prometheus.NewGauge(prometheus.GaugeOpts{Name: "box_worker_connections", Help: "Open RPC connections."}),
		closes:        prometheus.NewCounterVec(prometheus.CounterOpts{Name: "box_worker_connections_closed_total", Help: "Connections ended, by reason."}, []string{"reason"}),
		reaped:        prometheus.NewCounterVec(prometheus.CounterOpts{Name: "box_worker_reaped_total", Help: "Connections reaped: dead-peer (keepalive) or idle."}, []string{"reason"}),
		allocs:        prometheus.NewCounterVec(prometheus.CounterOpts{Name: "box_worker_allocs_total", Help: "Buffers allocated."}, []string{"device"}),
		frees:         prometheus.NewCounterVec(prometheus.CounterOpts{Name: "box_worker_frees_total", Help: "Buffers freed by FREE_BUFFER."}, []string{"device"}),
		allocFailures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "box_worker_alloc_failures_total", Help: "Allocations the device refused."}, []string{"device"}),
		quotaRefusals: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "box_worker_quota_refusals_total", Help: "Allocations refused by a quota."}, []string{"limit"}),
		protoErrors:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "box_worker_protocol_errors_total", Help: "Protocol violations, by kind."}, []string{"kind"}),
		processStarts: prometheus.NewCounter(prometheus.CounterOpts{Name: "box_worker_processes_started_total", Help: "Compute processes started (one per connection that needed a backend)."}),
		crashes:       prometheus.NewCounter(prometheus.CounterOpts{Name: "box_worker_crashes_total", Help: "Compute processes that died of a signal, an abort or a panic."}),
		unreleased:    prometheus.NewCounter(prometheus.CounterOpts{Name: "box_worker_unreleased_total", Help: "Connections whose memory was not given back in time."}),
		refused:       prometheus.NewCounterVec(prometheus.CounterOpts{Name: "box_worker_connections_refused_total", Help: "Connections refused at accept, by rule (allow, max-conns)."}, []string{"rule"}),
	}
	bound := prometheus.NewDesc("box_worker_bound_bytes", "Bytes bound to connections, per device.", []string{"device"}, nil)
	seconds := prometheus.NewDesc("box_worker_command_seconds", "Time to execute each RPC command.", []string{"cmd"}, nil)
	hits := prometheus.NewDesc("box_worker_cache_hits_total", "SET_TENSOR_HASH answered from the cache.", nil, nil)
	host := prometheus.NewDesc("box_worker_host_bytes", "Host memory accounted to connections (CPU buffers, overheads, messages, graphs, processes).", nil, nil)
	m.reg.MustRegister(m.connections, m.closes, m.reaped, m.allocs, m.frees, m.allocFailures, m.quotaRefusals,
		m.protoErrors, m.processStarts, m.crashes, m.unreleased, m.refused,
		collectorFunc{descs: []*prometheus.Desc{bound, seconds, hits, host}, collect: func(ch chan<- prometheus.Metric) {
			// One lock over the finished sums and the live pages, so a
			// process moving from one to the other is counted once.
			w.mu.Lock()
			for i, d := range w.devs {
				ch <- prometheus.MustNewConstMetric(bound, prometheus.GaugeValue, float64(w.devBytes[i]), d.Name)
			}
			ch <- prometheus.MustNewConstMetric(host, prometheus.GaugeValue, float64(w.hostBytes))
			h := w.finished
			for _, c := range w.conns {
				c.mu.Lock()
				if c.proc != nil && c.proc.page != nil {
					h.add(c.proc.page)
				}
				c.mu.Unlock()
			}
			w.mu.Unlock()
			ch <- prometheus.MustNewConstMetric(hits, prometheus.CounterValue, float64(h.cacheHits))
			for cmd := range ctl.MaxCmds {
				var total uint64
				buckets := make(map[float64]uint64, len(ctl.Buckets))
				for i, ub := range ctl.Buckets {
					total += h.counts[cmd][i]
					buckets[ub] = total
				}
				total += h.counts[cmd][len(ctl.Buckets)]
				if total == 0 {
					continue
				}
				ch <- prometheus.MustNewConstHistogram(seconds, total, h.sums[cmd], buckets, rpc.Cmd(cmd).String())
			}
		}},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

type collectorFunc struct {
	descs   []*prometheus.Desc
	collect func(chan<- prometheus.Metric)
}

func (c collectorFunc) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}
func (c collectorFunc) Collect(ch chan<- prometheus.Metric) { c.collect(ch) }
