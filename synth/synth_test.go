package synth

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	parser "github.com/gpustack/gguf-parser-go"

	"github.com/boxproj/box/gguf"
)

func tiny(t *testing.T) Config {
	t.Helper()
	c, err := Preset("tiny")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestPresets(t *testing.T) {
	tests := []struct {
		name   string
		want   Config
		params int64
		size   int64
	}{
		{"tiny", Config{Layers: 2, Embd: 128, Heads: 4, KVHeads: 2, FF: 352, Ctx: 512, Vocab: MinVocab, Type: "f32", Seed: 1, Name: "synth-tiny"}, 436352, 1753760},
		// 835.78 M params and 889 MB, as in docs/engine-notes.md §2.
		{"1b", Config{Layers: 16, Embd: 2048, Heads: 32, KVHeads: 4, FF: 5632, Ctx: 2048, Vocab: 32000, Type: "q8_0", Seed: 1, Name: "synth-1b"}, 835782656, 888875104},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Preset(tc.name)
			if err != nil {
				t.Fatal(err)
			}
			if c != tc.want {
				t.Errorf("Preset = %+v, want %+v", c, tc.want)
			}
			if err := c.Validate(); err != nil {
				t.Error(err)
			}
			if p := ParamCount(c); p != tc.params {
				t.Errorf("ParamCount = %d, want %d", p, tc.params)
			}
			if s, err := FileSize(c); err != nil || s != tc.size {
				t.Errorf("FileSize = %d, %v; want %d", s, err, tc.size)
			}
		})
	}
	if _, err := Preset("7b"); err == nil || !strings.Contains(err.Error(), "1b, tiny") {
		t.Errorf("unknown preset error = %v", err)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Config)
		want   string // "" = valid
	}{
		{"tiny", func(c *Config) {}, ""},
		{"f16", func(c *Config) { c.Type = "f16"; c.Embd = 100; c.Heads = 10; c.KVHeads = 5; c.FF = 30 }, ""},
		{"q8_0", func(c *Config) { c.Type = "q8_0" }, ""},
		{"empty name", func(c *Config) { c.Name = "" }, ""},
		{"zero layers", func(c *Config) { c.Layers = 0 }, "layers = 0, want 1 to 256"},
		{"negative embd", func(c *Config) { c.Embd = -128 }, "embd = -128"},
		{"zero heads", func(c *Config) { c.Heads = 0 }, "heads = 0"},
		{"zero kv heads", func(c *Config) { c.KVHeads = 0 }, "kv heads = 0"},
		{"zero ff", func(c *Config) { c.FF = 0 }, "ff = 0"},
		{"zero ctx", func(c *Config) { c.Ctx = 0 }, "ctx = 0"},
		{"small vocab", func(c *Config) { c.Vocab = 261 }, "vocab = 261 is below the minimum 262"},
		{"huge vocab", func(c *Config) { c.Vocab = 1 << 30 }, "vocab = 1073741824"},
		{"absurd layers", func(c *Config) { c.Layers = 100000 }, "layers = 100000"},
		{"too many params", func(c *Config) { c.Layers = 256; c.Embd = 16384; c.Heads = 128; c.KVHeads = 128; c.FF = 65536 }, "parameters exceed the limit"},
		{"embd not multiple of heads", func(c *Config) { c.Heads = 3; c.KVHeads = 1 }, "embd 128 is not a multiple of heads 3"},
		{"odd head dim", func(c *Config) { c.Embd = 132; c.Heads = 4 }, "head dimension embd/heads = 33 must be even"},
		{"heads not multiple of kv heads", func(c *Config) { c.KVHeads = 3 }, "heads 4 is not a multiple of kv heads 3"},
		{"q8_0 embd", func(c *Config) { c.Type = "q8_0"; c.Embd = 136; c.Heads = 4 }, "embd 136 must be a multiple of 32 for q8_0"},
		{"q8_0 ff", func(c *Config) { c.Type = "q8_0"; c.FF = 350 }, "ff 350 must be a multiple of 32 for q8_0"},
		{"unknown type", func(c *Config) { c.Type = "q4_0" }, `type "q4_0" is not f32, f16 or q8_0`},
		{"path in name", func(c *Config) { c.Name = "../x" }, "without path separators"},
		{"several problems", func(c *Config) { c.Layers = 0; c.Type = "bf16" }, "layers = 0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := tiny(t)
			tc.mutate(&c)
			err := c.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate() = %v, want error containing %q", err, tc.want)
			}
			if err := Write(context.Background(), filepath.Join(t.TempDir(), "x.gguf"), c); err == nil {
				t.Error("Write accepted an invalid config")
			}
		})
	}
	c := tiny(t)
	c.Layers, c.Type = 0, "bf16"
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "bf16") {
		t.Errorf("all problems should be reported: %v", err)
	}
}

func TestVocab(t *testing.T) {
	for _, n := range []int{MinVocab, 263, 1000, 32000, MaxVocab} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			v, err := NewVocab(n)
			if err != nil {
				t.Fatal(err)
			}
			if len(v.Tokens) != n || len(v.Scores) != n || len(v.Types) != n {
				t.Fatalf("lengths %d/%d/%d, want %d", len(v.Tokens), len(v.Scores), len(v.Types), n)
			}
			seen := map[string]int{}
			for id, tok := range v.Tokens {
				if prev, dup := seen[tok]; dup {
					t.Fatalf("piece %q at ids %d and %d", tok, prev, id)
				}
				seen[tok] = id
				if tok == "" || !utf8.ValidString(tok) {
					t.Fatalf("id %d: bad piece %q", id, tok)
				}
			}
			for b := 0; b < 256; b++ {
				piece := fmt.Sprintf("<0x%02X>", b)
				id, ok := seen[piece]
				if !ok || v.Types[id] != TokenByte || id != FirstByte+b {
					t.Fatalf("byte %#02x: piece %q id %d ok %v", b, piece, id, ok)
				}
			}
			fixed := []struct {
				id    int
				piece string
				typ   int32
			}{
				{UnkID, "<unk>", TokenUnknown}, {BOSID, "<s>", TokenControl}, {EOSID, "<|endoftext|>", TokenControl},
				{ImStartID, "<|im_start|>", TokenControl}, {ImEndID, "<|im_end|>", TokenControl},
				{SpaceID, "▁", TokenNormal},
			}
			for _, f := range fixed {
				if v.Tokens[f.id] != f.piece || v.Types[f.id] != f.typ || v.Scores[f.id] != 0 {
					t.Errorf("id %d = %q type %d score %g", f.id, v.Tokens[f.id], v.Types[f.id], v.Scores[f.id])
				}
			}
			for id := 0; id < MinVocab; id++ {
				if v.Scores[id] != 0 {
					t.Errorf("id %d score %g, want 0", id, v.Scores[id])
				}
			}
			for id := SpaceID; id < n; id++ {
				if v.Types[id] != TokenNormal {
					t.Fatalf("id %d type %d", id, v.Types[id])
				}
				if id > MinVocab && !(v.Scores[id] < v.Scores[id-1]) {
					t.Fatalf("scores not decreasing at %d", id)
				}
			}
			if n >= 1000 {
				for _, p := range []string{"▁", "a", "~", "▁t", "▁the", "▁Hello"} {
					if _, ok := seen[p]; !ok {
						t.Errorf("piece %q missing", p)
					}
				}
			}
		})
	}
	if _, err := NewVocab(MinVocab - 1); err == nil {
		t.Error("NewVocab below minimum succeeded")
	}
	a, _ := NewVocab(5000)
	b, _ := NewVocab(5000)
	if fmt.Sprint(a) != fmt.Sprint(b) {
		t.Error("vocab is not deterministic")
	}
}

func sha(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

func TestTinyFile(t *testing.T) {
	c := tiny(t)
	path := filepath.Join(t.TempDir(), "tiny.gguf")
	start := time.Now()
	if err := Write(context.Background(), path, c); err != nil {
		t.Fatal(err)
	}
	t.Logf("tiny written in %v", time.Since(start))
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() < 1<<20 || st.Size() > 5<<20 {
		t.Errorf("tiny file is %d bytes, want a few MB", st.Size())
	}
	if want, _ := FileSize(c); st.Size() != want {
		t.Errorf("size %d, FileSize %d", st.Size(), want)
	}

	gf, err := parser.ParseGGUFFile(path)
	if err != nil {
		t.Fatalf("gguf-parser: %v", err)
	}
	arch := gf.Architecture()
	if arch.Architecture != "llama" || arch.EmbeddingLength != 128 || arch.BlockCount != 2 ||
		arch.AttentionHeadCount != 4 || arch.AttentionHeadCountKV != 2 || fmt.Sprint(arch.FeedForwardLength) != "[352 352]" ||
		arch.MaximumContextLength != 512 || arch.VocabularyLength != MinVocab {
		t.Errorf("architecture = %+v", arch)
	}
	tok := gf.Tokenizer()
	if tok.Model != "llama" || tok.TokensLength != MinVocab || tok.BOSTokenID != 1 || tok.EOSTokenID != 2 || tok.EOTTokenID != ImEndID {
		t.Errorf("tokenizer = %+v", tok)
	}
	if uint64(gf.ModelParameters) != uint64(ParamCount(c)) {
		t.Errorf("parser counts %d params, ParamCount %d", gf.ModelParameters, ParamCount(c))
	}

	// Exact key types: llama.cpp checks them strictly.
	types := map[string]parser.GGUFMetadataValueType{
		"general.architecture":                   parser.GGUFMetadataValueTypeString,
		"general.name":                           parser.GGUFMetadataValueTypeString,
		"general.file_type":                      parser.GGUFMetadataValueTypeUint32,
		"general.alignment":                      parser.GGUFMetadataValueTypeUint32,
		"llama.context_length":                   parser.GGUFMetadataValueTypeUint32,
		"llama.embedding_length":                 parser.GGUFMetadataValueTypeUint32,
		"llama.block_count":                      parser.GGUFMetadataValueTypeUint32,
		"llama.feed_forward_length":              parser.GGUFMetadataValueTypeUint32,
		"llama.attention.head_count":             parser.GGUFMetadataValueTypeUint32,
		"llama.attention.head_count_kv":          parser.GGUFMetadataValueTypeUint32,
		"llama.attention.layer_norm_rms_epsilon": parser.GGUFMetadataValueTypeFloat32,
		"llama.rope.freq_base":                   parser.GGUFMetadataValueTypeFloat32,
		"llama.rope.dimension_count":             parser.GGUFMetadataValueTypeUint32,
		"llama.vocab_size":                       parser.GGUFMetadataValueTypeUint32,
		"tokenizer.ggml.model":                   parser.GGUFMetadataValueTypeString,
		"tokenizer.ggml.pre":                     parser.GGUFMetadataValueTypeString,
		"tokenizer.ggml.tokens":                  parser.GGUFMetadataValueTypeArray,
		"tokenizer.ggml.scores":                  parser.GGUFMetadataValueTypeArray,
		"tokenizer.ggml.token_type":              parser.GGUFMetadataValueTypeArray,
		"tokenizer.ggml.bos_token_id":            parser.GGUFMetadataValueTypeUint32,
		"tokenizer.ggml.eos_token_id":            parser.GGUFMetadataValueTypeUint32,
		"tokenizer.ggml.unknown_token_id":        parser.GGUFMetadataValueTypeUint32,
		"tokenizer.ggml.eot_token_id":            parser.GGUFMetadataValueTypeUint32,
		"tokenizer.ggml.add_bos_token":           parser.GGUFMetadataValueTypeBool,
		"tokenizer.ggml.add_eos_token":           parser.GGUFMetadataValueTypeBool,
		"tokenizer.ggml.add_space_prefix":        parser.GGUFMetadataValueTypeBool,
		"tokenizer.chat_template":                parser.GGUFMetadataValueTypeString,
	}
	kvs := gf.Header.MetadataKV
	if len(kvs) != len(types) {
		t.Errorf("%d keys, want %d", len(kvs), len(types))
	}
	for key, typ := range types {
		v, ok := kvs.Get(key)
		if !ok || v.ValueType != typ {
			t.Errorf("key %s: found %v type %v, want %v", key, ok, v.ValueType, typ)
		}
	}
	arrays := map[string]parser.GGUFMetadataValueType{
		"tokenizer.ggml.tokens":     parser.GGUFMetadataValueTypeString,
		"tokenizer.ggml.scores":     parser.GGUFMetadataValueTypeFloat32,
		"tokenizer.ggml.token_type": parser.GGUFMetadataValueTypeInt32,
	}
	for key, elem := range arrays {
		v, _ := kvs.Get(key)
		if a := v.ValueArray(); a.Type != elem || a.Len != MinVocab {
			t.Errorf("%s: array of %v × %d", key, a.Type, a.Len)
		}
	}
	u32 := func(key string) uint32 { v, _ := kvs.Get(key); return v.ValueUint32() }
	if u32("general.file_type") != 0 || u32("llama.rope.dimension_count") != 32 || u32("general.alignment") != 32 {
		t.Error("file_type, rope.dimension_count or alignment wrong")
	}
	if v, _ := kvs.Get("tokenizer.chat_template"); !strings.Contains(v.ValueString(), "<|im_start|>") {
		t.Error("chat template is not ChatML")
	}
	if v, _ := kvs.Get("llama.attention.layer_norm_rms_epsilon"); v.ValueFloat32() != 1e-5 {
		t.Errorf("rms eps %v", v.ValueFloat32())
	}

	// Tensors: names, shapes, types, and the statistics of the data.
	if len(gf.TensorInfos) != 3+9*c.Layers {
		t.Fatalf("%d tensors, want %d", len(gf.TensorInfos), 3+9*c.Layers)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	shapes := map[string][]uint64{
		"token_embd.weight":        {128, MinVocab},
		"output.weight":            {128, MinVocab},
		"output_norm.weight":       {128},
		"blk.1.attn_norm.weight":   {128},
		"blk.1.attn_q.weight":      {128, 128},
		"blk.1.attn_k.weight":      {128, 64},
		"blk.1.attn_v.weight":      {128, 64},
		"blk.1.attn_output.weight": {128, 128},
		"blk.1.ffn_norm.weight":    {128},
		"blk.1.ffn_gate.weight":    {128, 352},
		"blk.1.ffn_up.weight":      {128, 352},
		"blk.1.ffn_down.weight":    {352, 128},
		"blk.0.ffn_down.weight":    {352, 128},
		"blk.0.attn_output.weight": {128, 128},
		"blk.0.attn_norm.weight":   {128},
		"blk.0.attn_q.weight":      {128, 128},
		"blk.0.attn_k.weight":      {128, 64},
		"blk.0.attn_v.weight":      {128, 64},
		"blk.0.ffn_norm.weight":    {128},
		"blk.0.ffn_gate.weight":    {128, 352},
		"blk.0.ffn_up.weight":      {128, 352},
	}
	for _, ti := range gf.TensorInfos {
		want, ok := shapes[ti.Name]
		if !ok {
			t.Errorf("unexpected tensor %s", ti.Name)
			continue
		}
		if fmt.Sprint(ti.Dimensions) != fmt.Sprint(want) || ti.Type != parser.GGMLTypeF32 {
			t.Errorf("%s: %v %v, want %v f32", ti.Name, ti.Dimensions, ti.Type, want)
		}
		start := gf.TensorDataStartOffset + int64(ti.Offset)
		ne0 := int(ti.Dimensions[0])
		// What is not random (see Build): dimension 0 of token_embd (1) and
		// output (-suppress for unprintable tokens, else random), row 0 of
		// attn_output and ffn_down (0).
		fixed := func(i int) (float64, bool) {
			switch {
			case ti.Name == "token_embd.weight" && i%ne0 == 0:
				return 1, true
			case ti.Name == "output.weight" && i%ne0 == 0 && unprintable(i/ne0):
				return -suppress, true
			case ti.Name == "output.weight" && i%ne0 == 0 && (i/ne0 == EOSID || i/ne0 == ImEndID):
				return -endDamp, true
			case (strings.HasSuffix(ti.Name, "attn_output.weight") || strings.HasSuffix(ti.Name, "ffn_down.weight")) && i < ne0:
				return 0, true
			}
			return 0, false
		}
		var sum, sq float64
		n := 0
		for i := range int(ti.Elements()) {
			v := float64(math.Float32frombits(binary.LittleEndian.Uint32(raw[start+int64(4*i):])))
			if want, ok := fixed(i); ok {
				if v != want {
					t.Fatalf("%s[%d] = %g, want %g", ti.Name, i, v, want)
				}
				continue
			}
			sum += v
			sq += v * v
			n++
		}
		mean, std := sum/float64(n), math.Sqrt(sq/float64(n)-(sum/float64(n))*(sum/float64(n)))
		if strings.HasSuffix(ti.Name, "norm.weight") {
			if mean != 1 || std != 0 {
				t.Errorf("%s: norm weights mean %g std %g, want all 1", ti.Name, mean, std)
			}
			continue
		}
		wantStd := 1 / math.Sqrt(float64(ti.Dimensions[0]))
		if math.Abs(mean) > 4*wantStd/math.Sqrt(float64(n)) || math.Abs(std/wantStd-1) > 0.03 {
			t.Errorf("%s: mean %g std %g, want 0 and %g", ti.Name, mean, std, wantStd)
		}
	}
}

func TestTypes(t *testing.T) {
	for _, tc := range []struct {
		typ      string
		ggml     parser.GGMLType
		fileType uint32
	}{
		{"f32", parser.GGMLTypeF32, 0},
		{"f16", parser.GGMLTypeF16, 1},
		{"q8_0", parser.GGMLTypeQ8_0, 7},
	} {
		t.Run(tc.typ, func(t *testing.T) {
			c := tiny(t)
			c.Type = tc.typ
			path := filepath.Join(t.TempDir(), "m.gguf")
			if err := Write(context.Background(), path, c); err != nil {
				t.Fatal(err)
			}
			gf, err := parser.ParseGGUFFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if v, _ := gf.Header.MetadataKV.Get("general.file_type"); v.ValueUint32() != tc.fileType {
				t.Errorf("file_type %d, want %d", v.ValueUint32(), tc.fileType)
			}
			for _, ti := range gf.TensorInfos {
				want := tc.ggml
				if strings.HasSuffix(ti.Name, "norm.weight") {
					want = parser.GGMLTypeF32
				}
				if ti.Type != want {
					t.Errorf("%s: type %v, want %v", ti.Name, ti.Type, want)
				}
				if ti.Offset%32 != 0 {
					t.Errorf("%s: offset %d not aligned", ti.Name, ti.Offset)
				}
			}
			if st, _ := os.Stat(path); st != nil {
				if want, _ := FileSize(c); st.Size() != want {
					t.Errorf("size %d, FileSize %d", st.Size(), want)
				}
			}
		})
	}
}

func TestDeterminism(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, c Config, opts ...gguf.WriteOption) [32]byte {
		path := filepath.Join(dir, name)
		if err := Write(context.Background(), path, c, opts...); err != nil {
			t.Fatal(err)
		}
		return sha(t, path)
	}
	c := tiny(t)
	c.Type = "q8_0"
	c.Vocab = 3000
	a := write("a", c)
	b := write("b", c, gguf.WithConcurrency(1))
	d := write("d", c, gguf.WithConcurrency(5))
	if a != b || a != d {
		t.Error("same config gave different bytes")
	}
	c2 := c
	c2.Seed++
	if write("e", c2) == a {
		t.Error("different seed gave identical bytes")
	}
}

func TestWeightsDifferAcrossTensorsAndRows(t *testing.T) {
	n1 := newNormal(1, "blk.0.attn_q.weight", 64)
	n2 := newNormal(1, "blk.0.attn_k.weight", 64)
	a, b := make([]float32, 128), make([]float32, 64)
	if err := n1.Fill(0, a); err != nil {
		t.Fatal(err)
	}
	if err := n2.Fill(0, b); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(a[:64]) == fmt.Sprint(a[64:]) || fmt.Sprint(a[:64]) == fmt.Sprint(b) {
		t.Error("rows or tensors share a random stream")
	}
	// A chunk starting at row 1 reproduces row 1 of the whole fill.
	c := make([]float32, 64)
	if err := n1.Fill(64, c); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(c) != fmt.Sprint(a[64:]) {
		t.Error("row 1 depends on how the tensor is chunked")
	}
	if err := n1.Fill(3, c); err == nil {
		t.Error("Fill accepted a range that is not whole rows")
	}
}

func TestEnsureCached(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cache", "models")
	c := tiny(t)
	ctx := context.Background()
	path, err := EnsureCached(ctx, dir, c)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "synth-tiny-f32-s1-r2.gguf"); path != want {
		t.Errorf("path %s, want %s", path, want)
	}
	sum := sha(t, path)
	old := time.Now().Add(-time.Hour).Truncate(time.Second)
	if err := os.Chtimes(path, old, old); err != nil {
		t.Fatal(err)
	}
	if p2, err := EnsureCached(ctx, dir, c); err != nil || p2 != path {
		t.Fatalf("second call: %s %v", p2, err)
	}
	if st, _ := os.Stat(path); !st.ModTime().Equal(old) {
		t.Error("cached file was rewritten")
	}
	// A file of the wrong size (say truncated by hand) is regenerated.
	if err := os.Truncate(path, 1000); err != nil {
		t.Fatal(err)
	}
	if _, err := EnsureCached(ctx, dir, c); err != nil {
		t.Fatal(err)
	}
	if sha(t, path) != sum {
		t.Error("regenerated file differs")
	}
	// Another seed is another file.
	c.Seed = 7
	c.Name = ""
	p3, err := EnsureCached(ctx, dir, c)
	if err != nil || filepath.Base(p3) != "synth-f32-s7-r2.gguf" {
		t.Errorf("p3 = %s, %v", p3, err)
	}
	c.Layers = 0
	if _, err := EnsureCached(ctx, dir, c); err == nil {
		t.Error("invalid config accepted")
	}
}

func TestWriteCancelledLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := Write(ctx, filepath.Join(dir, "m.gguf"), tiny(t))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("left %d files", len(ents))
	}
	if _, err := EnsureCached(ctx, dir, tiny(t)); !errors.Is(err, context.Canceled) {
		t.Errorf("EnsureCached err = %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("left %d files", len(ents))
	}
}

// The 1b preset is checked without writing 889 MB.
func TestOneBShape(t *testing.T) {
	c, _ := Preset("1b")
	f, err := Build(c)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Tensors) != 3+9*16 {
		t.Errorf("%d tensors", len(f.Tensors))
	}
	for _, tn := range f.Tensors[:6] {
		t.Logf("%s %v %v", tn.Name, tn.Type, tn.Dims)
	}
	if tn := f.Tensors[3]; tn.Name != "blk.0.attn_k.weight" || fmt.Sprint(tn.Dims) != "[2048 256]" || tn.Type != gguf.Q8_0 {
		t.Errorf("attn_k = %s %v %v", tn.Name, tn.Dims, tn.Type)
	}
	l, err := f.Layout()
	if err != nil || l.Size != 888875104 || l.DataStart%32 != 0 {
		t.Errorf("layout size %d start %d err %v", l.Size, l.DataStart, err)
	}
}

// TestOnlyPrintableTokensStayLikely: every token the model may produce
// (not suppressed in output.weight) prints as printable text, or ends the
// generation; the suppressed ones are the rest.
func TestOnlyPrintableTokensStayLikely(t *testing.T) {
	v, err := NewVocab(Demo().Vocab)
	if err != nil {
		t.Fatal(err)
	}
	for id, piece := range v.Tokens {
		var text string
		switch v.Types[id] {
		case TokenNormal:
			text = strings.ReplaceAll(piece, spaceMark, " ")
		case TokenByte:
			var b byte
			fmt.Sscanf(piece, "<0x%02X>", &b)
			text = string([]byte{b})
		case TokenUnknown:
			text = "\u2585" // what llama.cpp prints for <unk>
		case TokenControl:
			if id == EOSID || id == ImEndID {
				if unprintable(id) {
					t.Errorf("end-of-generation token %q is suppressed", piece)
				}
				continue
			}
			text = piece // a special in the middle of a text
		}
		printable := utf8.ValidString(text) && v.Types[id] != TokenUnknown && v.Types[id] != TokenControl &&
			!strings.ContainsFunc(text, func(r rune) bool { return !unicode.IsPrint(r) })
		if printable == unprintable(id) {
			t.Errorf("token %d %q: printable %v, suppressed %v", id, piece, printable, unprintable(id))
		}
	}
}
