// Package cluster is the head's view of its workers: connecting to them,
// planning how a model is split over them before anything is allocated,
// watching that they stay alive, and reporting it all.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/boxproj/box/remote"
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

// Cluster holds the connections to every worker.
type Cluster struct {
	Endpoints []Endpoint
	log       *slog.Logger

	mu    sync.Mutex
	nodes []*remote.Node
	since []time.Time // when each node went down (zero while up)
}

// Connect dials every worker. On any failure it closes what it opened and
// names the worker that failed.
func Connect(ctx context.Context, eps []Endpoint, log *slog.Logger) (*Cluster, error) {
	c := &Cluster{Endpoints: eps, log: log, since: make([]time.Time, len(eps))}
	for _, ep := range eps {
		dctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		n, err := remote.Connect(dctx, ep.Addr, log)
		cancel()
		if err != nil {
			c.Close()
			return nil, err
		}
		c.nodes = append(c.nodes, n)
	}
	return c, nil
}

// Nodes returns the connected nodes, in --rpc order.
func (c *Cluster) Nodes() []*remote.Node { return c.nodes }

// Err is the first node failure, naming the node.
func (c *Cluster) Err() error {
	var errs []error
	for i, n := range c.nodes {
		if err := n.Err(); err != nil {
			c.mu.Lock()
			if c.since[i].IsZero() {
				c.since[i] = time.Now()
			}
			c.mu.Unlock()
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Close ends every connection explicitly, so each worker frees what this
// head holds at once (not after a keepalive window).
func (c *Cluster) Close() {
	for _, n := range c.nodes {
		n.Close()
	}
}

// Reconnect dials every failed (or closed) node again; all must answer.
// Nodes that are up keep their connection.
func (c *Cluster) Reconnect(ctx context.Context) error {
	for i, n := range c.nodes {
		if n.Err() == nil {
			continue
		}
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := n.Reconnect(dctx)
		cancel()
		if err != nil {
			return err
		}
		c.mu.Lock()
		c.since[i] = time.Time{}
		c.mu.Unlock()
	}
	return nil
}

// SetTimeout gives every command on every node one fixed deadline
// (--rpc-timeout); 0 means deadlines derived from the work.
func (c *Cluster) SetTimeout(d time.Duration) {
	for _, n := range c.nodes {
		n.SetTimeout(d)
	}
}

// Heartbeat keeps every node under watch until ctx ends, and returns when
// every node's watcher has.
func (c *Cluster) Heartbeat(ctx context.Context, every time.Duration) {
	var wg sync.WaitGroup
	for _, n := range c.nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n.Heartbeat(ctx, every)
		}()
	}
	wg.Wait()
}

// DeviceNames lists every remote device, as ggml knows them, in order.
func (c *Cluster) DeviceNames() []string {
	var out []string
	for _, n := range c.nodes {
		for _, d := range n.Devices() {
			out = append(out, d.Name)
		}
	}
	return out
}

// Upload is what a load has sent one worker so far.
type Upload struct {
	Addr          string `json:"addr"`
	UploadedBytes int64  `json:"uploaded_bytes"` // tensor data sent since the connection opened
	PlacedBytes   int64  `json:"placed_bytes"`   // bytes in buffers allocated there
}

// Uploads reports, per node, the bytes uploaded and placed.
func (c *Cluster) Uploads() []Upload {
	out := make([]Upload, len(c.nodes))
	for i, n := range c.nodes {
		b, _ := n.Placed()
		out[i] = Upload{Addr: n.Addr, UploadedBytes: n.Uploaded(), PlacedBytes: b}
	}
	return out
}

// NodeView is one worker in GET /v1/cluster.
type NodeView struct {
	Addr        string    `json:"addr"`
	Admin       string    `json:"admin,omitempty"`
	State       string    `json:"state"` // up, down
	DownSince   time.Time `json:"down_since,omitzero"`
	Error       string    `json:"error,omitempty"`
	Devices     []string  `json:"devices"`
	Layers      int       `json:"layers"`       // layers the head placed there
	PlacedBytes int64     `json:"placed_bytes"` // bytes in buffers the head holds there
	Buffers     int64     `json:"buffers"`
}

// View reports every node; layers come from the last plan.
func (c *Cluster) View(plan *Plan) []NodeView {
	c.Err() // records down-since times
	out := make([]NodeView, len(c.nodes))
	for i, n := range c.nodes {
		b, nb := n.Placed()
		v := NodeView{Addr: n.Addr, Admin: c.Endpoints[i].Admin, State: "up", PlacedBytes: b, Buffers: nb}
		for _, d := range n.Devices() {
			v.Devices = append(v.Devices, d.Name)
		}
		if err := n.Err(); err != nil {
			v.State, v.Error = "down", err.Error()
			c.mu.Lock()
			v.DownSince = c.since[i]
			c.mu.Unlock()
		}
		if plan != nil && i < len(plan.Shares) {
			v.Layers = plan.Shares[i].Layers
		}
		out[i] = v
	}
	return out
}
