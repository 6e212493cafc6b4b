package api

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
)

// Endpoint is one worker: its RPC address and, when known, its admin API.
type Endpoint struct {
	Addr  string `json:"addr"`
	Admin string `json:"admin,omitempty"` // base URL, e.g. http://10.0.0.5:50053
}

// ParseEndpoints reads a --rpc list: "host:port[@adminhost:adminport]",
// comma-separated. Without "@", the admin API is assumed at the RPC port
// plus one (box worker's defaults are 50052 and 50053); it is only used for
// display, and a node whose admin API does not answer is still served.
func ParseEndpoints(s string) ([]Endpoint, error) {
	var out []Endpoint
	seen := map[string]bool{}
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		addr, admin, hasAdmin := strings.Cut(item, "@")
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, fmt.Errorf("--rpc %q: want host:port (%v)", item, err)
		}
		p, err := strconv.Atoi(port)
		if err != nil || p < 1 || p > 65535 {
			return nil, fmt.Errorf("--rpc %q: bad port", item)
		}
		if seen[addr] {
			return nil, fmt.Errorf("--rpc lists %s twice", addr)
		}
		seen[addr] = true
		ep := Endpoint{Addr: addr}
		switch {
		case hasAdmin && admin == "":
			// "host:port@": no admin API (llama.cpp's rpc-server); tools
			// take the node's state from the head.
		case hasAdmin:
			if _, _, err := net.SplitHostPort(admin); err != nil {
				return nil, fmt.Errorf("--rpc %q: admin address %q: want host:port", item, admin)
			}
			ep.Admin = "http://" + admin
		case p < 65535:
			ep.Admin = "http://" + net.JoinHostPort(host, strconv.Itoa(p+1))
		}
		out = append(out, ep)
	}
	if len(out) == 0 {
		return nil, errors.New("--rpc: no workers given")
	}
	return out, nil
}
