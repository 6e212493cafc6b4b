package serve

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net/http"
)

// POST /v1/embeddings: the mean of the last hidden state over the input's
// tokens, L2-normalised as OpenAI's are. Each input takes a slot for its
// decode, so embeddings queue with generations.

// maxEmbedInputs bounds the inputs of one request.
const maxEmbedInputs = 64

// embedInput accepts a string or an array of strings.
type embedInput []string

func (e *embedInput) UnmarshalJSON(b []byte) error {
	many, err := stringOrList(b, "input must be a string or an array of strings (token arrays are not supported)")
	*e = many
	return err
}

type embeddingsRequest struct {
	Model          string     `json:"model"`
	Input          embedInput `json:"input"`
	EncodingFormat string     `json:"encoding_format"` // float (default) or base64
	User           string     `json:"user"`
}

type embeddingObject struct {
	Object    string `json:"object"`
	Index     int    `json:"index"`
	Embedding any    `json:"embedding"`
}

var embedPromptKeys = map[string]string{"input": "input"}

func (s *Server) handleEmbeddings(w http.ResponseWriter, r *http.Request) {
	m, sl, done, aerr := s.ready()
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	defer done()
	var req embeddingsRequest
	if aerr := s.decodeBody(w, r, &req, embedPromptKeys, s.promptLimit(m, sl)); aerr != nil {
		writeError(w, aerr)
		return
	}
	if aerr := s.checkFields(&samplingFields{Model: req.Model}); aerr != nil {
		writeError(w, aerr)
		return
	}
	switch {
	case len(req.Input) == 0:
		writeError(w, badRequest("input", "empty_input", "input must not be empty"))
		return
	case len(req.Input) > maxEmbedInputs:
		writeError(w, badRequest("input", "invalid_value", "at most %d inputs", maxEmbedInputs))
		return
	case req.EncodingFormat != "" && req.EncodingFormat != "float" && req.EncodingFormat != "base64":
		writeError(w, badRequest("encoding_format", "invalid_value", "encoding_format must be float or base64"))
		return
	}
	ctx, cancel := s.requestContext(r)
	defer cancel()
	nbatch := sl.all[0].NBatch()
	out := make([]embeddingObject, 0, len(req.Input))
	total := 0
	for i, text := range req.Input {
		param := fmt.Sprintf("input[%d]", i)
		if text == "" {
			writeError(w, badRequest(param, "empty_input", "an input must not be empty"))
			return
		}
		toks, aerr := s.tokenize(ctx, m, sl.all[0].NCtx(), text, true, false, param)
		if aerr != nil {
			writeError(w, aerr)
			return
		}
		if len(toks) > nbatch {
			writeError(w, badRequest(param, "context_length_exceeded", "input is %d tokens; one decode holds %d (--batch)", len(toks), nbatch))
			return
		}
		c, err := sl.acquire(ctx)
		if err != nil {
			if errors.Is(err, errQueueFull) {
				writeError(w, asAPIError(err))
			} else {
				writeError(w, cancelledError(ctx))
			}
			return
		}
		vec, err := c.Embed(toks)
		sl.release(c)
		if err != nil {
			s.log.Error("embedding failed", "request_id", requestID(ctx), "err", err)
			writeError(w, asAPIError(err))
			return
		}
		normalize(vec)
		total += len(toks)
		var emb any = vec
		if req.EncodingFormat == "base64" {
			var buf bytes.Buffer
			binary.Write(&buf, binary.LittleEndian, vec)
			emb = base64.StdEncoding.EncodeToString(buf.Bytes())
		}
		out = append(out, embeddingObject{Object: "embedding", Index: i, Embedding: emb})
	}
	s.met.promptTokens.Add(float64(total))
	writeJSON(w, 200, map[string]any{"object": "list", "data": out, "model": s.cfg.ModelID,
		"usage": map[string]int{"prompt_tokens": total, "total_tokens": total}})
}

// normalize scales v to unit length (a zero vector stays zero).
func normalize(v []float32) {
	var sum float64
	for _, x := range v {
		sum += float64(x) * float64(x)
	}
	if sum == 0 {
		return
	}
	k := float32(1 / math.Sqrt(sum))
	for i := range v {
		v[i] *= k
	}
}
