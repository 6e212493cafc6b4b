package worker

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
)

// The admin API refuses requests without the token, with a Host that is
// not this node (DNS rebinding), from another origin, or that a cross-site
// form could send; with ReadOpen, reads need no token but writes do.
func TestAdminGuard(t *testing.T) {
	w := startWorker(t, Config{})
	c := rawDial(t, w.addr, true) // a connection to close
	c.alloc(t, 4096)
	const token = "s3cret"
	for _, tc := range []struct {
		name     string
		guard    AdminGuard
		method   string
		path     string
		host     string
		header   map[string]string
		wantCode int
	}{
		{"no token", AdminGuard{Token: token}, "GET", "/v1/node", "", nil, 401},
		{"wrong token", AdminGuard{Token: token}, "GET", "/v1/node", "", map[string]string{"Authorization": "Bearer nope"}, 401},
		{"token", AdminGuard{Token: token}, "GET", "/v1/connections", "", map[string]string{"Authorization": "Bearer " + token}, 200},
		{"metrics need it too", AdminGuard{Token: token}, "GET", "/metrics", "", nil, 401},
		{"rebinding host", AdminGuard{Token: token}, "GET", "/v1/node", "evil.example:50053", map[string]string{"Authorization": "Bearer " + token}, 403},
		{"configured host", AdminGuard{Token: token, Hosts: []string{"worker1.lan"}}, "GET", "/v1/node", "worker1.lan:50053", map[string]string{"Authorization": "Bearer " + token}, 200},
		{"localhost", AdminGuard{Token: token}, "GET", "/v1/node", "localhost:50053", map[string]string{"Authorization": "Bearer " + token}, 200},
		{"cross-origin", AdminGuard{Token: token}, "POST", "/v1/connections/999/close", "",
			map[string]string{"Authorization": "Bearer " + token, "Origin": "http://evil.example", "Content-Type": "application/json"}, 403},
		{"text/plain post", AdminGuard{Token: token}, "POST", "/v1/connections/999/close", "",
			map[string]string{"Authorization": "Bearer " + token, "Content-Type": "text/plain"}, 415},
		{"json post", AdminGuard{Token: token}, "POST", "/v1/connections/999/close", "",
			map[string]string{"Authorization": "Bearer " + token, "Content-Type": "application/json"}, 404},
		{"read-open get", AdminGuard{Token: token, ReadOpen: true}, "GET", "/v1/node", "", nil, 200},
		{"read-open post", AdminGuard{Token: token, ReadOpen: true}, "POST", "/v1/connections/999/close", "",
			map[string]string{"Content-Type": "application/json"}, 401},
		{"not in --allow", AdminGuard{Token: token, Allow: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}, "GET", "/v1/node", "",
			map[string]string{"Authorization": "Bearer " + token}, 403},
		{"empty token refuses all", AdminGuard{}, "GET", "/v1/node", "", map[string]string{"Authorization": "Bearer "}, 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(tc.guard.Wrap(w.AdminHandler("test")))
			defer srv.Close()
			req, _ := http.NewRequest(tc.method, srv.URL+tc.path, strings.NewReader(""))
			if tc.host != "" {
				req.Host = tc.host
			}
			for k, v := range tc.header {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.wantCode {
				t.Fatalf("%s %s: %d, want %d", tc.method, tc.path, resp.StatusCode, tc.wantCode)
			}
		})
	}
	// None of the refused closes got through.
	if n := len(w.Connections()); n != 1 {
		t.Fatalf("%d connections, want the one still open", n)
	}
}
