package serve

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// The OpenAI request and response shapes box speaks. A field box does not
// implement is refused with a 400 naming it (see docs/api.md), never
// ignored; known fields of the wrong type are a 400 too.

type chatMessage struct {
	Role    string      `json:"role"`
	Content messageText `json:"content"`
}

// messageText accepts a string or an array of content parts, of which only
// text parts are supported.
type messageText string

func (m *messageText) UnmarshalJSON(b []byte) error {
	if s, ok := plainString(b); ok {
		*m = messageText(s)
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*m = messageText(s)
		return nil
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&parts); err != nil {
		if f, ok := unknownField(err); ok {
			return fmt.Errorf("content part field %q is not supported", f)
		}
		return errors.New("content must be a string or an array of text parts")
	}
	var sb strings.Builder
	for _, p := range parts {
		if p.Type != "text" {
			return fmt.Errorf("content part type %q is not supported", p.Type)
		}
		sb.WriteString(p.Text)
	}
	*m = messageText(sb.String())
	return nil
}

// plainString decodes a JSON string without escapes in one cheap pass (the
// decoder has already checked that b is valid JSON); prompts can be
// megabytes, and a second full decode of them costs tens of milliseconds.
func plainString(b []byte) (string, bool) {
	if len(b) < 2 || b[0] != '"' || b[len(b)-1] != '"' || bytes.IndexByte(b, '\\') >= 0 || !utf8.Valid(b) {
		return "", false
	}
	return string(b[1 : len(b)-1]), true
}

// stopList accepts a string or an array of strings.
type stopList []string

func (s *stopList) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*s = nil
		return nil
	}
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*s = stopList{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return errors.New("stop must be a string or an array of strings")
	}
	*s = many
	return nil
}

// promptText accepts a string or an array holding one string.
type promptText string

func (p *promptText) UnmarshalJSON(b []byte) error {
	many, err := stringOrList(b, "prompt must be a string or an array of strings")
	if err != nil {
		return err
	}
	if len(many) != 1 {
		return fmt.Errorf("prompt arrays must hold exactly one string, got %d", len(many))
	}
	*p = promptText(many[0])
	return nil
}

// stringOrList reads a JSON string or an array of strings; bad says what
// was wanted.
func stringOrList(b []byte, bad string) ([]string, error) {
	if s, ok := plainString(b); ok {
		return []string{s}, nil
	}
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		return []string{one}, nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return nil, errors.New(bad)
	}
	return many, nil
}

// samplingFields are shared by both endpoints.
type samplingFields struct {
	Model               string   `json:"model"`
	MaxTokens           *int64   `json:"max_tokens"`
	MaxCompletionTokens *int64   `json:"max_completion_tokens"`
	Temperature         *float64 `json:"temperature"`
	TopP                *float64 `json:"top_p"`
	TopK                *int64   `json:"top_k"`
	MinP                *float64 `json:"min_p"`
	RepeatPenalty       *float64 `json:"repeat_penalty"`
	FrequencyPenalty    *float64 `json:"frequency_penalty"`
	PresencePenalty     *float64 `json:"presence_penalty"`
	Seed                *int64   `json:"seed"`
	Stop                stopList `json:"stop"`
	Stream              bool     `json:"stream"`
	StreamOptions       *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
	N *int64 `json:"n"`
	// NPredict is llama.cpp's name for max_tokens; -1 means until the
	// context is full.
	NPredict       *int64          `json:"n_predict"`
	ResponseFormat *responseFormat `json:"response_format"`
	// Grammar is a GBNF grammar (llama.cpp's field).
	Grammar *string `json:"grammar"`
	// User identifies the end user; it is only logged.
	User string `json:"user"`
}

type responseFormat struct {
	Type       string `json:"type"` // text, json_object, json_schema
	JSONSchema *struct {
		Name        string          `json:"name"`
		Description string          `json:"description"`
		Schema      json.RawMessage `json:"schema"`
		Strict      *bool           `json:"strict"`
	} `json:"json_schema"`
}

type chatRequest struct {
	samplingFields
	Messages    []chatMessage `json:"messages"`
	Logprobs    *bool         `json:"logprobs"`
	TopLogprobs *int64        `json:"top_logprobs"`
}

type completionRequest struct {
	samplingFields
	Prompt *promptText `json:"prompt"`
	// Logprobs is the number of most likely tokens to report per position
	// (0 to 20), besides the sampled one.
	Logprobs *int64 `json:"logprobs"`
}

// nativeCompletionRequest is llama.cpp's POST /completion.
type nativeCompletionRequest struct {
	samplingFields
	Prompt *promptText `json:"prompt"`
	NProbs *int64      `json:"n_probs"`
}

// unknownField extracts the field name from encoding/json's error for a
// field that DisallowUnknownFields refused.
func unknownField(err error) (string, bool) {
	const pfx = `json: unknown field "`
	msg := err.Error()
	if !strings.HasPrefix(msg, pfx) {
		return "", false
	}
	return strings.TrimSuffix(strings.TrimPrefix(msg, pfx), `"`), true
}

type usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

type chatChoice struct {
	Index        int           `json:"index"`
	Message      *respMessage  `json:"message,omitempty"`
	Delta        *respMessage  `json:"delta,omitempty"`
	Logprobs     *chatLogprobs `json:"logprobs,omitempty"`
	FinishReason *string       `json:"finish_reason"`
}

type chatLogprobs struct {
	Content []tokenLogprob `json:"content"`
}

type tokenLogprob struct {
	Token       string         `json:"token"`
	Logprob     float64        `json:"logprob"`
	Bytes       []int          `json:"bytes"`
	TopLogprobs []tokenLogprob `json:"top_logprobs,omitempty"`
}

// completionLogprobs is the legacy completions shape.
type completionLogprobs struct {
	Tokens        []string             `json:"tokens"`
	TokenLogprobs []float64            `json:"token_logprobs"`
	TopLogprobs   []map[string]float64 `json:"top_logprobs"`
	TextOffset    []int                `json:"text_offset"`
}

type respMessage struct {
	Role    string `json:"role,omitempty"`
	Content string `json:"content"`
}

type chatResponse struct {
	ID      string       `json:"id"`
	Object  string       `json:"object"`
	Created int64        `json:"created"`
	Model   string       `json:"model"`
	Choices []chatChoice `json:"choices"`
	Usage   *usage       `json:"usage,omitempty"`
}

type completionChoice struct {
	Index        int                 `json:"index"`
	Text         string              `json:"text"`
	Logprobs     *completionLogprobs `json:"logprobs"`
	FinishReason *string             `json:"finish_reason"`
}

type completionResponse struct {
	ID      string             `json:"id"`
	Object  string             `json:"object"`
	Created int64              `json:"created"`
	Model   string             `json:"model"`
	Choices []completionChoice `json:"choices"`
	Usage   *usage             `json:"usage,omitempty"`
}

type modelObject struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

type modelList struct {
	Object string        `json:"object"`
	Data   []modelObject `json:"data"`
}

// apiError is the OpenAI error body.
type apiError struct {
	Status  int     `json:"-"`
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

func (e *apiError) Error() string { return e.Message }

func badRequest(param, code, format string, args ...any) *apiError {
	e := &apiError{Status: 400, Message: fmt.Sprintf(format, args...), Type: "invalid_request_error"}
	if param != "" {
		e.Param = &param
	}
	if code != "" {
		e.Code = &code
	}
	return e
}

func strp(s string) *string { return &s }
