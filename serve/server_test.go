package serve

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/boxproj/box/llama"
	"github.com/boxproj/box/synth"
	"github.com/boxproj/box/worker/workertest"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

var tinyPath string

func TestMain(m *testing.M) {
	// The test binary doubles as a worker, a worker's compute process, or a
	// head process for tests that kill them (see cluster_test.go).
	workertest.MaybeRun()
	if addr := os.Getenv("BOX_TEST_WORKER"); addr != "" {
		os.Exit(workerMain(addr))
	}
	if addr := os.Getenv("BOX_TEST_HEAD"); addr != "" {
		os.Exit(headMain(addr))
	}
	dir, err := os.MkdirTemp("", "box-serve-test")
	if err != nil {
		panic(err)
	}
	cfg, _ := synth.Preset("tiny")
	tinyPath, err = synth.EnsureCached(context.Background(), dir, cfg)
	if err != nil {
		panic(err)
	}
	llama.Init(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})))
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// testServer is a real box server on a loopback port, with the real engine.
type testServer struct {
	*Server
	url    string
	stop   context.CancelFunc
	done   chan error
	client openai.Client
}

func start(t *testing.T, cfg Config, hook func()) *testServer {
	t.Helper()
	ts := startWith(t, cfg, hook)
	ts.waitReady(t)
	return ts
}

// startNoWait starts a server without waiting for its model.
func startNoWait(t *testing.T, cfg Config) *testServer {
	t.Helper()
	return startWith(t, cfg, nil)
}

func startWith(t *testing.T, cfg Config, hook func()) *testServer {
	t.Helper()
	if cfg.ModelPath == "" {
		cfg.ModelPath = tinyPath
	}
	cfg.ModelID = "tiny"
	if cfg.Threads == 0 {
		cfg.Threads = 1
	}
	if cfg.CtxSize == 0 {
		cfg.CtxSize = 256
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	s.tokenHook = hook
	ctx, cancel := context.WithCancel(context.Background())
	ts := &testServer{Server: s, url: "http://" + ln.Addr().String(), stop: cancel, done: make(chan error, 1)}
	go func() { ts.done <- s.Run(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-ts.done:
		case <-time.After(30 * time.Second):
			t.Error("server did not stop")
		}
	})
	ts.client = openai.NewClient(option.WithBaseURL(ts.url+"/v1"), option.WithAPIKey("unused"), option.WithMaxRetries(0))
	return ts
}

func (ts *testServer) waitReady(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(ts.url + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("server never became healthy")
}

func chatParams(content string, maxTokens int64) openai.ChatCompletionNewParams {
	return openai.ChatCompletionNewParams{
		Model:       "tiny",
		Messages:    []openai.ChatCompletionMessageParamUnion{openai.UserMessage(content)},
		MaxTokens:   openai.Int(maxTokens),
		Temperature: openai.Float(0),
	}
}

func TestOpenAIClient(t *testing.T) {
	ts := start(t, Config{}, nil)
	ctx := context.Background()

	t.Run("chat", func(t *testing.T) {
		resp, err := ts.client.Chat.Completions.New(ctx, chatParams("Hello there", 16))
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Choices) != 1 || resp.Choices[0].Message.Content == "" || resp.Model != "tiny" {
			t.Fatalf("response %+v", resp)
		}
		if resp.Usage.CompletionTokens < 1 || resp.Usage.CompletionTokens > 16 || resp.Usage.PromptTokens < 5 ||
			resp.Usage.TotalTokens != resp.Usage.PromptTokens+resp.Usage.CompletionTokens {
			t.Fatalf("usage %+v", resp.Usage)
		}
		// Greedy: the same request gives the same answer.
		again, err := ts.client.Chat.Completions.New(ctx, chatParams("Hello there", 16))
		if err != nil {
			t.Fatal(err)
		}
		if again.Choices[0].Message.Content != resp.Choices[0].Message.Content {
			t.Fatalf("greedy answers differ: %q vs %q", again.Choices[0].Message.Content, resp.Choices[0].Message.Content)
		}

		// Streaming gives the same text, chunk by chunk, then a finish reason and usage.
		p := chatParams("Hello there", 16)
		p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
		stream := ts.client.Chat.Completions.NewStreaming(ctx, p)
		var text strings.Builder
		var finish string
		var chunks int
		var u openai.CompletionUsage
		for stream.Next() {
			c := stream.Current()
			chunks++
			if len(c.Choices) > 0 {
				text.WriteString(c.Choices[0].Delta.Content)
				if c.Choices[0].FinishReason != "" {
					finish = c.Choices[0].FinishReason
				}
			}
			if c.Usage.TotalTokens > 0 {
				u = c.Usage
			}
		}
		if err := stream.Err(); err != nil {
			t.Fatal(err)
		}
		if text.String() != resp.Choices[0].Message.Content {
			t.Fatalf("streamed %q, non-streamed %q", text.String(), resp.Choices[0].Message.Content)
		}
		if finish != resp.Choices[0].FinishReason || chunks < 3 || u.CompletionTokens != resp.Usage.CompletionTokens {
			t.Fatalf("finish %q (want %q), %d chunks, usage %+v", finish, resp.Choices[0].FinishReason, chunks, u)
		}
	})

	t.Run("completions", func(t *testing.T) {
		p := openai.CompletionNewParams{
			Model:       "tiny",
			Prompt:      openai.CompletionNewParamsPromptUnion{OfString: openai.String("Once upon a time")},
			MaxTokens:   openai.Int(12),
			Temperature: openai.Float(0),
		}
		resp, err := ts.client.Completions.New(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Choices) != 1 || resp.Usage.CompletionTokens < 1 {
			t.Fatalf("response %+v", resp)
		}
		stream := ts.client.Completions.NewStreaming(ctx, p)
		var text strings.Builder
		for stream.Next() {
			for _, c := range stream.Current().Choices {
				text.WriteString(c.Text)
			}
		}
		if err := stream.Err(); err != nil {
			t.Fatal(err)
		}
		if text.String() != resp.Choices[0].Text {
			t.Fatalf("streamed %q, non-streamed %q", text.String(), resp.Choices[0].Text)
		}
	})

	t.Run("models", func(t *testing.T) {
		page, err := ts.client.Models.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Data) != 1 || page.Data[0].ID != "tiny" {
			t.Fatalf("models %+v", page.Data)
		}
	})

	t.Run("400 through the SDK", func(t *testing.T) {
		p := chatParams("hi", 4)
		p.Model = "gpt-9"
		_, err := ts.client.Chat.Completions.New(ctx, p)
		var apiErr *openai.Error
		if !errors.As(err, &apiErr) || apiErr.StatusCode != 400 || apiErr.Code != "model_not_found" || apiErr.Param != "model" {
			t.Fatalf("unknown model: %v", err)
		}
	})
}

// slowHook makes every generated token take d.
func slowHook(d time.Duration) func() { return func() { time.Sleep(d) } }

// openStream starts a raw streaming chat request and returns once the first
// event has arrived, so the request is holding a slot.
func openStream(t *testing.T, ctx context.Context, url string, maxTokens int) (*http.Response, *bufio.Reader) {
	t.Helper()
	body := fmt.Sprintf(`{"model":"tiny","stream":true,"max_tokens":%d,"temperature":0,"messages":[{"role":"user","content":"go"}]}`, maxTokens)
	req, _ := http.NewRequestWithContext(ctx, "POST", url+"/v1/chat/completions", strings.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("stream: %d %s", resp.StatusCode, b)
	}
	br := bufio.NewReader(resp.Body)
	if _, err := br.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	return resp, br
}

func TestQueueOverflowAndSDK429(t *testing.T) {
	ts := start(t, Config{Parallel: 1, Queue: 1}, slowHook(50*time.Millisecond))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// One request generating, one waiting: the next is refused.
	resp1, _ := openStream(t, ctx, ts.url, 200)
	defer resp1.Body.Close()
	queued := make(chan error, 1)
	go func() {
		_, err := ts.client.Chat.Completions.New(ctx, chatParams("wait", 2))
		queued <- err
	}()
	waitFor(t, func() bool { _, w := ts.slotsNow().counts(); return w == 1 })

	_, err := ts.client.Chat.Completions.New(context.Background(), chatParams("hi", 2))
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 429 || apiErr.Type != "rate_limit_error" {
		t.Fatalf("third request: %v", err)
	}
	// Ending the first stream lets the queued one through.
	resp1.Body.Close()
	select {
	case err := <-queued:
		if err != nil {
			t.Fatalf("queued request: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("queued request never ran")
	}
}

func TestParallelClients(t *testing.T) {
	ts := start(t, Config{Parallel: 2, Queue: 8}, nil)
	var wg sync.WaitGroup
	errs := make(chan error, 6)
	answers := make(chan string, 6)
	for i := 0; i < 6; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			resp, err := ts.client.Chat.Completions.New(context.Background(), chatParams("same prompt", 10))
			if err != nil {
				errs <- err
				return
			}
			answers <- resp.Choices[0].Message.Content
		}(i)
	}
	wg.Wait()
	close(errs)
	close(answers)
	for err := range errs {
		t.Fatal(err)
	}
	// Greedy answers do not depend on which slot ran them.
	first := ""
	n := 0
	for a := range answers {
		if n == 0 {
			first = a
		} else if a != first {
			t.Fatalf("slots answer differently: %q vs %q", a, first)
		}
		n++
	}
	if n != 6 {
		t.Fatalf("%d answers", n)
	}
}

func TestCancelledStreamFreesSlot(t *testing.T) {
	ts := start(t, Config{Parallel: 1, Queue: 0}, slowHook(20*time.Millisecond))
	ctx, cancel := context.WithCancel(context.Background())
	resp, _ := openStream(t, ctx, ts.url, 200) // 200 tokens would take 4 s
	waitFor(t, func() bool { b, _ := ts.slotsNow().counts(); return b == 1 })
	cancel()
	resp.Body.Close()
	waitFor(t, func() bool { b, _ := ts.slotsNow().counts(); return b == 0 })
	if _, err := ts.client.Chat.Completions.New(context.Background(), chatParams("next", 2)); err != nil {
		t.Fatalf("slot not freed: %v", err)
	}
}

func TestGracefulShutdownFinishesInFlight(t *testing.T) {
	ts := start(t, Config{Grace: 20 * time.Second}, slowHook(20*time.Millisecond))
	resp, br := openStream(t, context.Background(), ts.url, 40)
	defer resp.Body.Close()
	ts.stop()
	rest, err := io.ReadAll(br)
	if err != nil {
		t.Fatalf("in-flight stream broken by shutdown: %v", err)
	}
	if !strings.Contains(string(rest), `"finish_reason":"length"`) || !strings.HasSuffix(string(rest), "data: [DONE]\n\n") {
		t.Fatalf("stream did not complete:\n%s", rest)
	}
	select {
	case err := <-ts.done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		ts.done <- nil // for Cleanup
	case <-time.After(10 * time.Second):
		t.Fatal("server did not stop after the request finished")
	}
	if _, err := http.Get(ts.url + "/health"); err == nil {
		t.Fatal("still accepting connections after shutdown")
	}
}

func TestGraceExpiryCancelsGeneration(t *testing.T) {
	ts := start(t, Config{Grace: 300 * time.Millisecond}, slowHook(50*time.Millisecond))
	resp, br := openStream(t, context.Background(), ts.url, 250) // 12 s if left alone
	defer resp.Body.Close()
	t0 := time.Now()
	ts.stop()
	rest, _ := io.ReadAll(br)
	if strings.Contains(string(rest), "[DONE]") {
		t.Fatal("generation ran to the end despite the grace period")
	}
	select {
	case err := <-ts.done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		ts.done <- nil
	case <-time.After(10 * time.Second):
		t.Fatal("server did not stop")
	}
	if el := time.Since(t0); el > 5*time.Second {
		t.Fatalf("stop took %v with a 300ms grace", el)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestBadRequests(t *testing.T) {
	ts := start(t, Config{CtxSize: 128}, nil)
	long := strings.Repeat("word ", 400)
	tests := []struct {
		name, path, body string
		status           int
		code, param      string
	}{
		{"invalid json", "/v1/chat/completions", `{"model":`, 400, "invalid_json", ""},
		{"not an object", "/v1/chat/completions", `[1,2]`, 400, "invalid_json", ""},
		{"unknown model", "/v1/chat/completions", `{"model":"x","messages":[{"role":"user","content":"hi"}]}`, 400, "model_not_found", "model"},
		{"missing model", "/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}]}`, 400, "missing_model", "model"},
		{"empty messages", "/v1/chat/completions", `{"model":"tiny","messages":[]}`, 400, "empty_messages", "messages"},
		{"no messages", "/v1/chat/completions", `{"model":"tiny"}`, 400, "empty_messages", "messages"},
		{"bad role", "/v1/chat/completions", `{"model":"tiny","messages":[{"role":"wizard","content":"hi"}]}`, 400, "invalid_value", "messages[0].role"},
		{"content of wrong type", "/v1/chat/completions", `{"model":"tiny","messages":[{"role":"user","content":42}]}`, 400, "invalid_json", ""},
		{"image content", "/v1/chat/completions", `{"model":"tiny","messages":[{"role":"user","content":[{"type":"image_url"}]}]}`, 400, "invalid_json", ""},
		{"prompt longer than context", "/v1/chat/completions", `{"model":"tiny","messages":[{"role":"user","content":"` + long + `"}]}`, 400, "context_length_exceeded", "messages"},
		{"negative max_tokens", "/v1/chat/completions", `{"model":"tiny","max_tokens":-1,"messages":[{"role":"user","content":"hi"}]}`, 400, "invalid_value", "max_tokens"},
		{"absurd max_tokens", "/v1/chat/completions", `{"model":"tiny","max_tokens":1000000000000,"messages":[{"role":"user","content":"hi"}]}`, 400, "invalid_value", "max_tokens"},
		{"max_tokens of wrong type", "/v1/chat/completions", `{"model":"tiny","max_tokens":"ten","messages":[{"role":"user","content":"hi"}]}`, 400, "invalid_type", "max_tokens"},
		{"temperature of wrong type", "/v1/chat/completions", `{"model":"tiny","temperature":"hot","messages":[{"role":"user","content":"hi"}]}`, 400, "invalid_type", "temperature"},
		{"stream of wrong type", "/v1/chat/completions", `{"model":"tiny","stream":"yes","messages":[{"role":"user","content":"hi"}]}`, 400, "invalid_type", "stream"},
		{"messages of wrong type", "/v1/chat/completions", `{"model":"tiny","messages":"hi"}`, 400, "invalid_type", "messages"},
		{"temperature out of range", "/v1/chat/completions", `{"model":"tiny","temperature":-3,"messages":[{"role":"user","content":"hi"}]}`, 400, "invalid_value", ""},
		{"top_p NaN-like", "/v1/chat/completions", `{"model":"tiny","top_p":7,"messages":[{"role":"user","content":"hi"}]}`, 400, "invalid_value", ""},
		{"n of 3", "/v1/chat/completions", `{"model":"tiny","n":3,"messages":[{"role":"user","content":"hi"}]}`, 400, "unsupported_value", "n"},
		{"stop of wrong type", "/v1/chat/completions", `{"model":"tiny","stop":5,"messages":[{"role":"user","content":"hi"}]}`, 400, "invalid_json", ""},
		{"empty prompt", "/v1/completions", `{"model":"tiny","prompt":""}`, 400, "empty_prompt", "prompt"},
		{"prompt array of two", "/v1/completions", `{"model":"tiny","prompt":["a","b"]}`, 400, "invalid_json", ""},
		{"long prompt", "/v1/completions", `{"model":"tiny","prompt":"` + long + `"}`, 400, "context_length_exceeded", "prompt"},
		{"user is accepted (logged)", "/v1/chat/completions", `{"model":"tiny","max_tokens":2,"user":"u","messages":[{"role":"user","content":"hi"}]}`, 200, "", ""},
		{"tools are refused", "/v1/chat/completions", `{"model":"tiny","tools":[{"type":"function","function":{"name":"f"}}],"messages":[{"role":"user","content":"hi"}]}`, 400, "unsupported_parameter", "tools"},
		{"logit_bias is refused", "/v1/chat/completions", `{"model":"tiny","logit_bias":{"1":2},"messages":[{"role":"user","content":"hi"}]}`, 400, "unsupported_parameter", "logit_bias"},
		{"a message field is refused", "/v1/chat/completions", `{"model":"tiny","messages":[{"role":"user","content":"hi","name":"x"}]}`, 400, "unsupported_parameter", "name"},
		{"echo is refused", "/v1/completions", `{"model":"tiny","prompt":"hi","echo":true}`, 400, "unsupported_parameter", "echo"},
		{"a content part field is refused", "/v1/chat/completions", `{"model":"tiny","messages":[{"role":"user","content":[{"type":"text","text":"hi","cache_control":{}}]}]}`, 400, "invalid_json", ""},
		{"n_predict beyond the context", "/v1/completions", `{"model":"tiny","prompt":"hi","n_predict":100000}`, 400, "invalid_value", "n_predict"},
		{"bad response_format type", "/v1/chat/completions", `{"model":"tiny","response_format":{"type":"xml"},"messages":[{"role":"user","content":"hi"}]}`, 400, "invalid_value", "response_format.type"},
		{"unsupported schema keyword", "/v1/chat/completions", `{"model":"tiny","response_format":{"type":"json_schema","json_schema":{"name":"x","schema":{"type":"string","pattern":"a+"}}},"messages":[{"role":"user","content":"hi"}]}`, 400, "unsupported_value", "response_format.json_schema.schema"},
		{"bad grammar", "/v1/completions", `{"model":"tiny","prompt":"hi","grammar":"root ::= ("}`, 400, "invalid_value", "grammar"},
		{"grammar and response_format", "/v1/completions", `{"model":"tiny","prompt":"hi","grammar":"root ::= \"a\"","response_format":{"type":"json_object"}}`, 400, "invalid_value", "grammar"},
		{"top_logprobs without logprobs", "/v1/chat/completions", `{"model":"tiny","top_logprobs":2,"messages":[{"role":"user","content":"hi"}]}`, 400, "invalid_value", "top_logprobs"},
		{"logprobs out of range", "/v1/completions", `{"model":"tiny","prompt":"hi","logprobs":21}`, 400, "invalid_value", "logprobs"},
		{"trailing data", "/v1/completions", `{"model":"tiny","prompt":"hi"} {}`, 400, "invalid_json", ""},
		{"unknown route", "/v1/nothing", `{}`, 404, "not_found", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := http.Post(ts.url+tc.path, "application/json", strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, b)
			}
			if tc.status == 200 {
				return
			}
			var e struct {
				Error struct {
					Message string  `json:"message"`
					Type    string  `json:"type"`
					Code    *string `json:"code"`
					Param   *string `json:"param"`
				} `json:"error"`
			}
			if err := json.Unmarshal(b, &e); err != nil || e.Error.Message == "" || e.Error.Type == "" {
				t.Fatalf("not an OpenAI error body: %s", b)
			}
			if e.Error.Code == nil || *e.Error.Code != tc.code {
				t.Fatalf("code %v, want %q: %s", e.Error.Code, tc.code, b)
			}
			if tc.param != "" && (e.Error.Param == nil || *e.Error.Param != tc.param) {
				t.Fatalf("param %v, want %q: %s", e.Error.Param, tc.param, b)
			}
		})
	}

	// An oversized body is refused, not read into memory.
	big := `{"model":"tiny","messages":[{"role":"user","content":"` + strings.Repeat("a", 9<<20) + `"}]}`
	resp, err := http.Post(ts.url+"/v1/chat/completions", "application/json", strings.NewReader(big))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 413 {
		t.Fatalf("9 MiB body: status %d", resp.StatusCode)
	}
	// The server still answers afterwards.
	if _, err := ts.client.Chat.Completions.New(context.Background(), chatParams("still there?", 2)); err != nil {
		t.Fatal(err)
	}
}

func TestHealthAndMetrics(t *testing.T) {
	// Before Run has loaded anything, health says 503.
	s := New(Config{ModelPath: tinyPath}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	rec := &recorder{h: http.Header{}}
	s.Handler().ServeHTTP(rec, mustReq("GET", "/health"))
	if rec.code != 503 || !strings.Contains(rec.body.String(), "loading") {
		t.Fatalf("health before load: %d %s", rec.code, rec.body.String())
	}

	ts := start(t, Config{}, nil)
	if _, err := ts.client.Chat.Completions.New(context.Background(), chatParams("count me", 4)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(ts.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`box_serve_requests_total{code="200",endpoint="chat"} 1`,
		"box_serve_generated_tokens_total 4",
		"box_serve_time_to_first_token_seconds_count 1",
		"box_serve_inter_token_latency_seconds_count 3",
		"box_serve_model_load_seconds",
		`box_device_memory_bytes{device="CPU",kind="total"}`,
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

func TestLoadFailureReported(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	s := New(Config{ModelPath: "/nonexistent/model.gguf"}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	err := s.Run(context.Background(), ln)
	var le *llama.LoadError
	if !errors.As(err, &le) || le.Path != "/nonexistent/model.gguf" {
		t.Fatalf("Run: %v", err)
	}
}

type recorder struct {
	h    http.Header
	code int
	body strings.Builder
}

func (r *recorder) Header() http.Header         { return r.h }
func (r *recorder) Write(b []byte) (int, error) { return r.body.Write(b) }
func (r *recorder) WriteHeader(c int)           { r.code = c }

func mustReq(method, path string) *http.Request {
	r, _ := http.NewRequest(method, path, nil)
	return r
}
