package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// runChat sends one chat request to a box serve (or any OpenAI-compatible
// server) and streams the answer to stdout. It lets the demo and quick
// checks work without curl.
func runChat(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("box chat", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("url", "http://127.0.0.1:8080", "server base URL")
	model := fs.String("model", "", "model id (default: the server's first model)")
	maxTokens := fs.Int("max-tokens", 64, "tokens to generate at most")
	wait := fs.Duration("wait", 0, "wait this long for the server to become healthy")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: box chat [--url URL] [--model ID] [--max-tokens N] [--wait DUR] MESSAGE")
	}
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if fs.NArg() == 0 || *maxTokens < 1 {
		fs.Usage()
		return errUsage
	}
	base := strings.TrimSuffix(*url, "/")
	hc := &http.Client{}
	if *wait > 0 {
		deadline := time.Now().Add(*wait)
		for {
			resp, err := hc.Get(base + "/health")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					break
				}
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s is not healthy after %v", base, *wait)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	if *model == "" {
		var list struct {
			Data []struct{ ID string } `json:"data"`
		}
		if err := getJSON(ctx, hc, base+"/v1/models", &list); err != nil {
			return err
		}
		if len(list.Data) == 0 {
			return fmt.Errorf("%s serves no model", base)
		}
		*model = list.Data[0].ID
	}
	body, _ := json.Marshal(map[string]any{"model": *model, "max_tokens": *maxTokens, "stream": true,
		"messages": []map[string]string{{"role": "user", "content": strings.Join(fs.Args(), " ")}}})
	req, _ := http.NewRequestWithContext(ctx, "POST", base+"/v1/chat/completions", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
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
			Error *struct{ Message string } `json:"error"`
		}
		if err := json.Unmarshal([]byte(data), &chunk); err != nil {
			return fmt.Errorf("bad chunk: %v", err)
		}
		if chunk.Error != nil {
			return fmt.Errorf("server: %s", chunk.Error.Message)
		}
		for _, c := range chunk.Choices {
			fmt.Fprint(stdout, c.Delta.Content)
		}
	}
	fmt.Fprintln(stdout)
	return sc.Err()
}

func getJSON(ctx context.Context, hc *http.Client, url string, v any) error {
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
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
