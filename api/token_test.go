package api

import (
	"os"
	"path/filepath"
	"testing"
)

func TestTokens(t *testing.T) {
	t.Setenv(TokenEnv, "")
	file := filepath.Join(t.TempDir(), "state", "admin-token")
	if tok, err := ClientToken("", file); err != nil || tok != "" {
		t.Fatalf("client before any worker: %q %v", tok, err)
	}
	tok, created, err := ServerToken("", file)
	if err != nil || !created || len(tok) != 64 {
		t.Fatalf("first worker: %q %v %v", tok, created, err)
	}
	if st, _ := os.Stat(file); st.Mode().Perm() != 0o600 {
		t.Fatalf("token file mode %v", st.Mode())
	}
	again, created, err := ServerToken("", file)
	if err != nil || created || again != tok {
		t.Fatalf("second worker: %q %v %v, want the same token", again, created, err)
	}
	if c, _ := ClientToken("", file); c != tok {
		t.Fatalf("client reads %q", c)
	}
	for _, tc := range []struct{ flag, env, want string }{
		{"flag", "env", "flag"},
		{"", "env", "env"},
		{"", "", tok},
	} {
		t.Setenv(TokenEnv, tc.env)
		if s, _, _ := ServerToken(tc.flag, file); s != tc.want {
			t.Fatalf("server %+v: %q", tc, s)
		}
		if c, _ := ClientToken(tc.flag, file); c != tc.want {
			t.Fatalf("client %+v: %q", tc, c)
		}
	}
	os.WriteFile(file, []byte("\n"), 0o600)
	t.Setenv(TokenEnv, "")
	if _, _, err := ServerToken("", file); err == nil {
		t.Fatal("an empty token file was accepted")
	}
}
