package synth

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"

	"github.com/boxproj/box/gguf"
)

// Build returns the gguf.File for c: metadata, vocabulary and tensor
// descriptions whose data is generated while the file is written.
//
// Weights (token_embd and output included) are N(0, 1/sqrt(ne0)) in c.Type;
// norm weights are F32 ones. Each row of each tensor draws from its own PCG
// stream seeded from (c.Seed, tensor name, row), so the bytes depend only on
// c, whatever the write concurrency.
//
// Three things are not random, so that the model writes only printable text:
// dimension 0 of every token embedding is 1 and no layer writes to it (row 0
// of attn_output and ffn_down is zero), so after the final norm it is always
// positive; and in output.weight the tokens that would print control
// characters, invalid UTF-8 (stray bytes), "<unk>", "<s>" or "<|im_start|>"
// have -suppress there, so their logits are far below every other token's;
// the end-of-generation tokens have -endDamp, so they stay possible but rare.
func Build(c Config) (*gguf.File, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	wt, _ := c.TensorType()
	voc, err := NewVocab(c.Vocab)
	if err != nil {
		return nil, err
	}
	u32 := func(n int) gguf.Value { return gguf.Uint32(uint32(n)) }
	f := &gguf.File{}
	kv := f.AddKV
	kv("general.architecture", gguf.String("llama"))
	kv("general.name", gguf.String(c.ModelName()))
	kv("general.file_type", gguf.Uint32(c.fileType()))
	if wt == gguf.Q8_0 {
		kv("general.quantization_version", gguf.Uint32(2))
	}
	kv(gguf.KeyAlignment, gguf.Uint32(gguf.DefaultAlignment))
	kv("llama.context_length", u32(c.Ctx))
	kv("llama.embedding_length", u32(c.Embd))
	kv("llama.block_count", u32(c.Layers))
	kv("llama.feed_forward_length", u32(c.FF))
	kv("llama.attention.head_count", u32(c.Heads))
	kv("llama.attention.head_count_kv", u32(c.KVHeads))
	kv("llama.attention.layer_norm_rms_epsilon", gguf.Float32(1e-5))
	kv("llama.rope.freq_base", gguf.Float32(10000))
	kv("llama.rope.dimension_count", u32(c.HeadDim()))
	kv("llama.vocab_size", u32(c.Vocab))
	kv("tokenizer.ggml.model", gguf.String("llama"))
	kv("tokenizer.ggml.pre", gguf.String("default"))
	kv("tokenizer.ggml.tokens", gguf.Strings(voc.Tokens))
	kv("tokenizer.ggml.scores", gguf.Float32s(voc.Scores))
	kv("tokenizer.ggml.token_type", gguf.Int32s(voc.Types))
	kv("tokenizer.ggml.bos_token_id", u32(BOSID))
	kv("tokenizer.ggml.eos_token_id", u32(EOSID))
	kv("tokenizer.ggml.unknown_token_id", u32(UnkID))
	kv("tokenizer.ggml.eot_token_id", u32(ImEndID))
	kv("tokenizer.ggml.add_bos_token", gguf.Bool(true))
	kv("tokenizer.ggml.add_eos_token", gguf.Bool(false))
	// No implicit leading "▁": text then round-trips exactly through
	// tokenize + concatenated pieces (an SPM prefix space would come back
	// as a leading " " unless the caller strips it).
	kv("tokenizer.ggml.add_space_prefix", gguf.Bool(false))
	kv("tokenizer.chat_template", gguf.String(ChatTemplate))

	E, V, F := uint64(c.Embd), uint64(c.Vocab), uint64(c.FF)
	hd := uint64(c.HeadDim())
	Q, KV := uint64(c.Heads)*hd, uint64(c.KVHeads)*hd
	weight := func(name string, ne0, ne1 uint64, rows ...func(row uint64, r []float32)) {
		n := newNormal(c.Seed, name, ne0)
		var g gguf.Source = n
		if len(rows) > 0 {
			g = rowFix{n, rows[0]}
		}
		f.AddTensor(name, wt, []uint64{ne0, ne1}, g)
	}
	norm := func(name string) { f.AddTensor(name, gguf.F32, []uint64{E}, gguf.Const(1)) }
	// The constant dimension, and the layers leaving it alone.
	embd := func(_ uint64, r []float32) { r[0] = 1 }
	keep0 := func(row uint64, r []float32) {
		if row == 0 {
			clear(r)
		}
	}
	output := func(tok uint64, r []float32) {
		switch {
		case unprintable(int(tok)):
			r[0] = -suppress
		case tok == EOSID || tok == ImEndID:
			r[0] = -endDamp
		}
	}

	weight("token_embd.weight", E, V, embd)
	for l := range c.Layers {
		p := fmt.Sprintf("blk.%d.", l)
		norm(p + "attn_norm.weight")
		weight(p+"attn_q.weight", E, Q)
		weight(p+"attn_k.weight", E, KV)
		weight(p+"attn_v.weight", E, KV)
		weight(p+"attn_output.weight", Q, E, keep0)
		norm(p + "ffn_norm.weight")
		weight(p+"ffn_gate.weight", E, F)
		weight(p+"ffn_up.weight", E, F)
		weight(p+"ffn_down.weight", F, E, keep0)
	}
	norm("output_norm.weight")
	weight("output.weight", E, V, output)
	return f, nil
}

// suppress is output.weight's value in dimension 0 for unprintable tokens.
// That dimension of the final hidden state is 1 over the rms of the residual
// stream, about 0.1 to 0.2 in the tiny model (2 random layers), so these
// logits sit 100 and more below the others, whose spread is about 1: never
// sampled, at any temperature a client may ask for.
const suppress = 1000

// endDamp lowers the end-of-generation tokens' logits by 1 to 2, so a text
// of the tiny model, where 2 of the 98 printable tokens end it, runs for
// hundreds of tokens (most of its 200-token texts reach the limit) instead
// of ending after about 30; the demo's, with 4096 tokens, hardly ever ends.
const endDamp = 10

// unprintable says whether the model must never produce token id: a byte
// token outside printable ASCII (a control character, or a byte of UTF-8
// that would come out alone, as U+FFFD), <unk> (which prints as U+2585), or
// a special that is no end of generation.
func unprintable(id int) bool {
	switch {
	case id == UnkID || id == BOSID || id == ImStartID:
		return true
	case id >= FirstByte && id < FirstByte+256:
		b := id - FirstByte
		return b < 0x20 || b > 0x7e
	}
	return false
}

// rowFix is a normal fill with fix applied to each row.
type rowFix struct {
	normal
	fix func(row uint64, r []float32)
}

func (g rowFix) Fill(off int64, dst []float32) error {
	if err := g.normal.Fill(off, dst); err != nil {
		return err
	}
	for i := int64(0); i < int64(len(dst)); i += g.ne0 {
		g.fix(uint64((off+i)/g.ne0), dst[i:i+g.ne0])
	}
	return nil
}

// normal fills rows with N(0, 1/sqrt(ne0)) values from per-row PCG streams.
type normal struct {
	seed uint64 // per tensor
	ne0  int64
	std  float64
}

func newNormal(seed uint64, name string, ne0 uint64) normal {
	h := fnv.New64a()
	h.Write([]byte(name))
	return normal{seed: splitmix64(seed ^ splitmix64(h.Sum64())), ne0: int64(ne0), std: 1 / math.Sqrt(float64(ne0))}
}

func (n normal) Fill(off int64, dst []float32) error {
	if off%n.ne0 != 0 || int64(len(dst))%n.ne0 != 0 {
		return fmt.Errorf("range [%d,+%d) is not whole rows of %d", off, len(dst), n.ne0)
	}
	pcg := rand.NewPCG(0, 0)
	r := rand.New(pcg)
	for i := int64(0); i < int64(len(dst)); i += n.ne0 {
		row := uint64((off + i) / n.ne0)
		pcg.Seed(n.seed, splitmix64(n.seed+(row+1)*0x9e3779b97f4a7c15))
		for j, out := i, dst[i:i+n.ne0]; j < i+n.ne0; j++ {
			out[j-i] = float32(r.NormFloat64() * n.std)
		}
	}
	return nil
}

func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

// Write generates the model described by c into path, atomically (see
// gguf.WriteFile), using all CPUs. opts are passed to gguf.WriteFile.
func Write(ctx context.Context, path string, c Config, opts ...gguf.WriteOption) error {
	f, err := Build(c)
	if err != nil {
		return err
	}
	return gguf.WriteFile(ctx, path, f, opts...)
}

// CacheName is the file name EnsureCached uses: <name>-<type>-s<seed>-r<revision>.gguf.
func CacheName(c Config) string {
	return fmt.Sprintf("%s-%s-s%d-r%d.gguf", c.ModelName(), c.Type, c.Seed, revision)
}

// revision is part of CacheName and goes up whenever Build writes other
// bytes for the same Config, since EnsureCached trusts a file of the right
// size. 2: <|endoftext|> for </s>, printable output only.
const revision = 2

// DefaultCacheDir is where box keeps synthetic models unless told
// otherwise (--cache-dir): $XDG_CACHE_HOME/box, or ~/.cache/box.
func DefaultCacheDir() string {
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "box")
	}
	return filepath.Join(os.TempDir(), "box-cache")
}

// EnsureCached returns dir/CacheName(c), writing the model there first
// unless a file of exactly the expected size already exists. dir is created
// if needed. Concurrent callers are safe: each writes its own temporary file
// and the rename is atomic.
func EnsureCached(ctx context.Context, dir string, c Config, opts ...gguf.WriteOption) (string, error) {
	f, err := Build(c)
	if err != nil {
		return "", err
	}
	want, err := f.Size()
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, CacheName(c))
	st, err := os.Stat(path)
	switch {
	case err == nil && st.Mode().IsRegular() && st.Size() == want:
		return path, nil
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("synth: cache %s: %w", path, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("synth: cache dir: %w", err)
	}
	if err := gguf.WriteFile(ctx, path, f, opts...); err != nil {
		return "", err
	}
	return path, nil
}
