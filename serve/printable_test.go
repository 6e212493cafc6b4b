package serve

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"unicode"

	"github.com/boxproj/box/synth"
)

// TestSyntheticModelsWritePrintableText: the built-in models (the tiny test
// model, whose vocabulary is nearly all byte tokens, and the demo's word
// pieces) sample only printable text: no control characters, no stray
// UTF-8 bytes (U+FFFD), no <unk> (U+2585), whatever the seed.
func TestSyntheticModelsWritePrintableText(t *testing.T) {
	demo, err := synth.EnsureCached(context.Background(), t.TempDir(), synth.Demo())
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []struct{ name, path string }{{"tiny", tinyPath}, {"demo", demo}} {
		t.Run(m.name, func(t *testing.T) {
			ts := start(t, Config{ModelPath: m.path, CtxSize: 512}, nil)
			chars := 0
			for seed := range 30 {
				var out struct {
					Choices []struct{ Text string }
				}
				body := fmt.Sprintf(`{"model":"tiny","prompt":"Once upon a time %d","max_tokens":200,"temperature":1.5,"seed":%d}`, seed, seed)
				if code := postJSON(t, ts.url+"/v1/completions", body, &out); code != 200 {
					t.Fatalf("status %d", code)
				}
				text := out.Choices[0].Text
				chars += len(text)
				if i := strings.IndexFunc(text, func(r rune) bool { return !unicode.IsPrint(r) || r == '\uFFFD' || r == '\u2585' }); i >= 0 {
					t.Fatalf("seed %d: %q at byte %d of %q", seed, text[i:min(i+4, len(text))], i, text)
				}
			}
			if chars < 3000 {
				t.Fatalf("only %d characters in 30 answers", chars)
			}
			t.Logf("%d printable characters", chars)
		})
	}
}
