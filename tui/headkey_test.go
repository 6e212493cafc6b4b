package tui

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/boxproj/box/serve"
)

// A head started with --api-key (a real serve.Server, still loading) is
// watched only with its key: without it /v1/cluster answers 401 and the
// head shows as unreachable, saying why.
func TestPollerSendsTheHeadKey(t *testing.T) {
	srv := serve.New(serve.Config{ModelPath: "/nonexistent/m.gguf", ModelID: "m", APIKeys: []string{"k-1"}},
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	for _, tc := range []struct {
		key       string
		reachable bool
	}{
		{"", false},
		{"wrong", false},
		{"k-1", true},
	} {
		p := NewPoller(Config{Head: hs.URL, HeadKey: tc.key, Timeout: 2 * time.Second})
		s := p.Poll(context.Background())
		st := s.HeadStats
		if st == nil || st.Reachable != tc.reachable {
			t.Fatalf("key %q: head stats %+v, want reachable %v", tc.key, st, tc.reachable)
		}
		if tc.reachable {
			if st.State != "loading" || st.Model != "m" {
				t.Errorf("key %q: state %q, model %q; want loading, m", tc.key, st.State, st.Model)
			}
		} else if !strings.Contains(s.HeadError, "401") {
			t.Errorf("key %q: head error %q, want the 401 named", tc.key, s.HeadError)
		}
	}
}
