package llama

import (
	"context"
	"errors"
	"fmt"
)

// GenerateParams describe one completion.
type GenerateParams struct {
	Prompt    []Token
	MaxTokens int // 0 = until the context is full
	Stop      []string
	Sampler   SamplerParams
}

// Finish reasons, as the OpenAI API names them.
const (
	FinishStop   = "stop"
	FinishLength = "length"
)

// GenerateResult summarises a completion.
type GenerateResult struct {
	Text             string
	Tokens           []Token
	PromptTokens     int
	CompletionTokens int
	FinishReason     string
}

// ErrPromptTooLong means the prompt leaves no room in the context.
var ErrPromptTooLong = errors.New("prompt does not fit in the context")

// Generate decodes the prompt from an empty cache and samples until an
// end-of-generation token, a stop string, MaxTokens or a full context. emit
// is called once per sampled token with the text that became safe to show
// (often "", when a character or a possible stop string is incomplete);
// an error from emit ends generation with that error. Cancelling ctx ends it
// between tokens with ctx's error; the partial result is returned with it.
func (c *Context) Generate(ctx context.Context, p GenerateParams, emit func(text string) error) (GenerateResult, error) {
	res := GenerateResult{PromptTokens: len(p.Prompt)}
	if len(p.Prompt) == 0 {
		return res, errors.New("generate: empty prompt")
	}
	if len(p.Prompt) >= c.nctx {
		return res, fmt.Errorf("%w: %d tokens, context %d", ErrPromptTooLong, len(p.Prompt), c.nctx)
	}
	smp, err := NewSampler(p.Sampler)
	if err != nil {
		return res, err
	}
	defer smp.Close()

	c.Reset()
	for i := 0; i < len(p.Prompt); i += c.nbat {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		if err := c.Decode(p.Prompt[i:min(i+c.nbat, len(p.Prompt))]); err != nil {
			return res, fmt.Errorf("prompt: %w", err)
		}
	}

	ts := &textStream{stops: p.Stop}
	var text []byte
	pos := len(p.Prompt)
	res.FinishReason = FinishLength
	for {
		if err := ctx.Err(); err != nil {
			res.Text = string(text)
			return res, err
		}
		tok := smp.Sample(c)
		if c.model.IsEOG(tok) {
			res.FinishReason = FinishStop
			break
		}
		res.Tokens = append(res.Tokens, tok)
		res.CompletionTokens++
		out, stopped := ts.push(c.model.Piece(tok, false))
		text = append(text, out...)
		if err := emit(out); err != nil {
			res.Text = string(text)
			return res, err
		}
		if stopped {
			res.FinishReason = FinishStop
			res.Text = string(text)
			return res, nil
		}
		if p.MaxTokens > 0 && res.CompletionTokens >= p.MaxTokens {
			break
		}
		pos++
		if pos >= c.nctx {
			break
		}
		if err := c.Decode([]Token{tok}); err != nil {
			res.Text = string(text)
			return res, err
		}
	}
	if rest := ts.flush(); rest != "" {
		text = append(text, rest...)
		if err := emit(rest); err != nil {
			res.Text = string(text)
			return res, err
		}
	}
	res.Text = string(text)
	return res, nil
}
