package api

import (
	"net"
	"testing"
)

func TestLocality(t *testing.T) {
	var iface string // an address of this host that is not loopback, if any
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() {
			iface = n.IP.String()
			break
		}
	}
	for _, c := range []struct {
		in              string
		host            string
		loopback, local bool
	}{
		{"http://127.0.0.1:50053", "127.0.0.1", true, true},
		{"http://127.0.0.1:50053/v1/node", "127.0.0.1", true, true},
		{"http://[::1]:5/", "::1", true, true},
		{"127.0.0.2:50052", "127.0.0.2", true, true},
		{"[::1]:50052", "::1", true, true},
		{"http://[::1]:8080", "::1", true, true},
		{"localhost", "localhost", true, true},
		{"LocalHost:1", "LocalHost", true, true},
		{"http://10.255.255.1:50053", "10.255.255.1", false, false},
		{"203.0.113.7", "203.0.113.7", false, false},
		{"worker-1.box:50052", "worker-1.box", false, false},
		{"", "", false, false},
	} {
		if h := HostOf(c.in); h != c.host {
			t.Errorf("HostOf(%q) = %q, want %q", c.in, h, c.host)
		}
		if IsLoopback(c.in) != c.loopback || IsLocal(c.in) != c.local {
			t.Errorf("%q: loopback %v local %v, want %v %v", c.in, IsLoopback(c.in), IsLocal(c.in), c.loopback, c.local)
		}
	}
	if iface != "" {
		if u := "http://" + net.JoinHostPort(iface, "50053"); !IsLocal(u) || IsLoopback(u) {
			t.Errorf("%s, an address of this host: local %v loopback %v", u, IsLocal(u), IsLoopback(u))
		}
	}
}
