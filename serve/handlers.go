package serve

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/boxproj/box/llama"
)

// job is a validated request, ready to generate.
type job struct {
	prompt       []llama.Token
	params       llama.GenerateParams
	stream       bool
	includeUsage bool
	logprobs     bool // report them; params.TopLogprobs alternatives each
}

// maxTopLogprobs bounds top_logprobs (OpenAI's limit).
const maxTopLogprobs = 20

// grammarOf is the GBNF grammar a request asks for, from response_format
// or llama.cpp's grammar field, and the field that named it.
func grammarOf(f *samplingFields) (string, string, *apiError) {
	rf := f.ResponseFormat
	if f.Grammar != nil && rf != nil && rf.Type != "text" {
		return "", "", badRequest("grammar", "invalid_value", "give grammar or response_format, not both")
	}
	if f.Grammar != nil {
		if *f.Grammar == "" || len(*f.Grammar) > 64<<10 {
			return "", "", badRequest("grammar", "invalid_value", "grammar must be 1 byte to 64 KiB of GBNF")
		}
		return *f.Grammar, "grammar", nil
	}
	if rf == nil {
		return "", "", nil
	}
	switch rf.Type {
	case "text":
		return "", "", nil
	case "json_object":
		return jsonGrammar, "response_format", nil
	case "json_schema":
		if rf.JSONSchema == nil || len(rf.JSONSchema.Schema) == 0 {
			return "", "", badRequest("response_format.json_schema.schema", "invalid_value", "json_schema needs a schema")
		}
		g, err := schemaToGBNF(rf.JSONSchema.Schema)
		if err != nil {
			return "", "", badRequest("response_format.json_schema.schema", "unsupported_value", "%v", err)
		}
		return g, "response_format", nil
	default:
		return "", "", badRequest("response_format.type", "invalid_value", "response_format type %q: want text, json_object or json_schema", rf.Type)
	}
}

const maxStops = 16

// decodeBody reads a JSON body into v with clear errors.
// promptKeys maps the JSON keys whose strings are prompt text to the field
// errors name, per endpoint, for scanHugeString.
var (
	chatPromptKeys       = map[string]string{"content": "messages", "text": "messages"}
	completionPromptKeys = map[string]string{"prompt": "prompt"}
)

// decodeBody reads a JSON body into v with clear errors. A body holding a
// prompt string (a value of one of promptKeys) that is certainly longer
// than promptLimit bytes is refused before it is parsed.
func (s *Server) decodeBody(w http.ResponseWriter, r *http.Request, v any, promptKeys map[string]string, promptLimit int) *apiError {
	body := http.MaxBytesReader(w, r.Body, s.cfg.MaxBody)
	var buf bytes.Buffer
	if r.ContentLength > 0 && r.ContentLength <= s.cfg.MaxBody {
		buf.Grow(int(r.ContentLength) + 1)
	}
	_, err := buf.ReadFrom(body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return &apiError{Status: 413, Message: fmt.Sprintf("request body larger than %d bytes", mbe.Limit), Type: "invalid_request_error"}
		}
		return badRequest("", "", "reading request body: %v", err)
	}
	data := buf.Bytes()
	if param, n := scanHugeString(data, promptLimit, promptKeys); param != "" {
		return badRequest(param, "context_length_exceeded",
			"prompt text is at least %d bytes; the context holds at most %d bytes with this vocabulary", n/jsonEscapeMax, promptLimit)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	err = dec.Decode(v)
	if err == nil && dec.More() {
		return badRequest("", "invalid_json", "invalid JSON body: data after the object")
	}
	if err != nil {
		if f, ok := unknownField(err); ok {
			return badRequest(f, "unsupported_parameter", "field %q is not supported by this server (see docs/api.md)", f)
		}
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			if te.Field == "" {
				return badRequest("", "invalid_json", "request body must be a JSON object, got JSON %s", te.Value)
			}
			field := strings.TrimPrefix(te.Field, "samplingFields.")
			return badRequest(field, "invalid_type", "field %q must be %s, got JSON %s", field, jsonKind(te.Type.Kind().String()), te.Value)
		}
		return badRequest("", "invalid_json", "invalid JSON body: %v", err)
	}
	return nil
}

// jsonKind names a Go kind the way a JSON user thinks of it.
func jsonKind(kind string) string {
	switch {
	case strings.HasPrefix(kind, "int"), strings.HasPrefix(kind, "uint"):
		return "an integer"
	case strings.HasPrefix(kind, "float"):
		return "a number"
	case kind == "bool":
		return "a boolean"
	case kind == "string":
		return "a string"
	case kind == "slice":
		return "an array"
	default:
		return "an object"
	}
}

// checkFields validates what needs no prompt, before any tokenizing.
func (s *Server) checkFields(f *samplingFields) *apiError {
	if f.Model == "" {
		return badRequest("model", "missing_model", "model is required (this server serves %q)", s.cfg.ModelID)
	}
	if f.Model != s.cfg.ModelID {
		return badRequest("model", "model_not_found", "model %q not found; this server serves %q", f.Model, s.cfg.ModelID)
	}
	if f.N != nil && *f.N != 1 {
		return badRequest("n", "unsupported_value", "n must be 1")
	}
	return nil
}

// buildJob validates the shared fields against the model and context.
func (s *Server) buildJob(m *llama.Model, nctx int, f *samplingFields, prompt []llama.Token) (*job, *apiError) {
	if aerr := s.checkFields(f); aerr != nil {
		return nil, aerr
	}
	if len(prompt) >= nctx {
		return nil, badRequest("messages", "context_length_exceeded",
			"prompt is %d tokens; the context holds %d, leaving no room to generate", len(prompt), nctx)
	}
	maxTok := int64(0)
	for name, v := range map[string]*int64{"max_tokens": f.MaxTokens, "max_completion_tokens": f.MaxCompletionTokens, "n_predict": f.NPredict} {
		if v == nil || (name == "n_predict" && *v == -1) {
			continue // n_predict -1: until the context is full
		}
		if *v < 1 || *v > int64(nctx) {
			return nil, badRequest(name, "invalid_value", "%s must be between 1 and %d (the context size), got %d", name, nctx, *v)
		}
		maxTok = *v
	}
	if maxTok == 0 || int(maxTok) > nctx-len(prompt) {
		maxTok = int64(nctx - len(prompt))
	}
	if len(f.Stop) > maxStops {
		return nil, badRequest("stop", "invalid_value", "at most %d stop strings", maxStops)
	}
	for _, st := range f.Stop {
		if st == "" || len(st) > 256 {
			return nil, badRequest("stop", "invalid_value", "stop strings must be 1 to 256 bytes")
		}
	}

	sp := llama.SamplerParams{Temperature: 1, RepeatPenalty: 1}
	fl := func(dst *float32, v *float64) {
		if v != nil {
			*dst = float32(*v)
		}
	}
	fl(&sp.Temperature, f.Temperature)
	fl(&sp.TopP, f.TopP)
	fl(&sp.MinP, f.MinP)
	fl(&sp.RepeatPenalty, f.RepeatPenalty)
	fl(&sp.FrequencyPenalty, f.FrequencyPenalty)
	fl(&sp.PresencePenalty, f.PresencePenalty)
	if f.TopK != nil {
		if *f.TopK < 0 || *f.TopK > math.MaxInt32 {
			return nil, badRequest("top_k", "invalid_value", "top_k must be between 0 and %d", math.MaxInt32)
		}
		sp.TopK = int(*f.TopK)
	}
	if f.Seed != nil {
		sp.Seed = uint32(*f.Seed)
	} else {
		var b [4]byte
		rand.Read(b[:])
		sp.Seed = uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
	}
	if err := sp.Validate(); err != nil {
		return nil, badRequest("", "invalid_value", "%v", err)
	}
	grammar, param, aerr := grammarOf(f)
	if aerr != nil {
		return nil, aerr
	}
	if grammar != "" {
		sp.Grammar = grammar
		smp, err := m.NewSampler(sp)
		if err != nil {
			return nil, badRequest(param, "invalid_value", "%v", err)
		}
		smp.Close()
	}
	j := &job{
		prompt: prompt,
		params: llama.GenerateParams{Prompt: prompt, MaxTokens: int(maxTok), Stop: f.Stop, Sampler: sp},
		stream: f.Stream,
	}
	if f.StreamOptions != nil {
		j.includeUsage = f.StreamOptions.IncludeUsage
	}
	return j, nil
}

func (s *Server) handleChat(w http.ResponseWriter, r *http.Request) {
	m, sl, done, aerr := s.ready()
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	defer done()
	var req chatRequest
	if aerr := s.decodeBody(w, r, &req, chatPromptKeys, s.promptLimit(m, sl)); aerr != nil {
		writeError(w, aerr)
		return
	}
	if len(req.Messages) == 0 {
		writeError(w, badRequest("messages", "empty_messages", "messages must not be empty"))
		return
	}
	msgs := make([]llama.ChatMessage, len(req.Messages))
	for i, msg := range req.Messages {
		switch msg.Role {
		case "system", "user", "assistant", "developer", "tool":
		default:
			writeError(w, badRequest(fmt.Sprintf("messages[%d].role", i), "invalid_value", "unknown role %q", msg.Role))
			return
		}
		if msg.Role == "developer" {
			msg.Role = "system"
		}
		msgs[i] = llama.ChatMessage{Role: msg.Role, Content: string(msg.Content)}
	}
	if aerr := s.checkFields(&req.samplingFields); aerr != nil {
		writeError(w, aerr)
		return
	}
	text, err := m.ApplyChatTemplate(msgs, true)
	if err != nil {
		writeError(w, &apiError{Status: 500, Message: err.Error(), Type: "server_error"})
		return
	}
	ctx, cancel := s.requestContext(r)
	defer cancel()
	// The template already holds BOS where the model wants it; special
	// tokens in it (<|im_start|>) are parsed, as the template means them.
	prompt, aerr := s.tokenize(ctx, m, sl.all[0].NCtx(), text, !strings.HasPrefix(text, "<s>"), true, "messages")
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	j, aerr := s.buildJob(m, sl.all[0].NCtx(), &req.samplingFields, prompt)
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	if req.TopLogprobs != nil {
		if *req.TopLogprobs < 0 || *req.TopLogprobs > maxTopLogprobs {
			writeError(w, badRequest("top_logprobs", "invalid_value", "top_logprobs must be between 0 and %d", maxTopLogprobs))
			return
		}
		if req.Logprobs == nil || !*req.Logprobs {
			writeError(w, badRequest("top_logprobs", "invalid_value", "top_logprobs needs logprobs: true"))
			return
		}
		j.params.TopLogprobs = int(*req.TopLogprobs)
	}
	j.logprobs = req.Logprobs != nil && *req.Logprobs
	s.run(ctx, w, sl, j, shapeChat)
}

func (s *Server) handleCompletions(w http.ResponseWriter, r *http.Request) {
	m, sl, done, aerr := s.ready()
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	defer done()
	var req completionRequest
	if aerr := s.decodeBody(w, r, &req, completionPromptKeys, s.promptLimit(m, sl)); aerr != nil {
		writeError(w, aerr)
		return
	}
	if req.Prompt == nil || *req.Prompt == "" {
		writeError(w, badRequest("prompt", "empty_prompt", "prompt must not be empty"))
		return
	}
	if aerr := s.checkFields(&req.samplingFields); aerr != nil {
		writeError(w, aerr)
		return
	}
	ctx, cancel := s.requestContext(r)
	defer cancel()
	j, aerr := s.promptJob(ctx, m, sl, string(*req.Prompt), &req.samplingFields)
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	if req.Logprobs != nil {
		if *req.Logprobs < 0 || *req.Logprobs > maxTopLogprobs {
			writeError(w, badRequest("logprobs", "invalid_value", "logprobs must be between 0 and %d", maxTopLogprobs))
			return
		}
		j.logprobs, j.params.TopLogprobs = true, int(*req.Logprobs)
	}
	s.run(ctx, w, sl, j, shapeCompletion)
}

// promptLimit is the most bytes a prompt that fits the context can have,
// or 0 when the vocabulary gives no such bound.
func (s *Server) promptLimit(m *llama.Model, sl *slots) int {
	return promptByteLimit(m, sl.all[0].NCtx())
}

// requestContext ends when the client goes away or the grace period after
// a stop signal is over.
// promptJob tokenizes a completion prompt and builds its job (both
// /v1/completions and the native /completion).
func (s *Server) promptJob(ctx context.Context, m *llama.Model, sl *slots, text string, f *samplingFields) (*job, *apiError) {
	prompt, aerr := s.tokenize(ctx, m, sl.all[0].NCtx(), text, true, false, "prompt")
	if aerr != nil {
		return nil, aerr
	}
	j, aerr := s.buildJob(m, sl.all[0].NCtx(), f, prompt)
	if aerr != nil && aerr.Param != nil && *aerr.Param == "messages" {
		aerr.Param = strp("prompt")
	}
	return j, aerr
}

func (s *Server) requestContext(r *http.Request) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(r.Context())
	stop := context.AfterFunc(s.hardStop, cancel)
	return ctx, func() { stop(); cancel() }
}

// shape is the form of an answer.
type shape int

const (
	shapeChat       shape = iota // /v1/chat/completions
	shapeCompletion              // /v1/completions
	shapeNative                  // llama.cpp's /completion
)

// run waits for a slot, generates, and writes the answer in the chosen
// shape, streamed or not. Generation stops when ctx ends (see
// requestContext).
func (s *Server) run(ctx context.Context, w http.ResponseWriter, sl *slots, j *job, sh shape) {
	accepted := time.Now()

	c, err := sl.acquire(ctx)
	if err != nil {
		if errors.Is(err, errQueueFull) {
			writeError(w, asAPIError(err))
		} else {
			s.log.Debug("request cancelled while queued", "err", err)
		}
		return
	}
	defer sl.release(c)

	id := newID(sh == shapeChat)
	created := time.Now().Unix()
	var all, pending []llama.TokenLogprob
	if j.logprobs {
		j.params.OnToken = func(lp llama.TokenLogprob) {
			all = append(all, lp)
			pending = append(pending, lp)
		}
	}
	chunk := func(text string, lps []llama.TokenLogprob, finish *string, u *usage) any {
		switch sh {
		case shapeChat:
			ch := chatChoice{Delta: &respMessage{Content: text}, FinishReason: finish}
			if j.logprobs && finish == nil {
				ch.Logprobs = &chatLogprobs{Content: chatLogprobsOf(lps)}
			}
			choices := []chatChoice{ch}
			if u != nil {
				choices = []chatChoice{}
			}
			return chatResponse{ID: id, Object: "chat.completion.chunk", Created: created, Model: s.cfg.ModelID, Choices: choices, Usage: u}
		case shapeCompletion:
			ch := completionChoice{Text: text, FinishReason: finish}
			if j.logprobs && finish == nil {
				ch.Logprobs = completionLogprobsOf(lps, 0)
			}
			choices := []completionChoice{ch}
			if u != nil {
				choices = []completionChoice{}
			}
			return completionResponse{ID: id, Object: "text_completion", Created: created, Model: s.cfg.ModelID, Choices: choices, Usage: u}
		default:
			return map[string]any{"content": text, "stop": false}
		}
	}
	var sse *sseWriter
	if j.stream {
		sse = newSSE(w)
		if sh == shapeChat {
			sse.send(chatResponse{ID: id, Object: "chat.completion.chunk", Created: created, Model: s.cfg.ModelID,
				Choices: []chatChoice{{Delta: &respMessage{Role: "assistant", Content: ""}}}})
		}
	}

	var last time.Time
	emit := func(text string) error {
		now := time.Now()
		if last.IsZero() {
			s.met.ttft.Observe(now.Sub(accepted).Seconds())
		} else {
			s.met.itl.Observe(now.Sub(last).Seconds())
		}
		last = now
		if s.tokenHook != nil {
			s.tokenHook()
		}
		if sse == nil || (text == "" && len(pending) == 0) {
			return nil
		}
		lps := pending
		pending = nil
		return sse.send(chunk(text, lps, nil, nil))
	}

	res, err := c.Generate(ctx, j.params, emit)
	s.met.promptTokens.Add(float64(res.PromptTokens))
	s.met.genTokens.Add(float64(res.CompletionTokens))
	if err != nil {
		if ctx.Err() != nil {
			s.log.Info("generation cancelled", "id", id, "request_id", requestID(ctx), "tokens", res.CompletionTokens, "reason", context.Cause(ctx))
			return
		}
		s.log.Error("generation failed", "id", id, "request_id", requestID(ctx), "err", err)
		if sse == nil {
			writeError(w, asAPIError(err))
		} else {
			sse.send(map[string]*apiError{"error": asAPIError(err)})
		}
		return
	}
	u := &usage{PromptTokens: res.PromptTokens, CompletionTokens: res.CompletionTokens, TotalTokens: res.PromptTokens + res.CompletionTokens}
	finish := strp(res.FinishReason)
	if sh == shapeNative {
		final := nativeFinal(res, s.cfg.ModelID)
		if sse != nil {
			sse.send(final)
			return // llama.cpp's stream has no [DONE]
		}
		final["content"] = res.Text
		writeJSON(w, 200, final)
		return
	}
	if sse != nil {
		sse.send(chunk("", nil, finish, nil))
		if j.includeUsage {
			sse.send(chunk("", nil, nil, u))
		}
		sse.done()
		return
	}
	if sh == shapeChat {
		ch := chatChoice{Message: &respMessage{Role: "assistant", Content: res.Text}, FinishReason: finish}
		if j.logprobs {
			ch.Logprobs = &chatLogprobs{Content: chatLogprobsOf(all)}
		}
		writeJSON(w, 200, chatResponse{ID: id, Object: "chat.completion", Created: created, Model: s.cfg.ModelID,
			Choices: []chatChoice{ch}, Usage: u})
		return
	}
	ch := completionChoice{Text: res.Text, FinishReason: finish}
	if j.logprobs {
		ch.Logprobs = completionLogprobsOf(all, 0)
	}
	writeJSON(w, 200, completionResponse{ID: id, Object: "text_completion", Created: created, Model: s.cfg.ModelID,
		Choices: []completionChoice{ch}, Usage: u})
}

// nativeFinal is the last object of a llama.cpp /completion answer.
func nativeFinal(res llama.GenerateResult, model string) map[string]any {
	stopType := "eos"
	if res.FinishReason == llama.FinishLength {
		stopType = "limit"
	}
	return map[string]any{
		"content": "", "stop": true, "model": model, "tokens_predicted": res.CompletionTokens,
		"tokens_evaluated": res.PromptTokens, "stop_type": stopType, "truncated": false,
		"stopped_eos": stopType == "eos", "stopped_limit": stopType == "limit",
	}
}

func bytesOf(b []byte) []int {
	out := make([]int, len(b))
	for i, c := range b {
		out[i] = int(c)
	}
	return out
}

// lpValue makes -Inf (a token the model gives no chance) representable in
// JSON.
func lpValue(f float64) float64 {
	if math.IsInf(f, -1) {
		return -9999
	}
	return f
}

func chatLogprobsOf(lps []llama.TokenLogprob) []tokenLogprob {
	out := make([]tokenLogprob, 0, len(lps))
	for _, lp := range lps {
		t := tokenLogprob{Token: string(lp.Piece), Logprob: lpValue(lp.Logprob), Bytes: bytesOf(lp.Piece), TopLogprobs: []tokenLogprob{}}
		for _, alt := range lp.Top {
			t.TopLogprobs = append(t.TopLogprobs, tokenLogprob{Token: string(alt.Piece), Logprob: lpValue(alt.Logprob), Bytes: bytesOf(alt.Piece)})
		}
		out = append(out, t)
	}
	return out
}

// legacyToken names a token in the legacy completions logprobs: its text,
// or, when that is not valid UTF-8 (a byte token), "bytes:\\xNN..." as
// OpenAI writes them.
func legacyToken(piece []byte) string {
	if utf8.Valid(piece) {
		return string(piece)
	}
	var b strings.Builder
	b.WriteString("bytes:")
	for _, c := range piece {
		fmt.Fprintf(&b, "\\x%02x", c)
	}
	return b.String()
}

func completionLogprobsOf(lps []llama.TokenLogprob, offset int) *completionLogprobs {
	out := &completionLogprobs{Tokens: []string{}, TokenLogprobs: []float64{}, TopLogprobs: []map[string]float64{}, TextOffset: []int{}}
	for _, lp := range lps {
		out.Tokens = append(out.Tokens, legacyToken(lp.Piece))
		out.TokenLogprobs = append(out.TokenLogprobs, lpValue(lp.Logprob))
		top := map[string]float64{}
		for _, alt := range lp.Top {
			top[legacyToken(alt.Piece)] = lpValue(alt.Logprob)
		}
		out.TopLogprobs = append(out.TopLogprobs, top)
		out.TextOffset = append(out.TextOffset, offset)
		offset += len(lp.Piece)
	}
	return out
}

func newID(chat bool) string {
	var b [12]byte
	rand.Read(b[:])
	if chat {
		return "chatcmpl-" + hex.EncodeToString(b[:])
	}
	return "cmpl-" + hex.EncodeToString(b[:])
}

// sseWriter writes server-sent events, flushing each.
type sseWriter struct {
	w http.ResponseWriter
	f http.Flusher
}

func newSSE(w http.ResponseWriter) *sseWriter {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(200)
	f, _ := w.(http.Flusher)
	return &sseWriter{w: w, f: f}
}

func (s *sseWriter) send(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintf(s.w, "data: %s\n\n", b); err != nil {
		return err
	}
	if s.f != nil {
		s.f.Flush()
	}
	return nil
}

func (s *sseWriter) done() {
	io.WriteString(s.w, "data: [DONE]\n\n")
	if s.f != nil {
		s.f.Flush()
	}
}
