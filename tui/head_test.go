package tui

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/boxproj/box/api"
	"github.com/boxproj/box/worker"
	"github.com/boxproj/box/worker/workertest"
)

// stepClock advances by step on every call, so rates have a time base that
// does not depend on the machine's speed.
type stepClock struct {
	mu   sync.Mutex
	t    time.Time
	step time.Duration
}

func (c *stepClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(c.step)
	return c.t
}

func (c *stepClock) peek() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// stubHead serves a head's /v1/cluster, /v1/models and /metrics. Its
// counters grow with the clock: 40 tokens and 2 requests a second, and the
// TTFT histogram gets one 80 ms request a second.
type stubHead struct {
	clk *stepClock
	mu  sync.Mutex
	cl  map[string]any
}

func (h *stubHead) set(f func(map[string]any)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	f(h.cl)
}

func (h *stubHead) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/v1/cluster":
		h.mu.Lock()
		defer h.mu.Unlock()
		json.NewEncoder(w).Encode(h.cl)
	case "/v1/models":
		fmt.Fprint(w, `{"object":"list","data":[{"id":"box-demo","object":"model"}]}`)
	case "/metrics":
		s := h.clk.peek().Sub(t0).Seconds()
		fmt.Fprintf(w, "# HELP box_serve_generated_tokens_total Tokens generated.\n# TYPE box_serve_generated_tokens_total counter\n")
		fmt.Fprintf(w, "box_serve_generated_tokens_total %g\n", 40*s)
		fmt.Fprintf(w, "box_serve_requests_total{code=\"200\",endpoint=\"chat\"} %g\n", 2*s)
		fmt.Fprintf(w, "box_serve_requests_total{code=\"200\",endpoint=\"health\"} %g\n", 100*s)
		fmt.Fprintf(w, "box_serve_slots_busy 1\nbox_serve_slots_total 4\nbox_serve_queue_depth 2\n")
		for _, le := range []string{"0.04", "0.08", "0.16", "+Inf"} {
			n := s
			if le == "0.04" {
				n = 0
			}
			fmt.Fprintf(w, "box_serve_time_to_first_token_seconds_bucket{le=%q} %g\n", le, n)
		}
		fmt.Fprintf(w, "box_serve_time_to_first_token_seconds_count %g\n", s)
	default:
		http.NotFound(w, r)
	}
}

func TestParseMetricsAndQuantile(t *testing.T) {
	text := `# HELP x y
box_serve_requests_total{code="200",endpoint="chat"} 3
box_serve_requests_total{code="429",endpoint="completions"} 2
box_serve_requests_total{code="200",endpoint="health"} 50
weird{a="x,y",b="q\"z"} 1.5e3
h_bucket{le="0.1"} 0
h_bucket{le="0.2"} 10
h_bucket{le="+Inf"} 10
`
	m, err := parseMetrics(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := m.sum("box_serve_requests_total", isGenerate); v != 5 {
		t.Errorf("generate requests %v, want 5", v)
	}
	if s := m["weird"]; len(s) != 1 || s[0].labels["a"] != "x,y" || s[0].labels["b"] != `q"z` || s[0].value != 1500 {
		t.Errorf("quoted labels: %+v", s)
	}
	if _, ok := m.sum("absent", nil); ok {
		t.Error("absent metric reported present")
	}
	for _, tc := range []struct {
		name string
		h    histogram
		q    float64
		want float64
	}{
		{"middle of a bucket", m.histogram("h"), 0.5, 0.15},
		{"top of the first bucket", histogram{le: []float64{1, 2}, count: []float64{4, 4}}, 0.5, 0.5},
		{"beyond the last bound", histogram{le: []float64{1, math.Inf(1)}, count: []float64{0, 3}}, 0.5, 1},
		{"empty", histogram{}, 0.5, math.NaN()},
	} {
		got := tc.h.quantile(tc.q)
		if math.IsNaN(tc.want) != math.IsNaN(got) || !math.IsNaN(got) && math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("%s: quantile %v, want %v", tc.name, got, tc.want)
		}
	}
	if _, err := parseMetrics(strings.NewReader("novalue\n")); err == nil {
		t.Error("a line without a value parsed")
	}
}

// TestPollerHeadServing: the head strip's facts from a head's endpoints,
// each worker's layers and placed/needed bytes, and head alerts that end
// and stay in the log with their duration.
func TestPollerHeadServing(t *testing.T) {
	w := workertest.Start(t, worker.Config{})
	c := workertest.Dial(t, w.Addr)
	workertest.Alloc(t, c, 3<<20)
	clk := &stepClock{t: t0, step: 250 * time.Millisecond}
	h := &stubHead{clk: clk, cl: map[string]any{"state": "ok", "local_layers": 1,
		"workers": []map[string]any{{"addr": "10.0.0.1:50052", "admin": w.Admin, "state": "up", "layers": 3,
			"placed_bytes": 3 << 20, "buffers": 1}},
		"plan": []map[string]any{{"addr": "10.0.0.1:50052", "layers": 3, "need_bytes": 4 << 20}}}}
	srv := httptest.NewServer(h)
	p := NewPoller(Config{Head: srv.URL, Now: clk.Now, Timeout: time.Second})
	ctx := context.Background()
	s := p.Poll(ctx)
	hs := s.HeadStats
	if hs == nil || !hs.Reachable || hs.State != "ok" || hs.Model != "box-demo" || hs.Rated || hs.LocalLayers != 1 {
		t.Fatalf("first poll: %+v", hs)
	}
	if hs.SlotsBusy != 1 || hs.SlotsTotal != 4 || hs.Queue != 2 {
		t.Fatalf("slots and queue: %+v", hs)
	}
	n := s.Nodes[0]
	if !n.InHead || n.Layers != 3 || n.Placed != 3<<20 || n.Need != 4<<20 || n.HeadConn != 1 {
		t.Fatalf("node from the head: %+v", n)
	}
	s = p.Poll(ctx)
	hs = s.HeadStats
	if !hs.Rated || math.Abs(hs.TokensPerSec-40) > 0.01 || math.Abs(hs.RequestsPerSec-2) > 0.01 {
		t.Fatalf("rates: %+v", hs)
	}
	if hs.TTFT < 40*time.Millisecond || hs.TTFT > 80*time.Millisecond {
		t.Fatalf("TTFT p50 %v, want within the 40-80 ms bucket", hs.TTFT)
	}
	if len(alertsOf(s)) != 0 {
		t.Fatalf("alerts while ok: %+v", alertsOf(s))
	}
	h.set(func(cl map[string]any) { cl["state"], cl["error"] = "degraded", "worker 10.0.0.1:50052: EOF" })
	s = p.Poll(ctx)
	if a := findAlert(s, AlertHead, "head"); a == nil || !a.Active || a.Text != "head degraded: worker 10.0.0.1:50052: EOF" {
		t.Fatalf("degraded alert: %+v", s.Alerts)
	}
	h.set(func(cl map[string]any) { cl["state"] = "ok"; delete(cl, "error") })
	s = p.Poll(ctx)
	a := findAlert(s, AlertHead, "head")
	if a == nil || a.Active || a.Lasted() < 500*time.Millisecond || a.Lasted() > 750*time.Millisecond { // one poll: 2-3 clock steps
		t.Fatalf("ended degraded alert: %+v", a)
	}
	srv.Close()
	s = p.Poll(ctx)
	if hs := s.HeadStats; hs.Reachable || hs.Model != "box-demo" || s.HeadError == "" {
		t.Fatalf("head gone: %+v", hs)
	}
	if a := findAlert(s, AlertHead, "head"); a == nil || !a.Active || !strings.HasPrefix(a.Text, "head unreachable: ") {
		t.Fatalf("unreachable alert: %+v", s.Alerts)
	}
	if s.Nodes[0].State != StateUp {
		t.Fatalf("the worker is still watched: %+v", s.Nodes[0])
	}
}

// TestPollerActivity: commands/s and bytes/s from two polls of a worker's
// counters; a worker without counters (all zero) has no rates.
func TestPollerActivity(t *testing.T) {
	var mu sync.Mutex
	conns := []api.ConnInfo{{ID: 1, Peer: "10.0.0.2:1", State: "serving", Commands: 100, BytesIn: 1 << 20, BytesOut: 4096},
		{ID: 2, Peer: "10.0.0.3:1", State: "serving"}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/node", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(api.NodeInfo{Devices: []api.DeviceInfo{{Name: "CPU", MemoryTotal: 1 << 30, MemoryFree: 1 << 29}}})
	})
	mux.HandleFunc("GET /v1/connections", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		json.NewEncoder(w).Encode(map[string]any{"connections": conns})
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	clk := &stepClock{t: t0, step: time.Second}
	p := NewPoller(Config{Nodes: []Target{{Name: "s", URL: srv.URL}}, Now: clk.Now})
	s := p.Poll(context.Background())
	if a := s.Nodes[0].Activity[1]; a.Rated {
		t.Fatalf("rated on first sight: %+v", a)
	}
	mu.Lock()
	conns[0].Commands, conns[0].BytesIn, conns[0].BytesOut = 150, 3<<20, 8192
	mu.Unlock()
	s = p.Poll(context.Background())
	for _, tc := range []struct {
		id   uint64
		want Activity
	}{
		{1, Activity{Rated: true, CmdsPerSec: 50, InPerSec: 2 << 20, OutPerSec: 4096}},
		{2, Activity{}},
	} {
		if got := s.Nodes[0].Activity[tc.id]; got != tc.want {
			t.Errorf("conn %d: %+v, want %+v", tc.id, got, tc.want)
		}
	}
}

func TestShortNames(t *testing.T) {
	for _, tc := range []struct {
		name  string
		in    []string
		w     int
		want  []string
		exact bool
	}{
		{"fits", []string{"w1", "w2"}, 10, []string{"w1", "w2"}, true},
		{"common suffix", []string{"gpu-worker-01.rack-a.example.net:50052", "gpu-worker-02.rack-a.example.net:50052"}, 14,
			[]string{"gpu-worker-01…", "gpu-worker-02…"}, true},
		{"common prefix", []string{"127.0.0.1:50052", "127.0.0.1:50062", "127.0.0.1:50102"}, 10,
			[]string{"…:50052", "…:50062", "…:50102"}, true},
		{"both", []string{"node-1.example.com:1", "node-2.example.com:1"}, 6, []string{"…-1…", "…-2…"}, true},
		{"from the left", []string{"alpha-long-hostname-1", "beta-long-hostname-2"}, 8, []string{"…tname-1", "…tname-2"}, true},
		{"single long name", []string{"a-very-long-single-hostname"}, 8, []string{"…ostname"}, true},
	} {
		got := shortNames(tc.in, tc.w)
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
		if !distinct(got) || !fits(got, tc.w) {
			t.Errorf("%s: %q not distinct or wider than %d", tc.name, got, tc.w)
		}
	}
}
