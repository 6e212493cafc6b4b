package serve

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/shared"
)

func postJSON(t *testing.T, url, body string, out any) int {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode == 200 {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s: %v", b, err)
		}
	}
	return resp.StatusCode
}

// response_format json_schema through the official client: the synthetic
// model's output is noise, but the grammar forces its structure, so it
// parses and follows the schema.
func TestJSONSchemaResponseFormat(t *testing.T) {
	ts := start(t, Config{}, nil)
	schema := map[string]any{
		"type": "object",
		"properties": map[string]any{
			"color": map[string]any{"enum": []string{"red", "green", "blue"}},
			"ok":    map[string]any{"type": "boolean"},
			"count": map[string]any{"type": "integer"},
			"tags":  map[string]any{"type": "array", "items": map[string]any{"enum": []string{"a", "b"}}, "maxItems": 3},
			"note":  map[string]any{"type": "string", "maxLength": 8},
		},
		"required":             []string{"color", "ok", "count", "tags", "note"},
		"additionalProperties": false,
	}
	for _, temp := range []float64{0, 1} {
		p := chatParams("give me json", 120)
		p.Temperature = openai.Float(temp)
		p.Seed = openai.Int(7)
		p.ResponseFormat = openai.ChatCompletionNewParamsResponseFormatUnion{OfJSONSchema: &shared.ResponseFormatJSONSchemaParam{
			JSONSchema: shared.ResponseFormatJSONSchemaJSONSchemaParam{Name: "thing", Schema: schema, Strict: openai.Bool(true)},
		}}
		resp, err := ts.client.Chat.Completions.New(context.Background(), p)
		if err != nil {
			t.Fatal(err)
		}
		content := resp.Choices[0].Message.Content
		t.Logf("temperature %g: %s", temp, content)
		if resp.Choices[0].FinishReason != "stop" {
			t.Fatalf("finish %q: the grammar should end the document", resp.Choices[0].FinishReason)
		}
		var got struct {
			Color string   `json:"color"`
			OK    *bool    `json:"ok"`
			Count *int64   `json:"count"`
			Tags  []string `json:"tags"`
			Note  *string  `json:"note"`
		}
		dec := json.NewDecoder(strings.NewReader(content))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&got); err != nil {
			t.Fatalf("not JSON under the schema: %v: %q", err, content)
		}
		if !slices.Contains([]string{"red", "green", "blue"}, got.Color) || got.OK == nil || got.Count == nil ||
			got.Note == nil || len([]rune(*got.Note)) > 8 || len(got.Tags) > 3 {
			t.Fatalf("breaks the schema: %+v", got)
		}
		for _, tag := range got.Tags {
			if tag != "a" && tag != "b" {
				t.Fatalf("tag %q", tag)
			}
		}
	}
}

func TestGrammarAndJSONObject(t *testing.T) {
	ts := start(t, Config{}, nil)
	var out struct {
		Choices []struct {
			Text         string `json:"text"`
			FinishReason string `json:"finish_reason"`
		} `json:"choices"`
	}
	if code := postJSON(t, ts.url+"/v1/completions", `{"model":"tiny","prompt":"answer","max_tokens":10,"grammar":"root ::= \"yes\" | \"no\""}`, &out); code != 200 {
		t.Fatalf("status %d", code)
	}
	if txt := out.Choices[0].Text; txt != "yes" && txt != "no" {
		t.Fatalf("grammar yes|no gave %q", txt)
	}
	// json_object: any JSON object.
	p := chatParams("json please", 200)
	p.ResponseFormat = openai.ChatCompletionNewParamsResponseFormatUnion{OfJSONObject: &shared.ResponseFormatJSONObjectParam{}}
	resp, err := ts.client.Chat.Completions.New(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	c := resp.Choices[0].Message.Content
	t.Logf("json_object (%s): %s", resp.Choices[0].FinishReason, c)
	if !strings.HasPrefix(c, "{") {
		t.Fatalf("not an object: %q", c)
	}
	if resp.Choices[0].FinishReason == "stop" && !json.Valid([]byte(c)) {
		t.Fatalf("finished but not JSON: %q", c)
	}
}

// logprobs through the official client: one entry per generated token, the
// bytes spell the text, and with greedy sampling the sampled token is the
// most likely one.
func TestLogprobs(t *testing.T) {
	ts := start(t, Config{}, nil)
	p := chatParams("probabilities", 12)
	p.Logprobs = openai.Bool(true)
	p.TopLogprobs = openai.Int(3)
	resp, err := ts.client.Chat.Completions.New(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	lps := resp.Choices[0].Logprobs.Content
	if int64(len(lps)) != resp.Usage.CompletionTokens {
		t.Fatalf("%d logprobs for %d tokens", len(lps), resp.Usage.CompletionTokens)
	}
	var text []byte
	for i, lp := range lps {
		for _, b := range lp.Bytes {
			text = append(text, byte(b))
		}
		if lp.Logprob > 0 || len(lp.TopLogprobs) != 3 {
			t.Fatalf("token %d: %+v", i, lp)
		}
		top := lp.TopLogprobs[0]
		if top.Token != lp.Token || math.Abs(top.Logprob-lp.Logprob) > 1e-9 {
			t.Fatalf("token %d: greedy sampled %q (%g), most likely %q (%g)", i, lp.Token, lp.Logprob, top.Token, top.Logprob)
		}
		if lp.TopLogprobs[1].Logprob > top.Logprob || lp.TopLogprobs[2].Logprob > lp.TopLogprobs[1].Logprob {
			t.Fatalf("token %d: alternatives out of order", i)
		}
	}
	// The content shows invalid UTF-8 (byte tokens of noise) as U+FFFD;
	// what is valid must be the same.
	if a, b := strings.ToValidUTF8(string(text), ""), strings.ReplaceAll(resp.Choices[0].Message.Content, "\uFFFD", ""); a != b {
		t.Fatalf("logprob bytes spell %q, content %q", text, resp.Choices[0].Message.Content)
	}

	// Completions: the legacy shape, and the same tokens.
	var out struct {
		Choices []struct {
			Text     string
			Logprobs struct {
				Tokens        []string             `json:"tokens"`
				TokenLogprobs []float64            `json:"token_logprobs"`
				TopLogprobs   []map[string]float64 `json:"top_logprobs"`
			}
		}
		Usage struct {
			CompletionTokens int `json:"completion_tokens"`
		}
	}
	if code := postJSON(t, ts.url+"/v1/completions", `{"model":"tiny","prompt":"probabilities","max_tokens":6,"temperature":0,"logprobs":2}`, &out); code != 200 {
		t.Fatalf("status %d", code)
	}
	lp := out.Choices[0].Logprobs
	if len(lp.Tokens) != out.Usage.CompletionTokens || len(lp.TokenLogprobs) != len(lp.Tokens) || len(lp.TopLogprobs) != len(lp.Tokens) {
		t.Fatalf("completion logprobs %+v for %q", lp, out.Choices[0].Text)
	}
	for i, tok := range lp.Tokens {
		// Byte tokens are written "bytes:\xNN" as OpenAI does.
		if !utf8.ValidString(tok) || strings.ContainsRune(tok, utf8.RuneError) {
			t.Fatalf("token %d %q is not text", i, tok)
		}
		if lp.TokenLogprobs[i] > 0 || len(lp.TopLogprobs[i]) == 0 {
			t.Fatalf("token %d: logprob %g, top %v", i, lp.TokenLogprobs[i], lp.TopLogprobs[i])
		}
	}

	// Streaming carries them chunk by chunk.
	stream := ts.client.Chat.Completions.NewStreaming(context.Background(), p)
	n := 0
	for stream.Next() {
		for _, ch := range stream.Current().Choices {
			n += len(ch.Logprobs.Content)
		}
	}
	if err := stream.Err(); err != nil || n != len(lps) {
		t.Fatalf("streamed %d logprobs (want %d), %v", n, len(lps), err)
	}
}

func TestToolsRefusedThroughSDK(t *testing.T) {
	ts := start(t, Config{}, nil)
	p := chatParams("call it", 4)
	p.Tools = []openai.ChatCompletionToolUnionParam{openai.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{Name: "f"})}
	_, err := ts.client.Chat.Completions.New(context.Background(), p)
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 400 || apiErr.Param != "tools" || apiErr.Code != "unsupported_parameter" {
		t.Fatalf("tools: %v", err)
	}
}

func TestLlamaCppEndpoints(t *testing.T) {
	ts := start(t, Config{Parallel: 2}, nil)
	ctx := context.Background()

	t.Run("models/{id}", func(t *testing.T) {
		m, err := ts.client.Models.Get(ctx, "tiny")
		if err != nil || m.ID != "tiny" {
			t.Fatalf("%+v %v", m, err)
		}
		_, err = ts.client.Models.Get(ctx, "other")
		var apiErr *openai.Error
		if !errors.As(err, &apiErr) || apiErr.StatusCode != 404 || apiErr.Code != "model_not_found" {
			t.Fatalf("unknown model: %v", err)
		}
	})
	t.Run("n_predict", func(t *testing.T) {
		var out struct {
			Usage struct {
				CompletionTokens int `json:"completion_tokens"`
			}
		}
		if code := postJSON(t, ts.url+"/v1/completions", `{"model":"tiny","prompt":"count","n_predict":3,"temperature":0}`, &out); code != 200 {
			t.Fatalf("status %d", code)
		}
		if out.Usage.CompletionTokens < 1 || out.Usage.CompletionTokens > 3 {
			t.Fatalf("n_predict 3 generated %d tokens", out.Usage.CompletionTokens)
		}
	})
	t.Run("tokenize and detokenize", func(t *testing.T) {
		var tok struct {
			Tokens []int32 `json:"tokens"`
		}
		if code := postJSON(t, ts.url+"/tokenize", `{"content":"hello world"}`, &tok); code != 200 || len(tok.Tokens) == 0 {
			t.Fatalf("tokenize: %d %v", code, tok.Tokens)
		}
		b, _ := json.Marshal(map[string]any{"tokens": tok.Tokens})
		var det struct {
			Content string `json:"content"`
		}
		if code := postJSON(t, ts.url+"/detokenize", string(b), &det); code != 200 || !strings.Contains(det.Content, "hello world") {
			t.Fatalf("detokenize: %d %q", code, det.Content)
		}
		var pieces struct {
			Tokens []struct {
				ID    int32 `json:"id"`
				Piece any   `json:"piece"`
			} `json:"tokens"`
		}
		if code := postJSON(t, ts.url+"/tokenize", `{"content":"hi","with_pieces":true}`, &pieces); code != 200 || len(pieces.Tokens) == 0 {
			t.Fatalf("with_pieces: %d %+v", code, pieces)
		}
		if code := postJSON(t, ts.url+"/detokenize", `{"tokens":[99999999]}`, nil); code != 400 {
			t.Fatalf("detokenize out of range: %d", code)
		}
	})
	t.Run("props and slots", func(t *testing.T) {
		var props struct {
			Settings struct {
				NCtx int `json:"n_ctx"`
			} `json:"default_generation_settings"`
			TotalSlots int    `json:"total_slots"`
			Template   string `json:"chat_template"`
		}
		getJSON(t, ts.url+"/props", &props)
		if props.Settings.NCtx != 256 || props.TotalSlots != 2 || props.Template == "" {
			t.Fatalf("props %+v", props)
		}
		var slots []struct {
			ID           int  `json:"id"`
			NCtx         int  `json:"n_ctx"`
			IsProcessing bool `json:"is_processing"`
		}
		getJSON(t, ts.url+"/slots", &slots)
		if len(slots) != 2 || slots[1].ID != 1 || slots[0].NCtx != 256 || slots[0].IsProcessing {
			t.Fatalf("slots %+v", slots)
		}
	})
	t.Run("native completion", func(t *testing.T) {
		var out struct {
			Content         string `json:"content"`
			Stop            bool   `json:"stop"`
			TokensPredicted int    `json:"tokens_predicted"`
			TokensEvaluated int    `json:"tokens_evaluated"`
		}
		body := `{"prompt":"Once upon","n_predict":8,"temperature":0}`
		if code := postJSON(t, ts.url+"/completion", body, &out); code != 200 || !out.Stop || out.TokensPredicted < 1 ||
			out.TokensPredicted > 8 || out.TokensEvaluated < 2 {
			t.Fatalf("/completion: %d %+v", code, out)
		}
		resp, err := http.Post(ts.url+"/completion", "application/json", strings.NewReader(`{"prompt":"Once upon","n_predict":8,"temperature":0,"stream":true}`))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var text strings.Builder
		sc := bufio.NewScanner(resp.Body)
		stopped := false
		for sc.Scan() {
			line, ok := strings.CutPrefix(sc.Text(), "data: ")
			if !ok {
				continue
			}
			var ev struct {
				Content string `json:"content"`
				Stop    bool   `json:"stop"`
			}
			if err := json.Unmarshal([]byte(line), &ev); err != nil {
				t.Fatalf("event %q: %v", line, err)
			}
			text.WriteString(ev.Content)
			stopped = ev.Stop
		}
		if !stopped || text.String() != out.Content {
			t.Fatalf("streamed %q (stop %v), whole %q", text.String(), stopped, out.Content)
		}
	})
	t.Run("request id", func(t *testing.T) {
		req, _ := http.NewRequest("GET", ts.url+"/v1/models", nil)
		req.Header.Set("X-Request-Id", "trace-42")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.Header.Get("X-Request-Id"); got != "trace-42" {
			t.Fatalf("echoed %q", got)
		}
		resp, err = http.Get(ts.url + "/v1/models")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.Header.Get("X-Request-Id"); !strings.HasPrefix(got, "req-") {
			t.Fatalf("generated %q", got)
		}
	})
}

func TestAPIKey(t *testing.T) {
	tests := []struct {
		name    string
		authAll bool
		path    string
		key     string
		want    int
	}{
		{"right key", false, "/v1/models", "sekrit-key-1", 200},
		{"second key", false, "/v1/models", "another-key-2", 200},
		{"wrong key", false, "/v1/models", "sekrit-key-X", 401},
		{"no key", false, "/v1/models", "", 401},
		{"health is open", false, "/health", "", 200},
		{"metrics are open", false, "/metrics", "", 200},
		{"health with auth-all", true, "/health", "", 401},
		{"health with auth-all and the key", true, "/health", "sekrit-key-1", 200},
	}
	servers := map[bool]*testServer{}
	for _, all := range []bool{false, true} {
		ts := startNoWait(t, Config{APIKeys: []string{"sekrit-key-1", "another-key-2"}, AuthAll: all})
		waitFor(t, func() bool {
			req, _ := http.NewRequest("GET", ts.url+"/health", nil)
			req.Header.Set("Authorization", "Bearer sekrit-key-1")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == 200
		})
		servers[all] = ts
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ts := servers[tc.authAll]
			req, _ := http.NewRequest("GET", ts.url+tc.path, nil)
			if tc.key != "" {
				req.Header.Set("Authorization", "Bearer "+tc.key)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.want)
			}
		})
	}
	// The official client with its key.
	ts := servers[false]
	c := openai.NewClient(option.WithBaseURL(ts.url+"/v1"), option.WithAPIKey("sekrit-key-1"), option.WithMaxRetries(0))
	if _, err := c.Chat.Completions.New(context.Background(), chatParams("hi", 2)); err != nil {
		t.Fatal(err)
	}
}

// Embeddings through the official client: one unit vector of the model's
// width per input, the same for the same text whether alone or in a batch,
// and different for different texts.
func TestEmbeddings(t *testing.T) {
	ts := start(t, Config{}, nil)
	ctx := context.Background()
	before := answer(t, ts, "generation still works")
	defer func() {
		// The slot generates as before once it has embedded.
		if after := answer(t, ts, "generation still works"); after != before {
			t.Errorf("after embeddings %q, before %q", after, before)
		}
	}()
	resp, err := ts.client.Embeddings.New(ctx, openai.EmbeddingNewParams{
		Model: "tiny",
		Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: []string{"the cat sat", "on the mat"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Data) != 2 || resp.Usage.PromptTokens < 4 {
		t.Fatalf("response %+v", resp)
	}
	for _, d := range resp.Data {
		var sum float64
		for _, x := range d.Embedding {
			sum += x * x
		}
		if len(d.Embedding) != 128 || math.Abs(sum-1) > 1e-4 {
			t.Fatalf("embedding %d: %d values, squared norm %g", d.Index, len(d.Embedding), sum)
		}
	}
	alone, err := ts.client.Embeddings.New(ctx, openai.EmbeddingNewParams{
		Model: "tiny", Input: openai.EmbeddingNewParamsInputUnion{OfString: openai.String("on the mat")},
	})
	if err != nil {
		t.Fatal(err)
	}
	var diff, other float64
	for i, x := range alone.Data[0].Embedding {
		diff = max(diff, math.Abs(x-resp.Data[1].Embedding[i]))
		other = max(other, math.Abs(x-resp.Data[0].Embedding[i]))
	}
	if diff > 1e-5 || other < 1e-3 {
		t.Fatalf("same text differs by %g, other text by %g", diff, other)
	}
	if code := postJSON(t, ts.url+"/v1/embeddings", `{"model":"tiny","input":"x","dimensions":8}`, nil); code != 400 {
		t.Fatalf("dimensions: status %d", code)
	}
}
