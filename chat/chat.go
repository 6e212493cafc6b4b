// Package chat is a client for OpenAI-compatible chat completions: it asks
// one question and streams the answer (box chat). It works with box serve
// and any server that speaks the same API.
package chat

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Request is one question.
type Request struct {
	URL         string        // the server's base URL (http://host:port)
	Model       string        // model id; "" asks /v1/models for the first
	System      string        // a system message before the prompt ("" = none)
	Prompt      string        // the user message
	MaxTokens   int           // tokens to generate at most
	Temperature *float64      // nil: the server's default
	Wait        time.Duration // first wait this long for /health to say 200
	APIKey      string        // sent as "Authorization: Bearer KEY" when set
}

// Stats describe one answer.
type Stats struct {
	Tokens     int           // generated tokens (the server's usage, else chunks with text)
	Elapsed    time.Duration // from sending the request to the last chunk
	FirstToken time.Duration // from sending the request to the first text (0: none came)
}

func (s Stats) String() string {
	first := "-"
	if s.FirstToken > 0 {
		first = s.FirstToken.Round(time.Millisecond).String()
	}
	return fmt.Sprintf("%d tokens in %.2f s: %.1f tokens/s, first token after %s", s.Tokens, s.Elapsed.Seconds(),
		float64(s.Tokens)/s.Elapsed.Seconds(), first)
}

// ReadPrompt is box chat's prompt: the arguments joined, or stdin (trimmed)
// when there are none or the only one is "-".
func ReadPrompt(args []string, stdin io.Reader) (string, error) {
	if p := strings.Join(args, " "); len(args) > 0 && p != "-" {
		return p, nil
	}
	b, err := io.ReadAll(stdin)
	if err != nil {
		return "", fmt.Errorf("stdin: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// Stream sends r and writes the answer's text to out as it arrives, then a
// newline.
func Stream(ctx context.Context, hc *http.Client, r Request, out io.Writer) (Stats, error) {
	base := strings.TrimSuffix(r.URL, "/")
	if err := waitHealthy(ctx, hc, base, r.Wait); err != nil {
		return Stats{}, err
	}
	if r.Model == "" {
		var list struct {
			Data []struct{ ID string } `json:"data"`
		}
		if err := getJSON(ctx, hc, base+"/v1/models", r.APIKey, &list); err != nil {
			return Stats{}, err
		}
		if len(list.Data) == 0 {
			return Stats{}, fmt.Errorf("%s serves no model", base)
		}
		r.Model = list.Data[0].ID
	}
	msgs := []map[string]string{{"role": "user", "content": r.Prompt}}
	if r.System != "" {
		msgs = append([]map[string]string{{"role": "system", "content": r.System}}, msgs...)
	}
	q := map[string]any{"model": r.Model, "max_tokens": r.MaxTokens, "stream": true, "messages": msgs,
		"stream_options": map[string]bool{"include_usage": true}}
	if r.Temperature != nil {
		q["temperature"] = *r.Temperature
	}
	body, _ := json.Marshal(q)
	req, _ := http.NewRequestWithContext(ctx, "POST", base+"/v1/chat/completions", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	setKey(req, r.APIKey)
	start := time.Now()
	resp, err := hc.Do(req)
	if err != nil {
		return Stats{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return Stats{}, fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	var st Stats
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok || data == "[DONE]" {
			continue
		}
		var chunk struct {
			Choices []struct {
				Delta struct{ Content string } `json:"delta"`
			} `json:"choices"`
			Usage *struct {
				CompletionTokens int `json:"completion_tokens"`
			} `json:"usage"`
			Error *struct{ Message string } `json:"error"`
		}
		if err := json.Unmarshal([]byte(data), &chunk); err != nil {
			return st, fmt.Errorf("bad chunk: %v", err)
		}
		if chunk.Error != nil {
			return st, fmt.Errorf("server: %s", chunk.Error.Message)
		}
		for _, c := range chunk.Choices {
			if c.Delta.Content == "" {
				continue
			}
			if st.Tokens++; st.FirstToken == 0 {
				st.FirstToken = time.Since(start)
			}
			fmt.Fprint(out, c.Delta.Content)
		}
		if chunk.Usage != nil {
			st.Tokens = chunk.Usage.CompletionTokens
		}
	}
	st.Elapsed = time.Since(start)
	fmt.Fprintln(out)
	return st, sc.Err()
}

func waitHealthy(ctx context.Context, hc *http.Client, base string, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	for wait > 0 {
		req, _ := http.NewRequestWithContext(ctx, "GET", base+"/health", nil)
		if resp, err := hc.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s is not healthy after %v", base, wait)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return nil
}

// setKey adds the server's API key to req, when there is one.
func setKey(req *http.Request, key string) {
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
}

func getJSON(ctx context.Context, hc *http.Client, url, key string, v any) error {
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	setKey(req, key)
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}
