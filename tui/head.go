package tui

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/boxproj/box/api"
)

// HeadStats is what a head says about serving: its model, throughput,
// slots, queue and latency, from GET /v1/cluster, /v1/models and /metrics.
type HeadStats struct {
	URL       string
	Reachable bool
	State     string // ok, loading, degraded, error (the head's /v1/cluster)
	Error     string // why the head is not ok, or why it cannot be reached
	Since     time.Time
	Model     string
	// LocalLayers are the layers the head kept on its own CPU.
	LocalLayers int
	// Rated is false until two answers of /metrics are known; the rates are
	// over the last RateWindow.
	Rated          bool
	TokensPerSec   float64
	RequestsPerSec float64
	SlotsBusy      int
	SlotsTotal     int // 0: the head does not say
	Queue          int
	// TTFT is the median time to first token over the last TTFTWindow (or
	// since the head started, when no request came in that window); 0 means
	// no request yet.
	TTFT     time.Duration
	Tokens   uint64 // generated since the head started
	Requests uint64 // chat and completion requests since the head started
}

// Windows of the head's rates and latency.
const (
	RateWindow = 10 * time.Second
	TTFTWindow = time.Minute
)

// headSample is one read of the head's counters.
type headSample struct {
	at       time.Time
	tokens   float64
	requests float64
	ttft     histogram
}

// histogram is a cumulative Prometheus histogram: upper bounds, ascending,
// with their cumulative counts.
type histogram struct {
	le    []float64
	count []float64
}

func (h histogram) total() float64 {
	if len(h.count) == 0 {
		return 0
	}
	return h.count[len(h.count)-1]
}

// minus is h - o bucket by bucket (o older; same buckets, or none).
func (h histogram) minus(o histogram) histogram {
	if len(o.le) != len(h.le) {
		return h
	}
	d := histogram{le: h.le, count: make([]float64, len(h.count))}
	for i := range h.count {
		d.count[i] = max(0, h.count[i]-o.count[i])
	}
	return d
}

// quantile interpolates inside the bucket holding q, as PromQL's
// histogram_quantile does; NaN when the histogram is empty.
func (h histogram) quantile(q float64) float64 {
	n := h.total()
	if n == 0 {
		return math.NaN()
	}
	rank := q * n
	lo, below := 0.0, 0.0
	for i, c := range h.count {
		if c >= rank {
			hi := h.le[i]
			if math.IsInf(hi, 1) {
				return lo // beyond the last bound: the bound is all we know
			}
			if c == below {
				return hi
			}
			return lo + (hi-lo)*(rank-below)/(c-below)
		}
		lo, below = h.le[i], c
	}
	return lo
}

// metricsText is the parsed text exposition format: per metric name, its
// samples.
type metricsText map[string][]promSample

type promSample struct {
	labels map[string]string
	value  float64
}

// parseMetrics reads the Prometheus text format, keeping samples only.
func parseMetrics(r io.Reader) (metricsText, error) {
	out := metricsText{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		name, labels, rest := line, map[string]string{}, ""
		if i := strings.IndexByte(line, '{'); i >= 0 {
			j := strings.LastIndexByte(line, '}')
			if j < i {
				return nil, fmt.Errorf("metrics: bad line %q", line)
			}
			name, rest = line[:i], line[j+1:]
			for _, kv := range splitLabels(line[i+1 : j]) {
				k, v, ok := strings.Cut(kv, "=")
				if !ok {
					continue
				}
				if uq, err := strconv.Unquote(strings.TrimSpace(v)); err == nil {
					v = uq
				}
				labels[strings.TrimSpace(k)] = v
			}
		} else {
			name, rest, _ = strings.Cut(line, " ")
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			return nil, fmt.Errorf("metrics: no value in %q", line)
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			return nil, fmt.Errorf("metrics: value in %q: %w", line, err)
		}
		out[name] = append(out[name], promSample{labels: labels, value: v})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	return out, nil
}

// splitLabels splits a label list at commas outside quotes.
func splitLabels(s string) []string {
	var out []string
	inQ, esc, start := false, false, 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case esc:
			esc = false
		case c == '\\':
			esc = true
		case c == '"':
			inQ = !inQ
		case c == ',' && !inQ:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	if start < len(s) {
		out = append(out, s[start:])
	}
	return out
}

// sum adds the samples of name whose labels match keep (nil: all).
func (m metricsText) sum(name string, keep func(map[string]string) bool) (float64, bool) {
	ss, ok := m[name]
	var v float64
	for _, s := range ss {
		if keep == nil || keep(s.labels) {
			v += s.value
		}
	}
	return v, ok
}

func (m metricsText) histogram(name string) histogram {
	type b struct{ le, c float64 }
	var bs []b
	for _, s := range m[name+"_bucket"] {
		le, err := strconv.ParseFloat(s.labels["le"], 64)
		if err != nil {
			continue
		}
		bs = append(bs, b{le, s.value})
	}
	sort.Slice(bs, func(i, j int) bool { return bs[i].le < bs[j].le })
	var h histogram
	for _, x := range bs {
		h.le, h.count = append(h.le, x.le), append(h.count, x.c)
	}
	return h
}

// Metric names the head serves (serve/metrics.go).
const (
	metricTokens   = "box_serve_generated_tokens_total"
	metricRequests = "box_serve_requests_total"
	metricBusy     = "box_serve_slots_busy"
	metricSlots    = "box_serve_slots_total" // read when the head serves it
	metricQueue    = "box_serve_queue_depth"
	metricTTFT     = "box_serve_time_to_first_token_seconds"
)

func isGenerate(l map[string]string) bool {
	return l["endpoint"] == "chat" || l["endpoint"] == "completions"
}

// getHead fetches GET url into v (JSON) or returns the body (v nil),
// sending key (the head's API key) when set.
func getHead(ctx context.Context, hc *http.Client, url, key string, v any) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: HTTP %d", url, resp.StatusCode)
	}
	if v != nil {
		if err := json.Unmarshal(body, v); err != nil {
			return nil, fmt.Errorf("GET %s: %w", url, err)
		}
	}
	return body, nil
}

// headFetch is one poll of a head.
type headFetch struct {
	cluster api.ClusterView
	err     error // /v1/cluster failed: the head is unreachable
	model   string
	metrics metricsText // nil when /metrics failed
}

func fetchHead(ctx context.Context, hc *http.Client, base, key string) headFetch {
	var f headFetch
	if f.cluster, f.err = (api.Client{HTTP: hc, HeadKey: key}).Cluster(ctx, base); f.err != nil {
		return f
	}
	var models struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	if _, err := getHead(ctx, hc, base+"/v1/models", key, &models); err == nil && len(models.Data) > 0 {
		f.model = models.Data[0].ID
	}
	if body, err := getHead(ctx, hc, base+"/metrics", key, nil); err == nil {
		f.metrics, _ = parseMetrics(strings.NewReader(string(body)))
	}
	return f
}

// headStats folds a fetch into the stats, keeping samples for the rates
// in *samples (oldest first, at most TTFTWindow old).
func headStats(prev HeadStats, f headFetch, samples *[]headSample, now time.Time) HeadStats {
	st := prev
	if f.err != nil {
		if st.Reachable || st.Since.IsZero() {
			st.Since = now
		}
		st.Reachable, st.Error, st.Rated = false, errWords(f.err), false
		*samples = nil
		return st
	}
	if !st.Reachable || st.State != f.cluster.State {
		st.Since = now
	}
	st.Reachable, st.State, st.Error = true, f.cluster.State, f.cluster.Error
	if f.cluster.LocalLayers != nil {
		st.LocalLayers = *f.cluster.LocalLayers
	}
	if f.model != "" {
		st.Model = f.model
	}
	m := f.metrics
	if m == nil {
		st.Rated = false
		return st
	}
	tok, _ := m.sum(metricTokens, nil)
	req, _ := m.sum(metricRequests, isGenerate)
	busy, _ := m.sum(metricBusy, nil)
	queue, _ := m.sum(metricQueue, nil)
	st.SlotsBusy, st.Queue = int(busy), int(queue)
	if total, ok := m.sum(metricSlots, nil); ok {
		st.SlotsTotal = int(total)
	}
	st.Tokens, st.Requests = uint64(tok), uint64(req)
	cur := headSample{at: now, tokens: tok, requests: req, ttft: m.histogram(metricTTFT)}
	// A head that restarted counts from zero again.
	if n := len(*samples); n > 0 && (*samples)[n-1].tokens > tok {
		*samples = nil
	}
	s := append(*samples, cur)
	for len(s) > 1 && now.Sub(s[0].at) > TTFTWindow {
		s = s[1:]
	}
	*samples = s
	st.Rated = false
	for _, old := range s[:len(s)-1] {
		if dt := now.Sub(old.at); dt <= RateWindow && dt > 0 {
			st.Rated = true
			st.TokensPerSec = (tok - old.tokens) / dt.Seconds()
			st.RequestsPerSec = (req - old.requests) / dt.Seconds()
			break
		}
	}
	win := cur.ttft.minus(s[0].ttft)
	if len(s) == 1 || win.total() == 0 {
		win = cur.ttft
	}
	if q := win.quantile(0.5); !math.IsNaN(q) {
		st.TTFT = time.Duration(q * float64(time.Second))
	} else {
		st.TTFT = 0
	}
	return st
}
