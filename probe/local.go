package probe

import (
	"encoding/json"
	"net"
	"net/http"
	"strings"
)

// LocalHandler serves this node's view (Local) as JSON: GET /v1/probe of
// the worker admin API.
func LocalHandler(rw http.ResponseWriter, r *http.Request) {
	rw.Header().Set("Content-Type", "application/json")
	json.NewEncoder(rw).Encode(Local(r.Context()))
}

// IsLocalURL reports whether a URL's (or a bare host:port's) host is this
// machine's loopback: the node shares this host's GPUs and NVML.
func IsLocalURL(u string) bool {
	if u == "" {
		return false
	}
	h := u
	if _, rest, ok := strings.Cut(h, "://"); ok {
		h = rest
	}
	h, _, _ = strings.Cut(h, "/")
	if host, _, err := net.SplitHostPort(h); err == nil {
		h = host
	}
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(strings.Trim(h, "[]"))
	return ip != nil && ip.IsLoopback()
}
