package serve

import (
	"bytes"
	"context"
	"errors"
	"runtime"
	"sync"

	"github.com/boxproj/box/llama"
)

// Tokenizing is the one piece of a request's work that happens before it
// has a slot, and llama.cpp's tokenizers are superlinear in the length of a
// run without spaces (100 KB takes seconds, 400 KB minutes). So the work is
// bounded three ways:
//
//  1. A prompt longer in bytes than the context can hold in tokens (n_ctx
//     times the longest token piece) is refused before tokenizing.
//  2. Short texts (the normal case) are tokenized at once; longer ones wait
//     for one of a few tokenizer workers (half the CPUs), and at most Queue
//     of them wait, beyond that the answer is 429. A long prompt therefore
//     never occupies every core, and never delays a short one.
//  3. A request whose client goes away stops waiting. A tokenization already
//     running in C cannot be interrupted; it finishes on its worker (bounded
//     by 1.) and its result is dropped.

// inlineTokenize is the text size tokenized without the pool: about a
// millisecond of work whatever the text.
const inlineTokenize = 16 << 10

type tokenizer struct {
	sem   chan struct{}
	limit int

	mu      sync.Mutex
	waiting int
}

func newTokenizer(queue int) *tokenizer {
	return &tokenizer{sem: make(chan struct{}, max(1, runtime.NumCPU()/2)), limit: max(1, queue)}
}

var errTokenizerBusy = errors.New("server busy: the tokenizer queue for long prompts is full")

// promptByteLimit is the most bytes a text that fits in nctx tokens can
// have, or 0 when the vocabulary gives no such bound. Only SPM and BPE
// vocabularies have the needed lower bound on tokens per byte (a WordPiece
// vocabulary maps a whole unknown word to one token).
func promptByteLimit(m *llama.Model, nctx int) int {
	switch m.VocabType() {
	case llama.VocabSPM, llama.VocabBPE:
		return nctx * max(m.MaxPieceLen(), 4)
	default:
		return 0
	}
}

// tokenize turns a prompt into tokens within the bounds above; param names
// the request field in errors.
func (s *Server) tokenize(ctx context.Context, m *llama.Model, nctx int, text string, addSpecial, parseSpecial bool, param string) ([]llama.Token, *apiError) {
	if limit := promptByteLimit(m, nctx); limit > 0 && len(text) > limit {
		return nil, badRequest(param, "context_length_exceeded",
			"prompt is %d bytes; the context holds %d tokens, which is at most %d bytes with this vocabulary", len(text), nctx, limit)
	}
	if len(text) <= inlineTokenize {
		toks, err := m.Tokenize(text, addSpecial, parseSpecial)
		if err != nil {
			return nil, badRequest(param, "", "%v", err)
		}
		return toks, nil
	}
	tk := s.tok
	tk.mu.Lock()
	if tk.waiting >= tk.limit {
		tk.mu.Unlock()
		return nil, asAPIError(errTokenizerBusy)
	}
	tk.waiting++
	tk.mu.Unlock()
	select {
	case tk.sem <- struct{}{}:
	case <-ctx.Done():
		tk.mu.Lock()
		tk.waiting--
		tk.mu.Unlock()
		return nil, cancelledError(ctx)
	}
	tk.mu.Lock()
	tk.waiting--
	tk.mu.Unlock()

	type result struct {
		toks []llama.Token
		err  error
	}
	done := make(chan result, 1)
	// The model must outlive this goroutine: shutdown and reload wait for
	// s.cwork before freeing it.
	s.cwork.Add(1)
	go func() {
		// The worker slot is held until C returns, so abandoned work still
		// counts against the bound.
		defer func() { <-tk.sem; s.cwork.Done() }()
		toks, err := m.Tokenize(text, addSpecial, parseSpecial)
		done <- result{toks, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			return nil, badRequest(param, "", "%v", r.err)
		}
		return r.toks, nil
	case <-ctx.Done():
		return nil, cancelledError(ctx)
	}
}

// cancelledError answers a request that was cancelled before it generated:
// its client went away (the answer goes nowhere) or the server is stopping.
func cancelledError(ctx context.Context) *apiError {
	return &apiError{Status: 503, Message: "request cancelled: " + context.Cause(ctx).Error(), Type: "server_error", Code: strp("cancelled")}
}

// A JSON string of n raw bytes decodes to at least n/6 bytes (\u00XX is the
// longest escape per byte).
const jsonEscapeMax = 6

// scanHugeString finds, without parsing, a string value of a prompt field
// (one of keys, mapped to the field errors name) whose raw length alone
// proves it longer than limit bytes once decoded. Parsing a body of
// megabytes costs tens of milliseconds per pass; this costs two
// memchr-speed passes. It answers "", 0 when no such string exists (the
// body is then parsed and checked as usual, so an invalid body is still
// refused, only later).
func scanHugeString(data []byte, limit int, keys map[string]string) (param string, rawLen int) {
	if limit <= 0 || len(data) <= jsonEscapeMax*limit {
		return "", 0
	}
	prevStart, prevEnd := -1, -1
	for pos := 0; pos < len(data); {
		i := bytes.IndexByte(data[pos:], '"')
		if i < 0 {
			return "", 0
		}
		start := pos + i
		end := -1
		for j := start + 1; j < len(data); {
			k := bytes.IndexByte(data[j:], '"')
			if k < 0 {
				return "", 0
			}
			q := j + k
			bs := 0
			for b := q - 1; b > start && data[b] == '\\'; b-- {
				bs++
			}
			if bs%2 == 0 {
				end = q
				break
			}
			j = q + 1
		}
		if end < 0 {
			return "", 0
		}
		if n := end - start - 1; n > jsonEscapeMax*limit && prevEnd >= 0 &&
			string(bytes.TrimSpace(data[prevEnd+1:start])) == ":" {
			if p, ok := keys[string(data[prevStart+1:prevEnd])]; ok {
				return p, n
			}
		}
		prevStart, prevEnd = start, end
		pos = end + 1
	}
	return "", 0
}
