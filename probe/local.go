package probe

import (
	"net"
	"strings"
)

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
