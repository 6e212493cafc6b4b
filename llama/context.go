package llama

/*
#include <stdlib.h>
#include "llama.h"
#include "ggml-cpu.h"

// box_attach_pool gives the context one CPU thread pool of n threads for
// decoding and prompts alike. Without one, ggml creates threads for every
// graph and joins them after it.
static struct ggml_threadpool *box_attach_pool(struct llama_context *c, int n) {
	struct ggml_threadpool_params p = ggml_threadpool_params_default(n);
	// Asleep until the first graph; after each, ggml's default spin
	// (poll 50, as llama-bench and llama-server run) keeps the threads
	// ready for the next token's graph, then they sleep.
	p.paused = true;
	p.poll = 50;
	struct ggml_threadpool *tp = ggml_threadpool_new(&p);
	if (tp) llama_attach_threadpool(c, tp, tp);
	return tp;
}
*/
import "C"

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"unsafe"
)

// ContextParams size a context: its KV cache and batch.
type ContextParams struct {
	NCtx         int // tokens of context; 0 = the model's training context
	NBatch       int // tokens decoded per call; 0 = 512
	Threads      int // 0 = all CPUs
	ThreadsBatch int // threads for prompt processing; 0 = Threads
}

// Context holds a KV cache and compute buffers for one sequence. It is not
// safe for concurrent use; one generation at a time.
type Context struct {
	model *Model
	c     *C.struct_llama_context
	nctx  int
	nbat  int
	// toks is C memory for batches: llama_batch_get_one keeps the pointer.
	toks  *C.llama_token
	ntoks int
	// pool runs the CPU part of every graph (nil if ggml could not make
	// one: then it makes threads per graph). Freed after the context.
	pool *C.struct_ggml_threadpool
	once sync.Once
}

// NewContext creates a context on m.
func (m *Model) NewContext(p ContextParams) (*Context, error) {
	cp := C.llama_context_default_params()
	if p.NCtx < 0 || p.NBatch < 0 {
		return nil, errors.New("new context: negative size")
	}
	cp.n_ctx = C.uint32_t(p.NCtx)
	if p.NBatch == 0 {
		p.NBatch = 512
	}
	cp.n_batch = C.uint32_t(p.NBatch)
	cp.n_ubatch = C.uint32_t(p.NBatch)
	cp.n_seq_max = 1
	th := p.Threads
	if th <= 0 {
		th = runtime.NumCPU()
	}
	thb := p.ThreadsBatch
	if thb <= 0 {
		thb = th
	}
	cp.n_threads = C.int32_t(th)
	cp.n_threads_batch = C.int32_t(thb)
	cp.no_perf = true

	release, err := m.readWeights()
	if err != nil {
		return nil, fmt.Errorf("new context: %w", err)
	}
	loadMu.Lock()
	done := captureErrors()
	c := C.llama_init_from_model(m.m, cp)
	lines := done()
	loadMu.Unlock()
	release()
	if c == nil {
		return nil, fmt.Errorf("new context (n_ctx %d): %s", p.NCtx, loadReason(lines))
	}
	ctx := &Context{model: m, c: c, nctx: int(C.llama_n_ctx(c)), nbat: int(C.llama_n_batch(c))}
	ctx.ntoks = ctx.nbat
	ctx.pool = C.box_attach_pool(c, C.int(max(th, thb)))
	ctx.toks = (*C.llama_token)(C.malloc(C.size_t(ctx.ntoks) * C.size_t(unsafe.Sizeof(C.llama_token(0)))))
	return ctx, nil
}

// Close frees the context. Safe to call more than once.
func (c *Context) Close() error {
	c.once.Do(func() {
		C.llama_free(c.c)
		if c.pool != nil {
			C.ggml_threadpool_free(c.pool)
		}
		C.free(unsafe.Pointer(c.toks))
		c.c, c.toks, c.pool = nil, nil, nil
	})
	return nil
}

// Model returns the model the context was made from.
func (c *Context) Model() *Model { return c.model }

// NCtx is the context size in tokens.
func (c *Context) NCtx() int { return c.nctx }

// NBatch is the most tokens one Decode call takes.
func (c *Context) NBatch() int { return c.nbat }

// Reset clears the KV cache.
func (c *Context) Reset() {
	C.llama_memory_clear(C.llama_get_memory(c.c), C.bool(true))
}

// Decode evaluates toks (at most NBatch) after what the cache already holds.
// Logits of the last token are then available to a Sampler.
func (c *Context) Decode(toks []Token) error {
	if len(toks) == 0 {
		return errors.New("decode: no tokens")
	}
	if len(toks) > c.ntoks {
		return fmt.Errorf("decode: %d tokens exceed the batch size %d", len(toks), c.ntoks)
	}
	dst := unsafe.Slice(c.toks, len(toks))
	for i, t := range toks {
		dst[i] = C.llama_token(t)
	}
	batch := C.llama_batch_get_one(c.toks, C.int32_t(len(toks)))
	release, err := c.model.readWeights()
	if err != nil {
		return fmt.Errorf("decode: %w", err)
	}
	rc := C.llama_decode(c.c, batch)
	release()
	if c.model.check != nil {
		// A remote device's failure shows here, whatever llama_decode said.
		if err := c.model.check(); err != nil {
			return fmt.Errorf("decode: %w", err)
		}
	}
	switch rc {
	case 0:
		return nil
	case 1:
		return errors.New("decode: no room in the KV cache")
	case 2:
		return errors.New("decode: aborted")
	default:
		return fmt.Errorf("decode: llama_decode returned %d", int(rc))
	}
}

// Logits copies the last decoded token's logits (n_vocab floats).
func (c *Context) Logits() []float32 {
	p := C.llama_get_logits_ith(c.c, -1)
	if p == nil {
		return nil
	}
	n := c.model.VocabSize()
	out := make([]float32, n)
	copy(out, unsafe.Slice((*float32)(unsafe.Pointer(p)), n))
	return out
}

// NEmbd is the width of the model's hidden state.
func (m *Model) NEmbd() int { return int(C.llama_model_n_embd(m.m)) }

// Embed returns the mean, over toks, of the model's last hidden state (after
// the output norm): mean pooling, the usual sentence embedding of a decoder
// model. toks must fit in one batch. The cache is cleared before and after.
func (c *Context) Embed(toks []Token) ([]float32, error) {
	if len(toks) == 0 {
		return nil, errors.New("embed: no tokens")
	}
	if len(toks) > c.nbat {
		return nil, fmt.Errorf("embed: %d tokens exceed the batch size %d", len(toks), c.nbat)
	}
	c.Reset()
	defer c.Reset()
	C.llama_set_embeddings(c.c, true)
	defer C.llama_set_embeddings(c.c, false)
	b := C.llama_batch_init(C.int32_t(len(toks)), 0, 1)
	defer C.llama_batch_free(b)
	n := len(toks)
	tok := unsafe.Slice(b.token, n)
	pos := unsafe.Slice(b.pos, n)
	nseq := unsafe.Slice(b.n_seq_id, n)
	seq := unsafe.Slice(b.seq_id, n)
	out := unsafe.Slice(b.logits, n)
	for i, t := range toks {
		tok[i], pos[i], nseq[i], out[i] = C.llama_token(t), C.llama_pos(i), 1, 1
		*seq[i] = 0
	}
	b.n_tokens = C.int32_t(n)
	release, err := c.model.readWeights()
	if err != nil {
		return nil, fmt.Errorf("embed: %w", err)
	}
	rc := C.llama_decode(c.c, b)
	release()
	if c.model.check != nil {
		if err := c.model.check(); err != nil {
			return nil, fmt.Errorf("embed: %w", err)
		}
	}
	if rc != 0 {
		return nil, fmt.Errorf("embed: llama_decode returned %d", int(rc))
	}
	w := c.model.NEmbd()
	sum := make([]float64, w)
	for i := 0; i < n; i++ {
		p := C.llama_get_embeddings_ith(c.c, C.int32_t(i))
		if p == nil {
			return nil, fmt.Errorf("embed: no hidden state for token %d", i)
		}
		for j, v := range unsafe.Slice((*float32)(unsafe.Pointer(p)), w) {
			sum[j] += float64(v)
		}
	}
	res := make([]float32, w)
	for j := range sum {
		res[j] = float32(sum[j] / float64(n))
	}
	return res, nil
}
