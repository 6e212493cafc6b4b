package main

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// box serve --api-key / --api-key-file: the key guards the API, /health
// stays open; --auth-all without a key is a usage error.
func TestServeAPIKeyFlags(t *testing.T) {
	dir := t.TempDir()
	keys := filepath.Join(dir, "keys")
	if err := os.WriteFile(keys, []byte("# head keys\nfile-key-123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	head := "127.0.0.1:" + freePort(t)
	startBox(t, "serve", "--demo", "--cache-dir", dir, "--listen", head, "--threads", "1",
		"--api-key", "flag-key-123", "--api-key-file", keys)
	waitHTTP(t, "http://"+head+"/health")
	tests := []struct {
		name, key string
		want      int
	}{
		{"no key", "", 401},
		{"wrong key", "nope-nope-nope", 401},
		{"the flag's key", "flag-key-123", 200},
		{"the file's key", "file-key-123", 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", "http://"+head+"/v1/models", nil)
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
	for _, args := range [][]string{
		{"serve", "--demo", "--auth-all"},
		{"serve", "--demo", "--api-key", "short"},
		{"serve", "--demo", "--api-key-file", filepath.Join(dir, "missing")},
	} {
		err := box(args...).Run()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
			t.Fatalf("box %v: exit %v, want 2", args, err)
		}
	}
}
