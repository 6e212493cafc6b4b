// Package cluster is the head's view of its workers: connecting to them,
// planning how a model is split over them before anything is allocated,
// watching that they stay alive, and reporting it all.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/boxproj/box/api"
	"github.com/boxproj/box/remote"
)

// Endpoint is api.Endpoint: a worker's RPC address and admin URL.
type Endpoint = api.Endpoint

// ParseEndpoints reads a --rpc list (api.ParseEndpoints).
func ParseEndpoints(s string) ([]Endpoint, error) { return api.ParseEndpoints(s) }

// Cluster holds the connections to every worker.
type Cluster struct {
	Endpoints []Endpoint
	log       *slog.Logger

	mu    sync.Mutex
	nodes []*remote.Node
	retry []backoff // per node: when it may be dialed again
}

// Connect dials every worker. On any failure it closes what it opened and
// names the worker that failed.
func Connect(ctx context.Context, eps []Endpoint, log *slog.Logger) (*Cluster, error) {
	c := &Cluster{Endpoints: eps, log: log}
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

// Err is every node failure, each naming its node. It only reads: when a
// node went down is recorded where it is failed (remote.NodeError.At).
func (c *Cluster) Err() error {
	var errs []error
	for _, n := range c.nodes {
		if err := n.Err(); err != nil {
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

// Reconnect dials every failed (or closed) node again, each no sooner than
// its back-off allows (500 ms doubling to 30 s after each failed try); all
// must answer. Nodes that are up keep their connection and are never
// dialed; a failed node's old connection is closed before it is.
func (c *Cluster) Reconnect(ctx context.Context) error {
	now := time.Now()
	var errs []error
	for i, n := range c.nodes {
		if n.Err() == nil {
			continue
		}
		c.mu.Lock()
		if c.retry == nil {
			c.retry = make([]backoff, len(c.nodes))
		}
		b := &c.retry[i]
		wait := now.Before(b.next)
		c.mu.Unlock()
		if wait {
			errs = append(errs, fmt.Errorf("worker %s: next try in %v", n.Addr, b.next.Sub(now).Round(time.Millisecond)))
			continue
		}
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := n.Reconnect(dctx)
		cancel()
		c.mu.Lock()
		if err != nil {
			b.delay = min(max(2*b.delay, minRetry), maxRetry)
			b.next = time.Now().Add(b.delay)
		} else {
			*b = backoff{}
		}
		c.mu.Unlock()
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Re-dialing a failed node backs off from minRetry to maxRetry.
const (
	minRetry = 500 * time.Millisecond
	maxRetry = 30 * time.Second
)

type backoff struct {
	delay time.Duration
	next  time.Time
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
type NodeView = api.ClusterWorker

// View reports every node; layers come from the last plan.
func (c *Cluster) View(plan *Plan) []NodeView {
	out := make([]NodeView, len(c.nodes))
	for i, n := range c.nodes {
		b, nb := n.Placed()
		v := NodeView{Addr: n.Addr, Admin: c.Endpoints[i].Admin, State: "up", PlacedBytes: b, Buffers: nb}
		for _, d := range n.Devices() {
			v.Devices = append(v.Devices, d.Name)
		}
		if err := n.Err(); err != nil {
			v.State, v.Error = "down", err.Error()
			if ne := (*remote.NodeError)(nil); errors.As(err, &ne) {
				v.DownSince = ne.At
			}
		}
		if plan != nil && i < len(plan.Shares) {
			v.Layers = plan.Shares[i].Layers
		}
		out[i] = v
	}
	return out
}
