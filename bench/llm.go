package bench

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/boxproj/box/llama"
)

// Result is one llama-bench-style row.
type Result struct {
	Model     string `json:"model"`
	Type      string `json:"type"`
	SizeBytes uint64 `json:"size_bytes"`
	Params    uint64 `json:"params"`
	Backend   string `json:"backend"`
	Threads   int    `json:"threads"`
	Test      string `json:"test"` // pp512, tg128
	// HugePageBytes of the weights were on transparent huge pages.
	HugePageBytes uint64    `json:"huge_page_bytes"`
	Samples       []float64 `json:"samples_tps"`
	Mean          float64   `json:"mean_tps"`
	Stddev        float64   `json:"stddev_tps"`
	// BoundTPS is memory bandwidth / model bytes (tg only): no CPU can
	// generate faster, since each token reads every weight once.
	BoundTPS float64 `json:"bound_tps,omitempty"`
	Ratio    float64 `json:"ratio_to_bound,omitempty"`
}

// Prompt measures prompt processing: n tokens decoded in one batch from an
// empty cache, reps times after one warm-up.
func Prompt(ctx context.Context, c *llama.Context, n, reps int) ([]float64, error) {
	toks := fakeTokens(c.Model(), n)
	if n > c.NBatch() || n >= c.NCtx() {
		return nil, fmt.Errorf("pp%d needs a batch and context of at least %d", n, n+1)
	}
	var out []float64
	for r := -1; r < reps; r++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		c.Reset()
		t0 := time.Now()
		if err := c.Decode(toks); err != nil {
			return nil, err
		}
		c.Logits() // forces the result back, like a real caller
		if r >= 0 {
			out = append(out, float64(n)/time.Since(t0).Seconds())
		}
	}
	return out, nil
}

// Generate measures generation: n single-token decodes from an empty cache,
// reps times after one warm-up.
func Generate(ctx context.Context, c *llama.Context, n, reps int) ([]float64, error) {
	toks := fakeTokens(c.Model(), n)
	var out []float64
	for r := -1; r < reps; r++ {
		c.Reset()
		t0 := time.Now()
		for i := 0; i < n; i++ {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			if err := c.Decode(toks[i : i+1]); err != nil {
				return nil, err
			}
		}
		if r >= 0 {
			out = append(out, float64(n)/time.Since(t0).Seconds())
		}
	}
	return out, nil
}

// fakeTokens is a deterministic token sequence over the whole vocabulary.
func fakeTokens(m *llama.Model, n int) []llama.Token {
	v := m.VocabSize()
	out := make([]llama.Token, n)
	for i := range out {
		out[i] = llama.Token((i*7919 + 13) % v)
	}
	return out
}

// MeanStd summarises samples.
func MeanStd(xs []float64) (mean, std float64) {
	if len(xs) == 0 {
		return 0, 0
	}
	for _, x := range xs {
		mean += x
	}
	mean /= float64(len(xs))
	if len(xs) < 2 {
		return mean, 0
	}
	for _, x := range xs {
		std += (x - mean) * (x - mean)
	}
	return mean, math.Sqrt(std / float64(len(xs)-1))
}
