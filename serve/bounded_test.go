package serve

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// cpuTime is the CPU time (user + system) this process has used.
func cpuTime(t *testing.T) time.Duration {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// postErr posts body and returns the status and the error's code and param.
func postErr(t *testing.T, url, body string) (int, string, string) {
	t.Helper()
	status, code, param, _ := postErrMsg(t, url, body)
	return status, code, param
}

// postErrMsg is postErr with the error message.
func postErrMsg(t *testing.T, url, body string) (int, string, string, string) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var e struct {
		Error struct {
			Message string  `json:"message"`
			Code    *string `json:"code"`
			Param   *string `json:"param"`
		} `json:"error"`
	}
	json.Unmarshal(b, &e)
	code, param := "", ""
	if e.Error.Code != nil {
		code = *e.Error.Code
	}
	if e.Error.Param != nil {
		param = *e.Error.Param
	}
	return resp.StatusCode, code, param, e.Error.Message
}

// The tokenizer attack: prompts without spaces cost llama.cpp's tokenizer
// superlinear time, so one that cannot fit is refused by its length in
// bytes, before tokenizing. The bounds are the issue's: under 100 ms, and
// CPU time that is a small constant, not minutes.
func TestHugePromptRefusedBeforeTokenizing(t *testing.T) {
	ts := start(t, Config{}, nil) // 256 tokens of context
	huge := strings.Repeat("abcdefgh", 7_900_000/8)
	tests := []struct {
		name, path, body, param string
	}{
		{"chat", "/v1/chat/completions", `{"model":"tiny","messages":[{"role":"user","content":"` + huge + `"}]}`, "messages"},
		{"completions", "/v1/completions", `{"model":"tiny","prompt":"` + huge + `"}`, "prompt"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cpu0, t0 := cpuTime(t), time.Now()
			status, code, param := postErr(t, ts.url+tc.path, tc.body)
			took, cpu := time.Since(t0), cpuTime(t)-cpu0
			if status != 400 || code != "context_length_exceeded" || param != tc.param {
				t.Fatalf("status %d code %q param %q", status, code, param)
			}
			t.Logf("7.9 MB prompt refused in %v, %v of CPU (client and server)", took, cpu)
			if took > raceFactor*100*time.Millisecond {
				t.Errorf("refusal took %v, want < %v", took, raceFactor*100*time.Millisecond)
			}
			if cpu > raceFactor*500*time.Millisecond {
				t.Errorf("refusal cost %v of CPU, want < %v", cpu, raceFactor*500*time.Millisecond)
			}
		})
	}

	// Ten concurrent 400 KB prompts do not delay a normal request by more
	// than a second.
	mid := `{"model":"tiny","prompt":"` + strings.Repeat("x", 400<<10) + `"}`
	var wg sync.WaitGroup
	statuses := make(chan int, 10)
	for i := 0; i < 10; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, _, _ := postErr(t, ts.url+"/v1/completions", mid)
			statuses <- s
		}()
	}
	t0 := time.Now()
	if _, err := ts.client.Chat.Completions.New(context.Background(), chatParams("hello", 4)); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(t0); took > raceFactor*time.Second {
		t.Errorf("a normal request took %v next to ten 400 KB prompts", took)
	} else {
		t.Logf("a normal request next to ten 400 KB prompts: %v", took)
	}
	wg.Wait()
	close(statuses)
	for s := range statuses {
		if s != 400 {
			t.Fatalf("400 KB prompt: status %d", s)
		}
	}
}

// A prompt that may fit by its bytes but is longer than the inline limit
// is tokenized by the bounded pool, then refused by its token count; one
// that fits is served.
func TestLongPromptTokenizedInPool(t *testing.T) {
	ts := start(t, Config{CtxSize: 2048}, nil)
	nctx := ts.slotsNow().all[0].NCtx()
	m, _, done, _ := ts.ready()
	done()
	limit := promptByteLimit(m, nctx)
	if limit <= inlineTokenize {
		t.Fatalf("byte limit %d is below the inline size %d: the pool is not reached", limit, inlineTokenize)
	}
	tests := []struct {
		name   string
		prompt string
		status int
		code   string
	}{
		{"too many tokens", strings.Repeat("q", inlineTokenize+100), 400, "context_length_exceeded"},
		{"too many bytes", strings.Repeat("q", limit+1), 400, "context_length_exceeded"},
		{"fits", strings.Repeat("hello ", 100), 200, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			body := fmt.Sprintf(`{"model":"tiny","max_tokens":2,"prompt":%q}`, tc.prompt)
			status, code, _ := postErr(t, ts.url+"/v1/completions", body)
			if status != tc.status || code != tc.code {
				t.Fatalf("status %d code %q, want %d %q", status, code, tc.status, tc.code)
			}
		})
	}
	if n := len(ts.tok.sem); n != 0 {
		t.Fatalf("%d tokenizer workers still held", n)
	}
}

func TestScanHugeString(t *testing.T) {
	big := strings.Repeat("z", 700)
	keys := map[string]string{"content": "messages", "prompt": "prompt"}
	tests := []struct {
		name, body, param string
	}{
		{"prompt value", `{"prompt":"` + big + `"}`, "prompt"},
		{"spaces around the colon", `{"model":"m", "content" :  "` + big + `"}`, "messages"},
		{"escaped quotes inside", `{"content":"a\"b\\\\` + big + `"}`, "messages"},
		{"not a prompt field", `{"grammar":"` + big + `"}`, ""},
		{"a key, not a value", `{"` + big + `":1}`, ""},
		{"in an array", `{"prompt":["` + big + `"]}`, ""},
		{"short", `{"prompt":"` + big[:500] + `"}`, ""},
		{"escaped quote makes the key part of a value", `{"x":"\"prompt\":` + big + `"}`, ""},
		{"unterminated", `{"prompt":"` + big, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// limit 100: a string must be over 600 raw bytes.
			if p, _ := scanHugeString([]byte(tc.body), 100, keys); p != tc.param {
				t.Fatalf("param %q, want %q", p, tc.param)
			}
		})
	}
}
