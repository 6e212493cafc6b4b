package bench

import (
	"context"
	"io"
	"log/slog"
	"math"
	"testing"
	"time"

	"github.com/boxproj/box/llama"
	"github.com/boxproj/box/remote"
	"github.com/boxproj/box/synth"
)

func TestMeanStd(t *testing.T) {
	tests := []struct {
		in        []float64
		mean, std float64
	}{
		{nil, 0, 0},
		{[]float64{5}, 5, 0},
		{[]float64{2, 4, 4, 4, 5, 5, 7, 9}, 5, 2.138},
	}
	for _, tc := range tests {
		m, s := MeanStd(tc.in)
		if math.Abs(m-tc.mean) > 1e-9 || math.Abs(s-tc.std) > 1e-3 {
			t.Errorf("MeanStd(%v) = %v, %v; want %v, %v", tc.in, m, s, tc.mean, tc.std)
		}
	}
}

func TestReadBandwidthIsPlausible(t *testing.T) {
	bw, err := ReadBandwidth(context.Background(), 64<<20, 2)
	if err != nil {
		t.Fatal(err)
	}
	// Any machine that runs this reads memory faster than 100 MB/s and
	// slower than 10 TB/s.
	if bw < 1e8 || bw > 1e13 {
		t.Fatalf("read bandwidth %.0f B/s", bw)
	}
}

// Prompt and Generate measure real decodes on the tiny model.
func TestPromptAndGenerateMeasure(t *testing.T) {
	llama.Init(slog.New(slog.NewTextHandler(io.Discard, nil)))
	cfg, _ := synth.Preset("tiny")
	path, err := synth.EnsureCached(context.Background(), t.TempDir(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	m, err := llama.LoadModel(context.Background(), path, llama.ModelParams{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	c, err := m.NewContext(llama.ContextParams{NCtx: 128, NBatch: 64, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pp, err := Prompt(context.Background(), c, 64, 2)
	if err != nil || len(pp) != 2 || pp[0] <= 0 {
		t.Fatalf("prompt: %v %v", pp, err)
	}
	tg, err := Generate(context.Background(), c, 16, 2)
	if err != nil || len(tg) != 2 || tg[0] <= 0 {
		t.Fatalf("generate: %v %v", tg, err)
	}
	if _, err := Prompt(context.Background(), c, 128, 1); err == nil {
		t.Fatal("pp of the whole context accepted")
	}
}

// The summary has one row per path that ran, with its ratio to what that
// path is judged against.
func TestSummarize(t *testing.T) {
	rep := &Report{
		Results: []Result{{Type: "q8_0", Test: "pp512", Mean: 80}, {Type: "q8_0", Test: "tg128", Mean: 30, BoundTPS: 40, Ratio: 0.75}},
		Cluster: &ClusterBench{Split: []Result{{Test: "pp512", Mean: 85}, {Test: "tg128", Mean: 28}}, PPRatio: 1.06, TGRatio: 0.93},
		Load: &LoadBench{ColdSec: []float64{0.7, 0.9}, WarmSec: []float64{0.5}, ColdRatio: 2.5, WarmRatio: 1.8,
			RawSec: []float64{0.2, 0.3}, RawFreshSec: []float64{0.5, 0.5}, ColdFreshRatio: 1.6},
		RPC: &RPCResult{SetTensorBps: 4e9, SetRatio: 0.9, GetTensorBps: 3e9, GetRatio: 0.8, GraphRTTus: 90},
	}
	rows := Summarize(rep)
	want := []SummaryRow{
		{Path: "single node q8_0 pp512", Value: 80, Unit: "t/s"},
		{Path: "single node q8_0 tg128", Value: 30, Unit: "t/s", Ratio: 0.75, RatioTo: "memory bound 40.0 t/s"},
		{Path: "head + 2 workers pp512", Value: 85, Unit: "t/s", Ratio: 1.06, RatioTo: "single node"},
		{Path: "head + 2 workers tg128", Value: 28, Unit: "t/s", Ratio: 0.93, RatioTo: "single node"},
		{Path: "upload floor (fresh memory)", Value: 0.5, Unit: "s", Ratio: 2, RatioTo: "raw loopback TCP"},
		{Path: "load over 2 workers, no cache", Value: 0.8, Unit: "s", Ratio: 2.5, RatioTo: "raw loopback TCP"},
		{Path: "load over 2 workers, warm cache", Value: 0.5, Unit: "s", Ratio: 1.8, RatioTo: "raw loopback TCP"},
		{Path: "load over 2 workers, no cache", Value: 0.8, Unit: "s", Ratio: 1.6, RatioTo: "upload floor"},
		{Path: "worker SET_TENSOR", Value: 4000, Unit: "MB/s", Ratio: 0.9, RatioTo: "raw loopback TCP"},
		{Path: "worker GET_TENSOR", Value: 3000, Unit: "MB/s", Ratio: 0.8, RatioTo: "raw loopback TCP"},
		{Path: "worker GRAPH_COMPUTE round trip", Value: 90, Unit: "µs"},
	}
	if len(rows) != len(want) {
		t.Fatalf("%d rows, want %d: %+v", len(rows), len(want), rows)
	}
	for i := range want {
		if rows[i].Path != want[i].Path || math.Abs(rows[i].Value-want[i].Value) > 1e-9 || rows[i].Ratio != want[i].Ratio || rows[i].RatioTo != want[i].RatioTo || rows[i].Unit != want[i].Unit {
			t.Errorf("row %d = %+v, want %+v", i, rows[i], want[i])
		}
	}
	if got := Summarize(&Report{}); len(got) != 0 {
		t.Errorf("no suites: %d rows", len(got))
	}
}

func TestTokenTime(t *testing.T) {
	node := remote.CallStats{Calls: 20, CallTime: 5 * time.Millisecond, Computes: 10, ComputeTime: 40 * time.Millisecond, Serialize: 2 * time.Millisecond}
	got := tokenTime(100*time.Millisecond, 10, []remote.CallStats{node, node})
	want := TokenTime{Total: 10000, Compute: 8000, RoundTrips: 1000, Serialize: 400, Head: 600, Graphs: 2, Commands: 4}
	if math.Abs(got.Head-want.Head) > 1e-9 || got.Total != want.Total || got.Compute != want.Compute || got.RoundTrips != want.RoundTrips ||
		got.Serialize != want.Serialize || got.Graphs != want.Graphs || got.Commands != want.Commands {
		t.Fatalf("tokenTime = %+v, want %+v", got, want)
	}
}
