package worker

import (
	"context"
	"crypto/subtle"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// AdminGuard is who may use the admin API.
type AdminGuard struct {
	// Token is required as "Authorization: Bearer TOKEN" on every request
	// (on writes only when ReadOpen).
	Token    string
	ReadOpen bool // GETs need no token (Prometheus scrapes, dashboards)
	// Hosts are extra names the API may be reached by; IP literals and
	// localhost always may. Anything else in a Host header is refused, so
	// a DNS-rebinding page cannot talk to the API.
	Hosts []string
	// Allow lists client networks, as --allow does for RPC (empty: any).
	Allow []netip.Prefix
}

// Wrap returns next behind the guard. A browser page on another origin
// cannot use the API either: a request with a foreign Origin is refused,
// and a POST must say application/json (which a cross-site form cannot
// send without a preflight that is never answered).
func (g AdminGuard) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if code, msg := g.check(r); code != 0 {
			writeJSON(rw, code, map[string]string{"error": msg})
			return
		}
		next.ServeHTTP(rw, r)
	})
}

func (g AdminGuard) check(r *http.Request) (int, string) {
	if len(g.Allow) > 0 {
		ap, err := netip.ParseAddrPort(r.RemoteAddr)
		if err != nil || !slices.ContainsFunc(g.Allow, func(p netip.Prefix) bool { return p.Contains(ap.Addr().Unmap()) }) {
			return http.StatusForbidden, "client not in --allow"
		}
	}
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if _, err := netip.ParseAddr(host); err != nil && !strings.EqualFold(host, "localhost") &&
		!slices.ContainsFunc(g.Hosts, func(h string) bool { return strings.EqualFold(h, host) }) {
		return http.StatusForbidden, "unknown Host " + r.Host + " (add it with --admin-host)"
	}
	if o := r.Header.Get("Origin"); o != "" && o != "http://"+r.Host && o != "https://"+r.Host {
		return http.StatusForbidden, "cross-origin requests are refused"
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
			return http.StatusUnsupportedMediaType, "POST needs Content-Type: application/json"
		}
	} else if g.ReadOpen {
		return 0, ""
	}
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || g.Token == "" || subtle.ConstantTimeCompare([]byte(got), []byte(g.Token)) != 1 {
		return http.StatusUnauthorized, "admin token required (Authorization: Bearer; box reads it from $BOX_ADMIN_TOKEN or the worker's --admin-token-file)"
	}
	return 0, ""
}

// ServeAdmin serves the admin API (AdminHandler, plus extra routes such as
// GET /v1/probe) on ln behind g until stop is called; stop gives requests in
// flight 2 s.
func (w *Worker) ServeAdmin(ln net.Listener, version string, g AdminGuard, extra map[string]http.HandlerFunc) (stop func()) {
	mux := http.NewServeMux()
	mux.Handle("/", w.AdminHandler(version))
	for pattern, h := range extra {
		mux.HandleFunc(pattern, h)
	}
	srv := &http.Server{Handler: g.Wrap(mux), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}
}
