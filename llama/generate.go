package llama

import (
	"context"
	"errors"
	"fmt"
	"math"
)

// GenerateParams describe one completion.
type GenerateParams struct {
	Prompt    []Token
	MaxTokens int // 0 = until the context is full
	Stop      []string
	Sampler   SamplerParams
	// OnToken, when set, is called for every sampled token (before emit)
	// with its log-probability under the model and the TopLogprobs most
	// likely alternatives.
	OnToken     func(TokenLogprob)
	TopLogprobs int
}

// TokenLogprob is one sampled token with its log-probability (natural log,
// over the model's raw distribution) and the most likely tokens there.
type TokenLogprob struct {
	Token   Token
	Piece   []byte
	Logprob float64
	Top     []TokenLogprob // most likely first; no Top of their own
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
	smp, err := c.model.NewSampler(p.Sampler)
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
		var logits []float32
		if p.OnToken != nil {
			logits = c.Logits() // before sampling: the raw distribution
		}
		tok := smp.Sample(c)
		if c.model.IsEOG(tok) {
			res.FinishReason = FinishStop
			break
		}
		if p.OnToken != nil {
			p.OnToken(c.model.logprobs(logits, tok, p.TopLogprobs))
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

// logprobs is tok's log-probability under logits, with the top k tokens.
func (m *Model) logprobs(logits []float32, tok Token, k int) TokenLogprob {
	mx := float32(math.Inf(-1))
	for _, l := range logits {
		mx = max(mx, l)
	}
	var sum float64
	for _, l := range logits {
		sum += math.Exp(float64(l - mx))
	}
	lse := float64(mx) + math.Log(sum)
	lp := func(t Token) float64 {
		if int(t) < 0 || int(t) >= len(logits) {
			return math.Inf(-1)
		}
		return float64(logits[t]) - lse
	}
	out := TokenLogprob{Token: tok, Piece: m.Piece(tok, false), Logprob: lp(tok)}
	if k <= 0 {
		return out
	}
	// A partial selection: k is at most 20, the vocabulary large.
	top := make([]Token, 0, k+1)
	for t := range logits {
		tt := Token(t)
		i := len(top)
		for i > 0 && logits[top[i-1]] < logits[t] {
			i--
		}
		if i >= k {
			continue
		}
		top = append(top, 0)
		copy(top[i+1:], top[i:])
		top[i] = tt
		if len(top) > k {
			top = top[:k]
		}
	}
	for _, t := range top {
		out.Top = append(out.Top, TokenLogprob{Token: t, Piece: m.Piece(t, false), Logprob: lp(t)})
	}
	return out
}
