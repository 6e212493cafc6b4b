package llama_test

import (
	"bufio"
	"context"
	"math"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/boxproj/box/llama"
	"github.com/boxproj/box/synth"
)

// mediumModel is the 1b preset cut to 2 layers and a small vocabulary, Q8_0:
// about 100 MB of hot weights, a few of the mover's 64 MiB chunks.
func mediumModel(t *testing.T) string {
	t.Helper()
	cfg, err := synth.Preset("1b")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Layers, cfg.Vocab, cfg.Type = 2, 8192, synth.TypeQ8_0
	p, err := synth.EnsureCached(context.Background(), tmpDir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func thpOn(t *testing.T) bool {
	b, err := os.ReadFile("/sys/kernel/mm/transparent_hugepage/enabled")
	return err == nil && !strings.Contains(string(b), "[never]")
}

// anonHuge is this process's AnonHugePages, in bytes.
func anonHuge(t *testing.T) uint64 {
	t.Helper()
	f, err := os.Open("/proc/self/smaps_rollup")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "AnonHugePages:"); ok {
			kb, err := strconv.ParseUint(strings.Fields(rest)[0], 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no AnonHugePages in smaps_rollup")
	return 0
}

// logitsOf decodes toks one at a time from an empty cache and returns the
// logits after each.
func logitsOf(t *testing.T, c *llama.Context, toks []llama.Token) [][]float32 {
	t.Helper()
	c.Reset()
	var out [][]float32
	for i := range toks {
		if err := c.Decode(toks[i : i+1]); err != nil {
			t.Fatal(err)
		}
		out = append(out, c.Logits())
	}
	return out
}

// The hot weights move onto huge pages in the background, with every
// decode meanwhile and after it seeing exactly the weights that were
// loaded: the logits equal those of a model kept on its load pages.
func TestHugePagesKeepTheWeights(t *testing.T) {
	path := mediumModel(t)
	toks := []llama.Token{1, 200, 3000, 41, 5000, 6, 777, 8000}
	for _, tc := range []struct {
		name string
		p    llama.ModelParams
	}{
		{"mapped", llama.ModelParams{}},
		{"read", llama.ModelParams{NoMmap: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ref := tc.p
			ref.NoHugePages = true
			mr, err := llama.LoadModel(context.Background(), path, ref)
			if err != nil {
				t.Fatal(err)
			}
			defer mr.Close()
			if st := mr.HugePages().State; st != llama.HugeOff {
				t.Fatalf("NoHugePages: state %v, want off", st)
			}
			cr, err := mr.NewContext(llama.ContextParams{NCtx: 64, Threads: 2})
			if err != nil {
				t.Fatal(err)
			}
			defer cr.Close()
			want := logitsOf(t, cr, toks)

			before := anonHuge(t)
			m, err := llama.LoadModel(context.Background(), path, tc.p)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			c, err := m.NewContext(llama.ContextParams{NCtx: 64, Threads: 2})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			// Decode while the move is under way, then once it is done.
			during := logitsOf(t, c, toks)
			rep := m.WaitHugePages(context.Background())
			after := logitsOf(t, c, toks)
			for i := range want {
				for j := range want[i] {
					if during[i][j] != want[i][j] || after[i][j] != want[i][j] || math.IsNaN(float64(want[i][j])) {
						t.Fatalf("token %d logit %d: %v during the move, %v after, want %v", i, j, during[i][j], after[i][j], want[i][j])
					}
				}
			}
			if !thpOn(t) {
				if rep.State != llama.HugeUnsupported {
					t.Fatalf("huge pages are off in the kernel, state %v", rep.State)
				}
				return
			}
			if rep.State != llama.HugeDone || rep.Err != nil {
				t.Fatalf("state %v err %v, want done", rep.State, rep.Err)
			}
			// The output matrix and the two blocks, not the token
			// embeddings (an untied model reads them a row at a time).
			if rep.Wanted < 80<<20 || rep.Wanted > 150<<20 || rep.Bytes != rep.Wanted {
				t.Fatalf("moved %d of %d MiB, want all of 80..150 MiB", rep.Bytes>>20, rep.Wanted>>20)
			}
			// The kernel may fall back to small pages under fragmentation,
			// but not for most of a fresh machine's memory.
			if got := anonHuge(t) - before; got < rep.Bytes/2 {
				t.Fatalf("AnonHugePages grew by %d MiB, moved %d MiB", got>>20, rep.Bytes>>20)
			}
		})
	}
}

// Closing a model while its weights are moving stops the mover first;
// the tiny model has no whole huge page of weights to move at all.
func TestHugePagesCloseAndNone(t *testing.T) {
	m, err := llama.LoadModel(context.Background(), mediumModel(t), llama.ModelParams{})
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
	st := m.HugePages().State
	if thpOn(t) && st != llama.HugeStopped && st != llama.HugeDone {
		t.Fatalf("state %v after Close, want stopped or done", st)
	}

	m, err = llama.LoadModel(context.Background(), tinyModel(t, synth.TypeF32), llama.ModelParams{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	want := llama.HugeNone
	if !thpOn(t) {
		want = llama.HugeUnsupported
	}
	if rep := m.WaitHugePages(context.Background()); rep.State != want || rep.Bytes != 0 {
		t.Fatalf("tiny model: %+v, want %v", rep, want)
	}
}
