package buildinfo

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// LlamaCpp is the commit the ollama module in go.mod vendors.
func TestLlamaCppMatchesTheVendoredTree(t *testing.T) {
	dir, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", OllamaModule).Output()
	if err != nil {
		t.Fatalf("go list -m %s: %v", OllamaModule, err)
	}
	b, err := os.ReadFile(filepath.Join(strings.TrimSpace(string(dir)), "llama", "build-info.cpp"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`LLAMA_COMMIT = "([0-9a-f]+)"`).FindSubmatch(b)
	if m == nil || string(m[1]) != LlamaCpp {
		t.Fatalf("build-info.cpp says %q, buildinfo.LlamaCpp is %q", m, LlamaCpp)
	}
}

func TestRead(t *testing.T) {
	v := Read("v1.2.3", "abc123")
	if v.Version != "v1.2.3" || v.Commit != "abc123" || v.Protocols[0] != "3.6.0-3.6.1" || v.Ops != 95 || !strings.HasPrefix(v.Go, "go") {
		t.Fatalf("%+v", v)
	}
	if v := Read("", ""); v.Version != "dev" || v.Commit == "" {
		t.Fatalf("%+v", v)
	}
	s := Read("v1.2.3", "abc123").String()
	for _, want := range []string{"box v1.2.3", "commit     abc123", "llama.cpp  ec98e2002 (github.com/ollama/ollama", "ggml RPC 3.6.0-3.6.1, 4.0.0-4.0.4", "95 ggml ops"} {
		if !strings.Contains(s, want) {
			t.Errorf("String() lacks %q:\n%s", want, s)
		}
	}
}
