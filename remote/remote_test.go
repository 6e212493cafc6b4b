package remote_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/boxproj/box/llama"
	"github.com/boxproj/box/remote"
	"github.com/boxproj/box/synth"
	"github.com/boxproj/box/worker"
	"github.com/boxproj/box/worker/workertest"
)

// generate loads path with p and returns the greedy tokens that follow
// "The quick brown fox" (max of them), in a context of nctx.
func generate(t *testing.T, path string, p llama.ModelParams, nctx, threads, max int) []llama.Token {
	t.Helper()
	return generateAfter(t, path, p, nctx, threads, max, nil)
}

// generateAfter is generate that calls loaded (when not nil) once the
// model is loaded.
func generateAfter(t *testing.T, path string, p llama.ModelParams, nctx, threads, max int, loaded func()) []llama.Token {
	t.Helper()
	m, err := llama.LoadModel(context.Background(), path, p)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if loaded != nil {
		loaded()
	}
	c, err := m.NewContext(llama.ContextParams{NCtx: nctx, Threads: threads})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	toks, _ := m.Tokenize("The quick brown fox", true, false)
	res, err := c.Generate(context.Background(), llama.GenerateParams{Prompt: toks, MaxTokens: max}, func(string) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	return res.Tokens
}

// The test binary is also the test workers' compute process.
func TestMain(m *testing.M) { workertest.Main(m) }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func TestSplitGenerationMatchesLocal(t *testing.T) {
	llama.Init(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	cfg, _ := synth.Preset("tiny")
	cfg.Layers = 4
	path, err := synth.EnsureCached(context.Background(), t.TempDir(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	gen := func(p llama.ModelParams) []llama.Token { return generate(t, path, p, 256, 2, 24) }
	local := gen(llama.ModelParams{})

	w1, w2 := workertest.Start(t, worker.Config{}), workertest.Start(t, worker.Config{})
	a1, a2 := w1.Addr, w2.Addr
	n1, err := remote.Connect(context.Background(), a1, quiet)
	if err != nil {
		t.Fatal(err)
	}
	n2, err := remote.Connect(context.Background(), a2, quiet)
	if err != nil {
		t.Fatal(err)
	}
	check := func() error { return errors.Join(n1.Err(), n2.Err()) }
	split := gen(llama.ModelParams{Devices: []string{n1.Devices()[0].Name, n2.Devices()[0].Name}, GPULayers: -1, TensorSplit: []float32{1, 3}, Check: check})
	if len(split) != len(local) {
		t.Fatalf("split %v\nlocal %v", split, local)
	}
	for i := range split {
		if split[i] != local[i] {
			t.Fatalf("token %d differs:\nsplit %v\nlocal %v", i, split, local)
		}
	}
	// The workers learn of the frees from their compute processes.
	for t0 := time.Now(); w1.BoundBytes() != 0 || w2.BoundBytes() != 0; time.Sleep(time.Millisecond) {
		if time.Since(t0) > raceFactor*time.Second {
			t.Fatalf("%v after close: %d and %d bytes bound", raceFactor*time.Second, w1.BoundBytes(), w2.BoundBytes())
		}
	}
}
