package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/spf13/cobra"
)

// commandPaths lists every command a user can reach, as argument lists.
func commandPaths(c *cobra.Command, prefix []string) [][]string {
	var out [][]string
	for _, sub := range c.Commands() {
		if sub.Hidden || !sub.IsAvailableCommand() && sub.Name() != "help" {
			continue
		}
		p := append(append([]string{}, prefix...), sub.Name())
		out = append(out, p)
		out = append(out, commandPaths(sub, p)...)
	}
	return out
}

// Every command's help has one shape: what it does, Usage, Examples (at
// least one), Flags; it goes to stdout with exit 0, and `box help CMD...`
// prints the same.
func TestHelpOfEveryCommand(t *testing.T) {
	paths := commandPaths(newRoot(io.Discard, io.Discard), nil)
	if len(paths) < 15 { // 9 commands, model synth, help, completion and its 4 shells
		t.Fatalf("only %d commands: %v", len(paths), paths)
	}
	style := regexp.MustCompile(`(?s)^\S.*\n\nUsage:\n  (box|boxtop) .*\n\nExamples:\n  \S.*\n\n(Available Commands:\n.*)?Flags:\n.*--help`)
	check := func(args []string, help string) {
		t.Helper()
		if !style.MatchString(help) {
			t.Errorf("%v: help is not in the common style:\n%s", args, help)
		}
	}
	for _, p := range append(paths, []string{}) {
		code, out, errs := runBox(append(append([]string{"box"}, p...), "--help")...)
		if code != 0 || errs != "" {
			t.Fatalf("box %v --help: exit %d, stderr %q", p, code, errs)
		}
		check(p, out)
		if len(p) == 0 || p[0] == "help" {
			continue
		}
		code, viaHelp, _ := runBox(append([]string{"box", "help"}, p...)...)
		if code != 0 || viaHelp != out {
			t.Errorf("box help %v (exit %d) differs from box %v --help:\n%s", p, code, p, viaHelp)
		}
	}
	code, out, _ := runBox("/usr/bin/boxtop", "--help")
	if code != 0 || !strings.Contains(out, "Usage:\n  boxtop (--nodes") {
		t.Fatalf("boxtop --help: exit %d\n%s", code, out)
	}
	check([]string{"boxtop"}, out)
	// serve's help is serve's, not the top-level list.
	_, out, _ = runBox("box", "help", "serve")
	if !strings.Contains(out, "box serve (--model FILE | --demo)") || !strings.Contains(out, "--tensor-split") || strings.Contains(out, "Available Commands") {
		t.Fatalf("box help serve:\n%s", out)
	}
	// Without a command: the list, on stderr, exit 2.
	if code, out, errs := runBox("box"); code != 2 || out != "" || !strings.Contains(errs, "Available Commands:") {
		t.Fatalf("box: exit %d, stdout %q, stderr %q", code, out, errs)
	}
}

func TestUsageErrorsExit2WithSuggestions(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"box", "serv"}, "unknown command \"serv\" for \"box\"\n\nDid you mean this?\n\tserve\n"},
		{[]string{"box", "wrker", "--listen", "x"}, "Did you mean this?\n\tworker"},
		{[]string{"box", "model", "synt"}, "unknown command \"synt\" for \"box model\"\n\nDid you mean this?\n\tsynth"},
		{[]string{"box", "nonsense"}, "box: unknown command \"nonsense\" for \"box\"\nRun 'box --help' for usage."},
		{[]string{"box", "worker", "--max-memory", "20XB"}, `invalid size "20XB"`},
		{[]string{"box", "worker", "--max-memory-per-conn", "1e3"}, `invalid size "1e3"`},
		{[]string{"box", "leakcheck", "--demo", "--tolerance", "16MiBs"}, `invalid size "16MiBs"`},
		{[]string{"box", "serve", "--demo", "--bogus"}, "box serve: unknown flag: --bogus\nRun 'box serve --help' for usage."},
		{[]string{"box", "probe", "extra"}, `box probe: unexpected argument "extra"`},
		{[]string{"box", "chat", "--max-tokens", "0", "hi"}, "--max-tokens must be positive"},
		{[]string{"box", "model", "synth"}, "-o FILE is required"},
		{[]string{"box", "completion", "bash", "extra"}, "Run 'box completion bash --help'"},
		{[]string{"boxtop", "extra"}, `boxtop: unexpected argument "extra"`},
	} {
		code, out, errs := runBox(tc.args...)
		if code != 2 || !strings.Contains(errs, tc.want) || out != "" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit 2 and %q", tc.args, code, out, errs, tc.want)
		}
	}
}

func TestVersion(t *testing.T) {
	code, out, _ := runBox("box", "version", "--json")
	var v map[string]any
	if err := json.Unmarshal([]byte(out), &v); code != 0 || err != nil {
		t.Fatalf("exit %d, %v: %s", code, err, out)
	}
	for _, k := range []string{"version", "commit", "modified", "go", "platform", "llama_cpp", "ollama_module", "rpc_protocols", "ggml_ops"} {
		if _, ok := v[k]; !ok {
			t.Errorf("version --json lacks %q: %s", k, out)
		}
	}
	if v["llama_cpp"] != "ec98e2002" || v["ollama_module"] != "v0.17.4" || fmt.Sprint(v["rpc_protocols"]) != "[3.6.0-3.6.1 4.0.0-4.0.4 5.0.0-5.0.1 5.1.x 6.0.x 7.0.x]" || v["ggml_ops"] != 95.0 {
		t.Errorf("version --json: %s", out)
	}
	_, text, _ := runBox("box", "version")
	for _, args := range [][]string{{"box", "--version"}, {"box", "-v"}, {"boxtop", "--version"}} {
		if code, out, _ := runBox(args...); code != 0 || out != text {
			t.Errorf("%v: exit %d, %q; want box version's %q", args, code, out, text)
		}
	}
	for _, want := range []string{"box dev\n", "commit ", "go         go1.", "llama.cpp  ec98e2002 (github.com/ollama/ollama v0.17.4)", ", 95 ggml ops", "rpc        ggml RPC 3.6.0-3.6.1, 4.0.0-4.0.4, 5.0.0-5.0.1, 5.1.x, 6.0.x, 7.0.x"} {
		if !strings.Contains(text, want) {
			t.Errorf("box version lacks %q:\n%s", want, text)
		}
	}
}

// The shipped binary, built with the Makefile's ldflags, says its version.
func TestVersionFromLdflags(t *testing.T) {
	exe := t.TempDir() + "/box"
	build := exec.Command("go", "build", "-ldflags", "-X main.version=v9.9.9-test -X main.commit=0123abcd", "-o", exe, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(exe, "version", "--json").Output()
	var v struct{ Version, Commit string }
	if err != nil || json.Unmarshal(out, &v) != nil || v.Version != "v9.9.9-test" || v.Commit != "0123abcd" {
		t.Fatalf("%v: %s", err, out)
	}
}

func TestCompletion(t *testing.T) {
	for sh, want := range map[string]string{"bash": "__start_box", "zsh": "#compdef box", "fish": "complete -c box"} {
		code, out, errs := runBox("box", "completion", sh)
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("completion %s: exit %d, %q, lacks %q", sh, code, errs, want)
		}
	}
	// What the scripts ask: commands (not the hidden compute process) and flags.
	_, out, _ := runBox("box", "__complete", "")
	if !strings.Contains(out, "serve\t") || !strings.Contains(out, "worker\t") || strings.Contains(out, "__compute") {
		t.Errorf("command completion:\n%s", out)
	}
	_, out, _ = runBox("box", "__complete", "worker", "--max-mem")
	if !strings.Contains(out, "--max-memory\t") || !strings.Contains(out, "--max-memory-per-conn\t") {
		t.Errorf("flag completion:\n%s", out)
	}
}

// chatServer is an OpenAI-compatible stub that records the requests.
func chatServer(t *testing.T) (*httptest.Server, func() []map[string]any) {
	var mu sync.Mutex
	var got []map[string]any
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/models" {
			io.WriteString(w, `{"data":[{"id":"first"}]}`)
			return
		}
		var req map[string]any
		json.NewDecoder(r.Body).Decode(&req)
		if a := r.Header.Get("Authorization"); a != "" {
			req["authorization"] = a
		}
		mu.Lock()
		got = append(got, req)
		mu.Unlock()
		for _, s := range []string{"Hel", "lo"} {
			fmt.Fprintf(w, "data: {\"choices\":[{\"delta\":{\"content\":%q}}]}\n\n", s)
		}
		io.WriteString(w, "data: {\"choices\":[],\"usage\":{\"completion_tokens\":3}}\n\ndata: [DONE]\n\n")
	}))
	t.Cleanup(srv.Close)
	return srv, func() []map[string]any { mu.Lock(); defer mu.Unlock(); return got }
}

// The head's API key goes with the request, from --api-key or, without
// it, from $BOX_API_KEY (so it need not show in ps).
func TestChatSendsAPIKey(t *testing.T) {
	srv, got := chatServer(t)
	tests := []struct {
		args []string
		env  string
		want any
	}{
		{[]string{"--api-key", "flag-key"}, "", "Bearer flag-key"},
		{nil, "env-key", "Bearer env-key"},
		{[]string{"--api-key", "flag-key"}, "env-key", "Bearer flag-key"},
		{nil, "", nil},
	}
	for _, tc := range tests {
		cmd := box(append([]string{"chat", "hi", "--url", srv.URL, "--model", "x"}, tc.args...)...)
		cmd.Env = append(cmd.Env, "BOX_API_KEY="+tc.env)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%v: %v %s", tc.args, err, out)
		}
		if a := got()[len(got())-1]["authorization"]; a != tc.want {
			t.Errorf("args %v, env %q: Authorization %v, want %v", tc.args, tc.env, a, tc.want)
		}
	}
}

func TestChat(t *testing.T) {
	srv, got := chatServer(t)
	// Flags after the message are flags.
	code, out, errs := runBox("box", "chat", "hi", "there", "--model", "x", "--url", srv.URL, "--system", "be brief", "--temperature", "0.2", "-v")
	if code != 0 || out != "Hello\n" || !regexp.MustCompile(`^3 tokens in [0-9.]+ s: [0-9.]+ tokens/s, first token after \S+\n$`).MatchString(errs) {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errs)
	}
	req := got()[0]
	msgs := fmt.Sprint(req["messages"])
	if req["model"] != "x" || req["temperature"] != 0.2 || msgs != "[map[content:be brief role:system] map[content:hi there role:user]]" {
		t.Fatalf("request %v", req)
	}
	// The prompt from stdin: no argument, or "-". No --temperature: the server's.
	for _, args := range [][]string{{"chat", "--url", srv.URL}, {"chat", "-", "--url", srv.URL}} {
		cmd := box(args...)
		cmd.Stdin = strings.NewReader("from stdin\n")
		if out, err := cmd.Output(); err != nil || string(out) != "Hello\n" {
			t.Fatalf("%v: %v %q", args, err, out)
		}
		req := got()[len(got())-1]
		if _, ok := req["temperature"]; ok || req["model"] != "first" || fmt.Sprint(req["messages"]) != "[map[content:from stdin role:user]]" {
			t.Fatalf("%v: request %v", args, req)
		}
	}
	cmd := box("chat", "--url", srv.URL)
	cmd.Stdin = strings.NewReader("  \n")
	if err := cmd.Run(); err == nil || cmd.ProcessState.ExitCode() != 2 {
		t.Fatalf("empty stdin: %v", err)
	}
}
