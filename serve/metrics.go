package serve

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/boxproj/box/ggml"
)

type metrics struct {
	reg          *prometheus.Registry
	requests     *prometheus.CounterVec
	promptTokens prometheus.Counter
	genTokens    prometheus.Counter
	ttft         prometheus.Histogram
	itl          prometheus.Histogram
	loadSeconds  prometheus.Gauge
}

func newMetrics(s *Server) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "box_serve_requests_total", Help: "HTTP API requests by endpoint and status code.",
		}, []string{"endpoint", "code"}),
		promptTokens: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "box_serve_prompt_tokens_total", Help: "Prompt tokens processed.",
		}),
		genTokens: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "box_serve_generated_tokens_total", Help: "Tokens generated.",
		}),
		ttft: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "box_serve_time_to_first_token_seconds", Help: "From request accepted to first generated token.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 14),
		}),
		itl: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "box_serve_inter_token_latency_seconds", Help: "Time between consecutive generated tokens.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
		loadSeconds: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "box_serve_model_load_seconds", Help: "How long the model took to load.",
		}),
	}
	slotsBusy := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "box_serve_slots_busy", Help: "Slots generating now.",
	}, func() float64 {
		if sl := s.slotsNow(); sl != nil {
			b, _ := sl.counts()
			return float64(b)
		}
		return 0
	})
	queued := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "box_serve_queue_depth", Help: "Requests waiting for a slot.",
	}, func() float64 {
		if sl := s.slotsNow(); sl != nil {
			_, w := sl.counts()
			return float64(w)
		}
		return 0
	})
	m.reg.MustRegister(m.requests, m.promptTokens, m.genTokens, m.ttft, m.itl, m.loadSeconds,
		slotsBusy, queued, deviceMemory{},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// deviceMemory reports each ggml device's free and total memory when scraped.
type deviceMemory struct{}

var deviceMemDesc = prometheus.NewDesc("box_device_memory_bytes",
	"Memory of each ggml device, by kind (free or total).", []string{"device", "kind"}, nil)

func (deviceMemory) Describe(ch chan<- *prometheus.Desc) { ch <- deviceMemDesc }

func (deviceMemory) Collect(ch chan<- prometheus.Metric) {
	for _, d := range ggml.Devices() {
		ch <- prometheus.MustNewConstMetric(deviceMemDesc, prometheus.GaugeValue, float64(d.Free), d.Name, "free")
		ch <- prometheus.MustNewConstMetric(deviceMemDesc, prometheus.GaugeValue, float64(d.Total), d.Name, "total")
	}
}
