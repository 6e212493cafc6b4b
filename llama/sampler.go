package llama

/*
#include <stdlib.h>
#include "llama.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"unsafe"
)

// SamplerParams configure a sampler chain. The zero value is greedy.
type SamplerParams struct {
	Temperature      float32 // 0 = greedy
	TopK             int     // 0 = off
	TopP             float32 // 0 or 1 = off
	MinP             float32 // 0 = off
	RepeatPenalty    float32 // 0 or 1 = off
	RepeatLastN      int     // tokens the penalties look back over; 0 = 64
	FrequencyPenalty float32
	PresencePenalty  float32
	Seed             uint32
	// Grammar, when set, is a GBNF grammar (root rule "root") the output
	// must follow; tokens it forbids are never sampled. It needs the model's
	// vocabulary: build the sampler with Model.NewSampler.
	Grammar string
}

// Validate rejects values llama.cpp would misbehave on.
func (p SamplerParams) Validate() error {
	bad := func(name string, v float32, lo, hi float32) error {
		if math.IsNaN(float64(v)) || v < lo || v > hi {
			return fmt.Errorf("%s must be within [%g, %g], got %g", name, lo, hi, v)
		}
		return nil
	}
	return errors.Join(
		bad("temperature", p.Temperature, 0, 100),
		bad("top_p", p.TopP, 0, 1),
		bad("min_p", p.MinP, 0, 1),
		bad("repeat_penalty", p.RepeatPenalty, 0, 100),
		bad("frequency_penalty", p.FrequencyPenalty, -2, 2),
		bad("presence_penalty", p.PresencePenalty, -2, 2),
		func() error {
			if p.TopK < 0 || p.RepeatLastN < 0 {
				return errors.New("top_k and repeat_last_n must not be negative")
			}
			return nil
		}(),
	)
}

// Sampler picks the next token from a context's logits.
type Sampler struct {
	s    *C.struct_llama_sampler
	once sync.Once
}

// NewSampler builds the chain: penalties, then top-k, top-p, min-p,
// temperature and a seeded draw; or greedy when Temperature is 0.
func NewSampler(p SamplerParams) (*Sampler, error) {
	if p.Grammar != "" {
		return nil, errors.New("sampler: a grammar needs the model's vocabulary (use Model.NewSampler)")
	}
	return newSampler(nil, p)
}

// ErrGrammar means llama.cpp could not parse a grammar.
var ErrGrammar = errors.New("invalid grammar")

// NewSampler is NewSampler with the model's vocabulary, which a grammar
// needs; the grammar constrains the candidates before anything else.
func (m *Model) NewSampler(p SamplerParams) (*Sampler, error) { return newSampler(m, p) }

func newSampler(m *Model, p SamplerParams) (*Sampler, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	chain := C.llama_sampler_chain_init(C.llama_sampler_chain_default_params())
	add := func(s *C.struct_llama_sampler) { C.llama_sampler_chain_add(chain, s) }
	if p.Grammar != "" {
		gs, groot := C.CString(p.Grammar), C.CString("root")
		g := C.llama_sampler_init_grammar(m.vocab, gs, groot)
		C.free(unsafe.Pointer(gs))
		C.free(unsafe.Pointer(groot))
		if g == nil {
			C.llama_sampler_free(chain)
			return nil, fmt.Errorf("%w (llama.cpp could not parse it)", ErrGrammar)
		}
		add(g)
	}

	if (p.RepeatPenalty != 0 && p.RepeatPenalty != 1) || p.FrequencyPenalty != 0 || p.PresencePenalty != 0 {
		lastN := p.RepeatLastN
		if lastN == 0 {
			lastN = 64
		}
		rp := p.RepeatPenalty
		if rp == 0 {
			rp = 1
		}
		add(C.llama_sampler_init_penalties(C.int32_t(lastN), C.float(rp), C.float(p.FrequencyPenalty), C.float(p.PresencePenalty)))
	}
	if p.Temperature == 0 {
		add(C.llama_sampler_init_greedy())
		return &Sampler{s: chain}, nil
	}
	if p.TopK > 0 {
		add(C.llama_sampler_init_top_k(C.int32_t(p.TopK)))
	}
	if p.TopP > 0 && p.TopP < 1 {
		add(C.llama_sampler_init_top_p(C.float(p.TopP), 1))
	}
	if p.MinP > 0 {
		add(C.llama_sampler_init_min_p(C.float(p.MinP), 1))
	}
	add(C.llama_sampler_init_temp(C.float(p.Temperature)))
	add(C.llama_sampler_init_dist(C.uint32_t(p.Seed)))
	return &Sampler{s: chain}, nil
}

// Sample picks a token from the last decoded position of c and records it
// for the penalties.
func (s *Sampler) Sample(c *Context) Token {
	return Token(C.llama_sampler_sample(s.s, c.c, -1))
}

// Close frees the chain and every sampler in it.
func (s *Sampler) Close() error {
	s.once.Do(func() { C.llama_sampler_free(s.s); s.s = nil })
	return nil
}
