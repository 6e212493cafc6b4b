package bench

import (
	"context"
	"io"
	"log/slog"
	"math"
	"testing"

	"github.com/boxproj/box/llama"
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
