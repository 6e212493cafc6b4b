package llama_test

import (
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/boxproj/box/ggml"
	"github.com/boxproj/box/llama"
	"github.com/boxproj/box/synth"
)

// tinyModel writes the tiny preset (type typ) once per test binary.
var tinyPaths = map[string]string{}

func tinyModel(t *testing.T, typ string) string {
	t.Helper()
	if p, ok := tinyPaths[typ]; ok {
		return p
	}
	cfg, err := synth.Preset("tiny")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Type = typ
	p, err := synth.EnsureCached(context.Background(), tmpDir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	tinyPaths[typ] = p
	return p
}

var tmpDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "box-llama-test")
	if err != nil {
		panic(err)
	}
	tmpDir = dir
	llama.Init(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func load(t *testing.T, path string) (*llama.Model, *llama.Context) {
	t.Helper()
	m, err := llama.LoadModel(context.Background(), path, llama.ModelParams{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := m.NewContext(llama.ContextParams{NCtx: 256, Threads: 2})
	if err != nil {
		m.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); m.Close() })
	return m, c
}

func greedy(t *testing.T, c *llama.Context, prompt string, n int) llama.GenerateResult {
	t.Helper()
	toks, err := c.Model().Tokenize(prompt, true, false)
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.Generate(context.Background(), llama.GenerateParams{Prompt: toks, MaxTokens: n}, func(string) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestGreedyDeterministicAcrossLoads(t *testing.T) {
	for _, typ := range []string{"f32", "f16", "q8_0"} {
		t.Run(typ, func(t *testing.T) {
			path := tinyModel(t, typ)
			_, c1 := load(t, path)
			_, c2 := load(t, path)
			a := greedy(t, c1, "The quick brown fox", 24)
			b := greedy(t, c2, "The quick brown fox", 24)
			again := greedy(t, c1, "The quick brown fox", 24)
			if a.CompletionTokens == 0 {
				t.Fatalf("no tokens generated (finish %s)", a.FinishReason)
			}
			if !equalTokens(a.Tokens, b.Tokens) || !equalTokens(a.Tokens, again.Tokens) {
				t.Fatalf("greedy output differs:\n%v\n%v\n%v", a.Tokens, b.Tokens, again.Tokens)
			}
		})
	}
}

func TestSeededSamplingRepeatable(t *testing.T) {
	_, c := load(t, tinyModel(t, "f32"))
	toks, _ := c.Model().Tokenize("Once upon", true, false)
	run := func(seed uint32) []llama.Token {
		res, err := c.Generate(context.Background(), llama.GenerateParams{Prompt: toks, MaxTokens: 32,
			Sampler: llama.SamplerParams{Temperature: 1.5, TopK: 200, TopP: 0.95, MinP: 0.01, RepeatPenalty: 1.1, Seed: seed}},
			func(string) error { return nil })
		if err != nil {
			t.Fatal(err)
		}
		return res.Tokens
	}
	a, b, other := run(7), run(7), run(8)
	if !equalTokens(a, b) {
		t.Fatalf("same seed, different output:\n%v\n%v", a, b)
	}
	if equalTokens(a, other) {
		t.Fatalf("seeds 7 and 8 gave identical output %v", a)
	}
}

func equalTokens(a, b []llama.Token) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestTokenizeRoundTrip(t *testing.T) {
	m, _ := load(t, tinyModel(t, "f32"))
	for _, text := range []string{"Hello, world!", "héllo wörld 日本語 🎉", "tabs\tand\nnewlines", "<|im_start|> is text here", "\x00\x01 bytes"} {
		toks, err := m.Tokenize(text, false, false)
		if err != nil {
			t.Fatal(err)
		}
		if got := m.Detokenize(toks); got != text {
			t.Errorf("round trip %q -> %v -> %q", text, toks, got)
		}
	}
	// With special parsing, control tokens become single ids.
	toks, _ := m.Tokenize("<|im_start|>", false, true)
	if len(toks) != 1 {
		t.Errorf("<|im_start|> parsed as %v, want one control token", toks)
	}
}

func TestChatTemplate(t *testing.T) {
	m, _ := load(t, tinyModel(t, "f32"))
	if m.ChatTemplate() == "" {
		t.Fatal("synthetic model has no chat template")
	}
	got, err := m.ApplyChatTemplate([]llama.ChatMessage{{Role: "system", Content: "be brief"}, {Role: "user", Content: "hi"}}, true)
	if err != nil {
		t.Fatal(err)
	}
	want := "<|im_start|>system\nbe brief<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
	if got != want {
		t.Fatalf("template output:\n%q\nwant\n%q", got, want)
	}
	if _, err := m.ApplyChatTemplate(nil, true); err == nil {
		t.Fatal("empty conversation accepted")
	}
}

func TestGenerateStopsAndCancels(t *testing.T) {
	_, c := load(t, tinyModel(t, "f32"))
	ref := greedy(t, c, "abc", 40)
	if len(ref.Text) < 4 {
		t.Fatalf("reference text too short: %q", ref.Text)
	}
	// A stop string taken from the middle of the reference output.
	stop := ref.Text[len(ref.Text)/2 : len(ref.Text)/2+2]
	toks, _ := c.Model().Tokenize("abc", true, false)
	var streamed strings.Builder
	res, err := c.Generate(context.Background(), llama.GenerateParams{Prompt: toks, MaxTokens: 40, Stop: []string{stop}},
		func(s string) error { streamed.WriteString(s); return nil })
	if err != nil {
		t.Fatal(err)
	}
	want := ref.Text[:strings.Index(ref.Text, stop)]
	if res.Text != want || streamed.String() != want || res.FinishReason != llama.FinishStop {
		t.Fatalf("stop %q: text %q streamed %q finish %s; want %q stop", stop, res.Text, streamed.String(), res.FinishReason, want)
	}

	res = greedy(t, c, "abc", 5)
	if res.CompletionTokens != 5 || res.FinishReason != llama.FinishLength {
		t.Fatalf("max tokens 5: got %d tokens, finish %s", res.CompletionTokens, res.FinishReason)
	}

	ctx, cancel := context.WithCancel(context.Background())
	n := 0
	_, err = c.Generate(ctx, llama.GenerateParams{Prompt: toks, MaxTokens: 200}, func(string) error {
		if n++; n == 3 {
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) || n != 3 {
		t.Fatalf("cancel after 3 tokens: err %v after %d tokens", err, n)
	}

	long := make([]llama.Token, c.NCtx())
	for i := range long {
		long[i] = 100
	}
	if _, err := c.Generate(context.Background(), llama.GenerateParams{Prompt: long}, func(string) error { return nil }); !errors.Is(err, llama.ErrPromptTooLong) {
		t.Fatalf("prompt of %d tokens: err %v", len(long), err)
	}
}

// Corrupt files must give a *LoadError naming the file, never a crash.
func TestLoadErrors(t *testing.T) {
	good, err := os.ReadFile(tinyModel(t, "f32"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	patch := func(off int, v uint64) []byte {
		b := append([]byte(nil), good...)
		binary.LittleEndian.PutUint64(b[off:], v)
		return b
	}
	tests := []struct {
		name, path, reason string
	}{
		{"missing", filepath.Join(dir, "nope.gguf"), "no such file"},
		{"directory", dir, "directory"},
		{"empty", write("empty.gguf", nil), "too short"},
		{"wrong magic", write("magic.gguf", append([]byte("GGUX"), good[4:]...)), "not a GGUF"},
		{"bad version", write("ver.gguf", append(append([]byte("GGUF"), 9, 0, 0, 0), good[8:]...)), "version"},
		{"truncated in header", write("t1.gguf", good[:20]), ""},
		{"truncated in metadata", write("t2.gguf", good[:2000]), ""},
		{"truncated in tensor data", write("t3.gguf", good[:len(good)/2]), ""},
		{"truncated by one byte", write("t4.gguf", good[:len(good)-1]), ""},
		{"absurd tensor count", write("tc.gguf", patch(8, 1<<60)), ""},
		{"absurd kv count", write("kv.gguf", patch(16, 1<<60)), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			m, err := llama.LoadModel(ctx, tc.path, llama.ModelParams{})
			if err == nil {
				m.Close()
				t.Fatal("loaded a corrupt file")
			}
			var le *llama.LoadError
			if !errors.As(err, &le) || le.Path != tc.path {
				t.Fatalf("error %v does not name %s", err, tc.path)
			}
			if !strings.Contains(err.Error(), tc.reason) {
				t.Fatalf("error %q does not mention %q", err, tc.reason)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error is not one line: %q", err)
			}
		})
	}
}

func TestCancelLoad(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := llama.LoadModel(ctx, tinyModel(t, "f32"), llama.ModelParams{})
	if err == nil || !strings.Contains(err.Error(), "cancel") {
		t.Fatalf("cancelled load: %v", err)
	}
}

func TestDevices(t *testing.T) {
	devs := ggml.Devices()
	if len(devs) == 0 || devs[0].Type != "cpu" || devs[0].Total == 0 {
		t.Fatalf("devices: %+v", devs)
	}
	if info := llama.SystemInfo(); !strings.Contains(info, "CPU") {
		t.Fatalf("system info %q", info)
	}
}

// tasks lists this process's thread IDs.
func tasks(t *testing.T) map[string]bool {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, e := range ents {
		out[e.Name()] = true
	}
	return out
}

// A context owns one pool of compute threads: they live from its first
// graph across every decode (ggml would otherwise create and join threads
// for each graph), and Close ends them.
func TestContextOwnsItsThreads(t *testing.T) {
	m, err := llama.LoadModel(context.Background(), tinyModel(t, "f32"), llama.ModelParams{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	before := tasks(t)
	c, err := m.NewContext(llama.ContextParams{NCtx: 64, Threads: 6})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Decode([]llama.Token{1}); err != nil {
		t.Fatal(err)
	}
	var pool []string
	for id := range tasks(t) {
		if !before[id] {
			pool = append(pool, id)
		}
	}
	if len(pool) < 5 {
		t.Fatalf("%d new threads after the first decode, want the pool's 5 (6 threads, one the caller's)", len(pool))
	}
	for i := 0; i < 10; i++ {
		if err := c.Decode([]llama.Token{llama.Token(2 + i)}); err != nil {
			t.Fatal(err)
		}
	}
	now := tasks(t)
	for _, id := range pool {
		if !now[id] {
			t.Fatalf("thread %s of the first decode is gone after ten more: threads made per graph", id)
		}
	}
	c.Close()
	left := 0
	for id := range tasks(t) {
		for _, p := range pool {
			if id == p {
				left++
			}
		}
	}
	if left > len(pool)-5 {
		t.Fatalf("%d of the context's %d threads outlived Close", left, len(pool))
	}
}
