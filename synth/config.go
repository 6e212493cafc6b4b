// Package synth generates synthetic llama-architecture GGUF models with
// seeded random weights and a small SentencePiece-style (SPM) byte-fallback
// vocabulary. The files load and run in llama.cpp; their output is noise, but
// their shapes, sizes and speed are those of a real model of the same
// dimensions, which is what tests, demos and benchmarks need.
package synth

import (
	"fmt"
	"sort"
	"strings"

	"github.com/boxproj/box/gguf"
)

// Config describes a synthetic model.
type Config struct {
	Layers  int // transformer blocks
	Embd    int // embedding width (n_embd)
	Heads   int // attention heads
	KVHeads int // key/value heads (grouped-query attention); Heads % KVHeads == 0
	FF      int // feed-forward width
	Ctx     int // training context length written to the metadata
	Vocab   int // vocabulary size, at least MinVocab
	Type    string
	Seed    uint64
	Name    string // general.name; also the cache file name prefix ("synth" when empty)
}

// Weight types.
const (
	TypeF32  = "f32"
	TypeF16  = "f16"
	TypeQ8_0 = "q8_0"
)

// Limits that make absurd configurations fail fast instead of filling a disk.
const (
	MaxLayers  = 256
	MaxEmbd    = 32768
	MaxHeads   = 1024
	MaxFF      = 131072
	MaxCtx     = 1 << 20
	MaxVocab   = 262144
	MaxParams  = 20_000_000_000
	MaxNameLen = 64
)

// DefaultName is the model name used when Config.Name is empty.
const DefaultName = "synth"

var presets = map[string]Config{
	"tiny": {Layers: 2, Embd: 128, Heads: 4, KVHeads: 2, FF: 352, Ctx: 512, Vocab: MinVocab, Type: TypeF32, Seed: 1, Name: "synth-tiny"},
	"1b":   {Layers: 16, Embd: 2048, Heads: 32, KVHeads: 4, FF: 5632, Ctx: 2048, Vocab: 32000, Type: TypeQ8_0, Seed: 1, Name: "synth-1b"},
}

// Demo is the built-in demo model (box serve --demo): the tiny preset with a
// vocabulary of 4096 word pieces, so that its (random) answers read as
// gibberish words rather than stray bytes.
func Demo() Config {
	c := presets["tiny"]
	c.Vocab, c.Name = 4096, "synth-demo"
	return c
}

// Presets lists the preset names, sorted.
func Presets() []string {
	names := make([]string, 0, len(presets))
	for n := range presets {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Preset returns a named configuration: "tiny" (2 layers, embd 128, the
// minimum vocabulary, f32, about 2 MB) or "1b" (16 layers, embd 2048, ff 5632,
// 32 heads / 4 KV heads, vocab 32000, q8_0, about 890 MB).
func Preset(name string) (Config, error) {
	c, ok := presets[strings.ToLower(name)]
	if !ok {
		return Config{}, fmt.Errorf("synth: unknown preset %q (known: %s)", name, strings.Join(Presets(), ", "))
	}
	return c, nil
}

// TensorType maps Config.Type to the gguf tensor type of the weight matrices.
func (c Config) TensorType() (gguf.TensorType, error) {
	switch c.Type {
	case TypeF32:
		return gguf.F32, nil
	case TypeF16:
		return gguf.F16, nil
	case TypeQ8_0:
		return gguf.Q8_0, nil
	}
	return 0, fmt.Errorf("synth: unknown type %q (want f32, f16 or q8_0)", c.Type)
}

// fileType is the general.file_type value (enum llama_ftype) for the type.
func (c Config) fileType() uint32 {
	switch c.Type {
	case TypeF16:
		return 1
	case TypeQ8_0:
		return 7
	}
	return 0
}

// HeadDim is Embd / Heads.
func (c Config) HeadDim() int { return c.Embd / c.Heads }

// ModelName is Name, or DefaultName when empty.
func (c Config) ModelName() string {
	if c.Name == "" {
		return DefaultName
	}
	return c.Name
}

// Validate reports every problem with c in one error, separated by "; ".
func (c Config) Validate() error {
	var errs []string
	bad := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }
	rng := func(name string, v, lo, hi int) bool {
		if v < lo || v > hi {
			bad("%s = %d, want %d to %d", name, v, lo, hi)
			return false
		}
		return true
	}
	okL := rng("layers", c.Layers, 1, MaxLayers)
	okE := rng("embd", c.Embd, 1, MaxEmbd)
	okH := rng("heads", c.Heads, 1, MaxHeads)
	okKV := rng("kv heads", c.KVHeads, 1, MaxHeads)
	okF := rng("ff", c.FF, 1, MaxFF)
	rng("ctx", c.Ctx, 1, MaxCtx)
	okV := rng("vocab", c.Vocab, MinVocab, MaxVocab)
	if c.Vocab < MinVocab {
		errs[len(errs)-1] = fmt.Sprintf("vocab = %d is below the minimum %d (3 specials, 256 byte tokens, 2 chat tokens and \"▁\")", c.Vocab, MinVocab)
	}
	if okE && okH {
		if c.Embd%c.Heads != 0 {
			bad("embd %d is not a multiple of heads %d", c.Embd, c.Heads)
		} else if c.HeadDim()%2 != 0 {
			bad("head dimension embd/heads = %d must be even (RoPE rotates pairs)", c.HeadDim())
		}
	}
	if okH && okKV && c.Heads%c.KVHeads != 0 {
		bad("heads %d is not a multiple of kv heads %d", c.Heads, c.KVHeads)
	}
	if _, err := c.TensorType(); err != nil {
		bad("type %q is not f32, f16 or q8_0", c.Type)
	} else if c.Type == TypeQ8_0 {
		if okE && c.Embd%gguf.QK8_0 != 0 {
			bad("embd %d must be a multiple of %d for q8_0", c.Embd, gguf.QK8_0)
		}
		if okF && c.FF%gguf.QK8_0 != 0 {
			bad("ff %d must be a multiple of %d for q8_0", c.FF, gguf.QK8_0)
		}
	}
	if len(c.Name) > MaxNameLen || strings.ContainsAny(c.Name, "/\\\x00") || c.Name == "." || c.Name == ".." {
		bad("name %q must be at most %d bytes without path separators", c.Name, MaxNameLen)
	}
	if okL && okE && okH && okKV && okF && okV && len(errs) == 0 {
		if p := ParamCount(c); p > MaxParams {
			bad("%d parameters exceed the limit of %d", p, int64(MaxParams))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("synth: invalid config: %s", strings.Join(errs, "; "))
	}
	return nil
}

// ParamCount is the number of weights of the model (c need not be valid,
// but the result only means something when it is).
func ParamCount(c Config) int64 {
	e, v, f := int64(c.Embd), int64(c.Vocab), int64(c.FF)
	var hd int64
	if c.Heads > 0 {
		hd = e / int64(c.Heads)
	}
	q := int64(c.Heads) * hd
	kv := int64(c.KVHeads) * hd
	perLayer := e + e*q + 2*e*kv + q*e + e + 3*e*f
	return 2*e*v + e + int64(c.Layers)*perLayer
}

// FileSize is the exact size of the file Write produces for c.
func FileSize(c Config) (int64, error) {
	f, err := Build(c)
	if err != nil {
		return 0, err
	}
	return f.Size()
}
