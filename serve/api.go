package serve

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"strings"
	"unicode/utf8"

	"github.com/boxproj/box/llama"
)

// The llama.cpp-style endpoints (/tokenize, /detokenize, /props, /slots,
// /completion), GET /v1/models/{id}, API keys and request ids.

type ctxKey int

const requestIDKey ctxKey = iota

// requestID is the request's X-Request-Id (echoed or generated).
func requestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey).(string)
	return id
}

// validRequestID accepts what is safe to echo and log: 1 to 128 printable
// ASCII characters.
func validRequestID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] < 0x21 || id[i] > 0x7e {
			return false
		}
	}
	return true
}

func newRequestID() string {
	var b [8]byte
	rand.Read(b[:])
	return "req-" + hex.EncodeToString(b[:])
}

// authorized checks "Authorization: Bearer KEY" against the configured keys
// in constant time (hashes, so the length does not leak either).
func (s *Server) authorized(r *http.Request) bool {
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return false
	}
	h := sha256.Sum256([]byte(strings.TrimSpace(got)))
	match := 0
	for _, k := range s.keyHashes {
		match |= subtle.ConstantTimeCompare(h[:], k[:])
	}
	return match == 1
}

// openPath reports whether path needs no API key: /health and /metrics,
// for probes and scrapers, unless AuthAll.
func (s *Server) openPath(path string) bool {
	return !s.cfg.AuthAll && (path == "/health" || path == "/metrics")
}

// withAuth wraps the API with the key check and the request id.
func (s *Server) withAuth(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-Request-Id")
		if !validRequestID(id) {
			id = newRequestID()
		}
		w.Header().Set("X-Request-Id", id)
		r = r.WithContext(context.WithValue(r.Context(), requestIDKey, id))
		if len(s.keyHashes) > 0 && !s.openPath(r.URL.Path) && !s.authorized(r) {
			s.log.Info("request refused: no valid API key", "request_id", id, "path", r.URL.Path, "peer", r.RemoteAddr)
			w.Header().Set("WWW-Authenticate", `Bearer realm="box"`)
			writeError(w, &apiError{Status: 401, Message: "a valid API key is required (Authorization: Bearer KEY)",
				Type: "invalid_request_error", Code: strp("invalid_api_key")})
			return
		}
		h.ServeHTTP(w, r)
	})
}

func (s *Server) handleModel(w http.ResponseWriter, r *http.Request) {
	if id := r.PathValue("id"); id != s.cfg.ModelID {
		writeError(w, &apiError{Status: 404, Message: fmt.Sprintf("model %q not found; this server serves %q", id, s.cfg.ModelID),
			Type: "invalid_request_error", Param: strp("model"), Code: strp("model_not_found")})
		return
	}
	writeJSON(w, 200, modelObject{ID: s.cfg.ModelID, Object: "model", Created: s.started.Unix(), OwnedBy: "box"})
}

type tokenizeRequest struct {
	Content      *string `json:"content"`
	AddSpecial   bool    `json:"add_special"`
	ParseSpecial bool    `json:"parse_special"`
	WithPieces   bool    `json:"with_pieces"`
}

var tokenizePromptKeys = map[string]string{"content": "content"}

// handleTokenize is llama.cpp's POST /tokenize. Text that could not fit in
// a slot's context is refused like a prompt (it is the same work).
func (s *Server) handleTokenize(w http.ResponseWriter, r *http.Request) {
	m, sl, done, aerr := s.ready()
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	defer done()
	var req tokenizeRequest
	if aerr := s.decodeBody(w, r, &req, tokenizePromptKeys, s.promptLimit(m, sl)); aerr != nil {
		writeError(w, aerr)
		return
	}
	if req.Content == nil {
		writeError(w, badRequest("content", "missing_content", "content is required"))
		return
	}
	ctx, cancel := s.requestContext(r)
	defer cancel()
	toks, aerr := s.tokenize(ctx, m, sl.all[0].NCtx(), *req.Content, req.AddSpecial, req.ParseSpecial, "content")
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	if !req.WithPieces {
		writeJSON(w, 200, map[string]any{"tokens": toks})
		return
	}
	type piece struct {
		ID    llama.Token `json:"id"`
		Piece any         `json:"piece"` // a string, or bytes when not valid UTF-8
	}
	out := make([]piece, len(toks))
	for i, t := range toks {
		p := m.Piece(t, true)
		out[i] = piece{ID: t, Piece: string(p)}
		if !utf8.Valid(p) {
			out[i].Piece = bytesOf(p)
		}
	}
	writeJSON(w, 200, map[string]any{"tokens": out})
}

type detokenizeRequest struct {
	Tokens []llama.Token `json:"tokens"`
}

// maxDetokenize bounds a /detokenize request.
const maxDetokenize = 1 << 20

func (s *Server) handleDetokenize(w http.ResponseWriter, r *http.Request) {
	m, _, done, aerr := s.ready()
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	defer done()
	var req detokenizeRequest
	if aerr := s.decodeBody(w, r, &req, nil, 0); aerr != nil {
		writeError(w, aerr)
		return
	}
	if len(req.Tokens) > maxDetokenize {
		writeError(w, badRequest("tokens", "invalid_value", "at most %d tokens", maxDetokenize))
		return
	}
	n := m.VocabSize()
	for i, t := range req.Tokens {
		if t < 0 || int(t) >= n {
			writeError(w, badRequest(fmt.Sprintf("tokens[%d]", i), "invalid_value", "token %d is not in the vocabulary (0 to %d)", t, n-1))
			return
		}
	}
	writeJSON(w, 200, map[string]any{"content": m.Detokenize(req.Tokens)})
}

// handleProps is llama.cpp's GET /props.
func (s *Server) handleProps(w http.ResponseWriter, r *http.Request) {
	m, sl, done, aerr := s.ready()
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	defer done()
	nctx := sl.all[0].NCtx()
	writeJSON(w, 200, map[string]any{
		"default_generation_settings": map[string]any{
			"n_ctx": nctx,
			"params": map[string]any{
				"temperature": 1, "top_k": 0, "top_p": 1, "min_p": 0, "repeat_penalty": 1,
				"frequency_penalty": 0, "presence_penalty": 0, "n_predict": -1,
			},
		},
		"total_slots":   len(sl.all),
		"model_path":    s.cfg.ModelPath,
		"model_id":      s.cfg.ModelID,
		"model_desc":    m.Desc(),
		"n_vocab":       m.VocabSize(),
		"chat_template": m.ChatTemplate(),
		"build_info":    "box",
	})
}

// handleSlots is llama.cpp's GET /slots.
func (s *Server) handleSlots(w http.ResponseWriter, r *http.Request) {
	_, sl, done, aerr := s.ready()
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	defer done()
	type slot struct {
		ID           int  `json:"id"`
		NCtx         int  `json:"n_ctx"`
		IsProcessing bool `json:"is_processing"`
	}
	busy := sl.busyList()
	out := make([]slot, len(sl.all))
	for i, c := range sl.all {
		out[i] = slot{ID: i, NCtx: c.NCtx(), IsProcessing: busy[i]}
	}
	writeJSON(w, 200, out)
}

var nativePromptKeys = map[string]string{"prompt": "prompt"}

// handleNative is llama.cpp's POST /completion: a raw prompt, n_predict,
// and answers of the form {"content": ..., "stop": ...}.
func (s *Server) handleNative(w http.ResponseWriter, r *http.Request) {
	m, sl, done, aerr := s.ready()
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	defer done()
	var req nativeCompletionRequest
	if aerr := s.decodeBody(w, r, &req, nativePromptKeys, s.promptLimit(m, sl)); aerr != nil {
		writeError(w, aerr)
		return
	}
	if req.Prompt == nil || *req.Prompt == "" {
		writeError(w, badRequest("prompt", "empty_prompt", "prompt must not be empty"))
		return
	}
	if req.Model == "" {
		req.Model = s.cfg.ModelID // llama.cpp's endpoint has no model field to require
	}
	if aerr := s.checkFields(&req.samplingFields); aerr != nil {
		writeError(w, aerr)
		return
	}
	if req.NProbs != nil && *req.NProbs != 0 {
		writeError(w, badRequest("n_probs", "unsupported_parameter", "n_probs is not supported; use /v1/completions with logprobs"))
		return
	}
	ctx, cancel := s.requestContext(r)
	defer cancel()
	j, aerr := s.promptJob(ctx, m, sl, string(*req.Prompt), &req.samplingFields)
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	s.run(ctx, w, sl, j, shapeNative)
}

// APIKeys collects the keys of --api-key and the lines of --api-key-file
// (blank lines and lines starting with # are skipped). A key has at least 8
// characters and no spaces.
func APIKeys(key, file string) ([]string, error) {
	var keys []string
	if key != "" {
		keys = append(keys, key)
	}
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("--api-key-file: %w", err)
		}
		n := len(keys)
		for _, line := range strings.Split(string(b), "\n") {
			if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
				keys = append(keys, line)
			}
		}
		if len(keys) == n {
			return nil, fmt.Errorf("--api-key-file %s holds no key", file)
		}
	}
	for _, k := range keys {
		if len(k) < 8 || strings.ContainsAny(k, " \t") {
			return nil, fmt.Errorf("API keys must be at least 8 characters, without spaces")
		}
	}
	return keys, nil
}
