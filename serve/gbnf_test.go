package serve

import (
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/boxproj/box/llama"
)

// Every grammar the converter writes is one llama.cpp accepts; what it
// cannot express is refused with the keyword named.
func TestSchemaToGBNF(t *testing.T) {
	ts := start(t, Config{}, nil)
	m, _, done, _ := ts.ready()
	defer done()
	tests := []struct {
		name, schema, err string
	}{
		{"object", `{"type":"object","properties":{"a":{"type":"string"},"b":{"type":"integer"}},"required":["a"]}`, ""},
		{"all optional", `{"type":"object","properties":{"a":{"type":"number"},"b":{"type":"null"}}}`, ""},
		{"empty object", `{"type":"object"}`, ""},
		{"nested array", `{"type":"array","items":{"type":"array","items":{"type":"boolean"},"minItems":1,"maxItems":2}}`, ""},
		{"no items", `{"type":"array","maxItems":0}`, ""},
		{"any value", `{"description":"anything"}`, ""},
		{"true schema", `true`, ""},
		{"enum and const", `{"anyOf":[{"enum":[1,"two",null]},{"const":{"k":[1]}}]}`, ""},
		{"type list", `{"type":["string","null"],"maxLength":3}`, ""},
		{"quotes in names", `{"type":"object","properties":{"say \"hi\"":{"const":"a\\b"}},"required":["say \"hi\""]}`, ""},
		{"pattern", `{"type":"string","pattern":"x"}`, `keyword "pattern"`},
		{"ref", `{"$ref":"#/defs/a"}`, `keyword "$ref"`},
		{"extra properties", `{"type":"object","additionalProperties":true}`, "additionalProperties"},
		{"required unknown", `{"type":"object","properties":{},"required":["x"]}`, `"x" is not in properties`},
		{"bad type", `{"type":"date"}`, `type "date"`},
		{"not an object", `[1]`, "must be an object"},
		{"items limits", `{"type":"array","minItems":3,"maxItems":2}`, "maxItems is below minItems"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g, err := schemaToGBNF(json.RawMessage(tc.schema))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			smp, err := m.NewSampler(llama.SamplerParams{Grammar: g})
			if err != nil {
				t.Fatalf("llama.cpp refuses the grammar: %v\n%s", err, g)
			}
			smp.Close()
		})
	}
	smp, err := m.NewSampler(llama.SamplerParams{Grammar: jsonGrammar})
	if err != nil {
		t.Fatalf("json_object grammar: %v", err)
	}
	smp.Close()
}

// While loading, /health reports progress; after a load over a worker the
// bytes uploaded there are known.
func TestHealthLoadingProgress(t *testing.T) {
	s := New(Config{ModelPath: tinyPath}, quietLog())
	s.progress.Store(0x3f000000) // 0.5
	rec := &recorder{h: map[string][]string{}}
	s.Handler().ServeHTTP(rec, mustReq("GET", "/health"))
	var body struct {
		Status   string  `json:"status"`
		Progress float64 `json:"progress"`
		Percent  float64 `json:"percent"`
	}
	if err := json.Unmarshal([]byte(rec.body.String()), &body); err != nil || rec.code != 503 || body.Status != "loading" ||
		body.Progress != 0.5 || body.Percent != 50 {
		t.Fatalf("health while loading: %d %s", rec.code, rec.body.String())
	}
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
