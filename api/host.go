package api

import (
	"net"
	"strings"
)

// HostOf is the host of a URL ("http://10.0.0.5:50053/v1"), a host:port
// ("[::1]:50052") or a bare host ("localhost"), without brackets.
func HostOf(s string) string {
	if _, rest, ok := strings.Cut(s, "://"); ok {
		s = rest
	}
	s, _, _ = strings.Cut(s, "/")
	if h, _, err := net.SplitHostPort(s); err == nil {
		s = h
	}
	return strings.Trim(s, "[]")
}

// IsLoopback reports whether s (a URL, host:port or host) names this
// machine's loopback: "localhost" or a loopback IP. A name is not resolved.
func IsLoopback(s string) bool {
	h := HostOf(s)
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// IsLocal reports whether s (a URL, host:port or host) names this machine:
// its loopback or one of its interfaces' addresses, so a node there shares
// this host's GPUs and NVML. A name other than localhost is not resolved.
func IsLocal(s string) bool {
	if IsLoopback(s) {
		return true
	}
	ip := net.ParseIP(HostOf(s))
	if ip == nil {
		return false
	}
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.Equal(ip) {
			return true
		}
	}
	return false
}
