// Package tui is boxtop: a terminal view of box workers' memory, connections
// and buffer bindings. The data layer (Poller: polling admin APIs, keeping
// history, deriving alerts) is separate from the bubbletea Model, which only
// renders Snapshots and turns keys into requests; Poll runs in tea.Cmds, so
// Update and View never block.
package tui

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/boxproj/box/probe"
	"github.com/boxproj/box/worker"
)

// Target is one worker admin API to watch.
type Target struct {
	Name string // shown in the panes; defaults to the URL's host:port
	URL  string // admin API base URL
}

// ParseTargets reads "URL" or "name=URL" items, comma-separated.
func ParseTargets(s string) ([]Target, error) {
	var out []Target
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		var t Target
		if name, u, ok := strings.Cut(item, "="); ok {
			t = Target{Name: name, URL: probe.NormalizeURL(u)}
		} else {
			t = Target{URL: probe.NormalizeURL(item)}
		}
		if t.URL == "" || t.Name == "" && item == "=" {
			return nil, fmt.Errorf("bad node %q: want URL or name=URL", item)
		}
		if t.Name == "" {
			t.Name = hostOf(t.URL)
		}
		out = append(out, t)
	}
	return out, nil
}

func hostOf(u string) string {
	if _, rest, ok := strings.Cut(u, "://"); ok {
		u = rest
	}
	h, _, _ := strings.Cut(u, "/")
	return h
}

// Config says what a Poller watches.
type Config struct {
	// Nodes are worker admin APIs. With Head set, the workers come from the
	// head's /v1/cluster instead (each worker's admin URL), named by their
	// RPC address.
	Nodes []Target
	Head  string
	// Timeout bounds each request (default 2s): a dead node delays a poll by
	// at most this much, and the others are fetched at the same time.
	Timeout time.Duration
	// History is how many samples of bound bytes are kept per device
	// (default 60).
	History int
	HTTP    *http.Client
	// Now is the clock (default time.Now).
	Now func() time.Time
	// NVML, when set, is asked each poll for this host's GPUs; processes that
	// are not box holding GPU memory become alerts.
	NVML func() *probe.NVML
	// Transform, when set, edits each snapshot before it is returned (tests
	// use it to normalise ports, times and host memory).
	Transform func(*Snapshot)
}

// Snapshot is one poll of every node, with history and alerts.
type Snapshot struct {
	Time      time.Time
	Head      string // head URL when watching a head
	HeadState string // the head's state (ready, degraded, ...)
	HeadError string
	Nodes     []Node
	Alerts    []Alert
}

// Node states.
const (
	StateUp       = "up"
	StateDown     = "down"
	StateDegraded = "degraded"
)

// Node is one worker as last seen.
type Node struct {
	Name string
	URL  string // admin URL ("" when the head knows none)
	Addr string // RPC address (from the head)
	// State is up, down (admin API unreachable) or degraded (reachable, but
	// the head reports it down, or memory is bound to no live connection).
	State     string
	DownSince time.Time
	Error     string // why down or degraded
	// Info and Conns are the last answers; a down node keeps what it said
	// last, so its devices stay listed.
	Info  worker.NodeInfo
	Conns []worker.ConnInfo
	// History holds recent bound bytes per device (Info.Devices order),
	// oldest first.
	History [][]uint64
	// Seen reports whether the node ever answered.
	Seen bool
}

// Alert kinds.
const (
	AlertDown     = "down"     // node unreachable
	AlertBaseline = "baseline" // bytes still bound after a connection ended
	AlertOrphan   = "orphan"   // buffers bound to a connection the worker reports closed
	AlertReaped   = "reaped"   // a dead or idle peer was reaped
	AlertQuota    = "quota"    // an allocation refused by a quota
	AlertLeaked   = "leaked"   // a connection ended and kept its buffers (fault injection)
	AlertGPU      = "gpu"      // NVML: GPU memory used by a process that is not box
)

// Alert is a condition (Active: true while it lasts) or an event.
type Alert struct {
	Time   time.Time
	Node   string
	Kind   string
	Text   string
	Active bool
}

// Poller polls admin APIs and keeps history. It is safe for concurrent use.
type Poller struct {
	cfg   Config
	admin probe.AdminClient

	mu      sync.Mutex
	targets []Target
	track   map[string]*track // by URL
	events  []Alert           // event alerts, oldest first
	head    probe.Cluster
	headErr string
}

type track struct {
	node    Node
	cursor  uint64    // last event seq seen
	started time.Time // worker start time: a restart resets the cursor
	ended   []endedConn
}

type endedConn struct {
	id    uint64
	when  time.Time
	bytes uint64
}

const maxEventAlerts = 200

// NewPoller makes a Poller; nothing is fetched until Poll.
func NewPoller(cfg Config) *Poller {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Second
	}
	if cfg.History <= 0 {
		cfg.History = 60
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	p := &Poller{cfg: cfg, admin: probe.AdminClient{HTTP: cfg.HTTP}, track: map[string]*track{}}
	for _, t := range cfg.Nodes {
		t.URL = probe.NormalizeURL(t.URL)
		if t.Name == "" {
			t.Name = hostOf(t.URL)
		}
		p.targets = append(p.targets, t)
	}
	return p
}

type fetched struct {
	info   worker.NodeInfo
	conns  []worker.ConnInfo
	events []worker.Event
	err    error
}

// Poll fetches every node at once (each request bounded by Timeout) and
// returns the new snapshot.
func (p *Poller) Poll(ctx context.Context) Snapshot {
	var headWorkers map[string]probe.ClusterWorker
	if p.cfg.Head != "" {
		hctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
		cl, err := p.admin.Cluster(hctx, p.cfg.Head)
		cancel()
		p.mu.Lock()
		if err != nil {
			p.headErr = "head " + p.cfg.Head + ": " + errWords(err)
		} else {
			p.headErr = ""
			p.head = cl
			p.targets = p.targets[:0]
			for _, w := range cl.Workers {
				p.targets = append(p.targets, Target{Name: w.Addr, URL: probe.NormalizeURL(w.Admin)})
			}
		}
		headWorkers = map[string]probe.ClusterWorker{}
		for _, w := range p.head.Workers {
			headWorkers[w.Addr] = w
		}
		p.mu.Unlock()
	}
	p.mu.Lock()
	targets := slices.Clone(p.targets)
	cursors := make([]uint64, len(targets))
	starts := make([]time.Time, len(targets))
	for i, t := range targets {
		if tr := p.track[t.URL]; tr != nil {
			cursors[i], starts[i] = tr.cursor, tr.started
		}
	}
	p.mu.Unlock()

	res := make([]fetched, len(targets))
	var wg sync.WaitGroup
	for i, t := range targets {
		if t.URL == "" {
			res[i].err = fmt.Errorf("the head knows no admin URL for this worker")
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
			defer cancel()
			res[i] = p.fetch(c, t.URL, cursors[i], starts[i])
		}()
	}
	var nv *probe.NVML
	if p.cfg.NVML != nil {
		wg.Add(1)
		go func() { defer wg.Done(); nv = p.cfg.NVML() }()
	}
	wg.Wait()

	now := p.cfg.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	snap := Snapshot{Time: now, Head: p.cfg.Head, HeadError: p.headErr}
	if p.cfg.Head != "" {
		snap.HeadState = p.head.State
	}
	var active []Alert
	for i, t := range targets {
		key := t.URL
		if key == "" {
			key = "addr:" + t.Name
		}
		tr := p.track[key]
		if tr == nil {
			tr = &track{node: Node{Name: t.Name, URL: t.URL}}
			p.track[key] = tr
		}
		tr.node.Name = t.Name
		if hw, ok := headWorkers[t.Name]; ok {
			tr.node.Addr = hw.Addr
		}
		p.update(tr, res[i], now)
		n := &tr.node
		// Conditions, recomputed every poll.
		if n.State == StateDown {
			active = append(active, Alert{Time: n.DownSince, Node: n.Name, Kind: AlertDown, Active: true,
				Text: "unreachable: " + n.Error})
		} else {
			var reasons []string
			if hw, ok := headWorkers[t.Name]; ok && hw.State == StateDown {
				reasons = append(reasons, "head lost it: "+hw.Error)
			}
			var live, orphan uint64
			for _, c := range n.Conns {
				if c.State == "closed" {
					if len(c.Buffers) > 0 {
						orphan += c.Bytes
						active = append(active, Alert{Time: now, Node: n.Name, Kind: AlertOrphan, Active: true,
							Text: fmt.Sprintf("conn %d is closed but holds %d buffers (%s)", c.ID, len(c.Buffers), probe.HumanBytes(c.Bytes))})
					}
					continue
				}
				live += c.Bytes
			}
			if n.Info.BoundBytes > live && len(tr.ended) > 0 {
				last := tr.ended[len(tr.ended)-1]
				active = append(active, Alert{Time: last.when, Node: n.Name, Kind: AlertBaseline, Active: true,
					Text: fmt.Sprintf("%s not returned after conn %d ended", probe.HumanBytes(n.Info.BoundBytes-live), last.id)})
				reasons = append(reasons, "memory not returned")
			} else if n.Info.BoundBytes == live {
				tr.ended = nil // back to baseline
			}
			if orphan > 0 {
				reasons = append(reasons, "buffers on a closed connection")
			}
			if len(reasons) > 0 {
				n.State, n.Error = StateDegraded, strings.Join(reasons, "; ")
			}
		}
		snap.Nodes = append(snap.Nodes, cloneNode(*n))
	}
	if nv != nil {
		for _, gp := range nv.NonBox() {
			active = append(active, Alert{Time: now, Node: "local", Kind: AlertGPU, Active: true,
				Text: fmt.Sprintf("GPU%d: %s (pid %d) holds %s outside box", gp.GPU, gp.Name, gp.PID, probe.HumanBytes(gp.UsedMemory))})
		}
	}
	snap.Alerts = active
	for i := len(p.events) - 1; i >= 0; i-- {
		snap.Alerts = append(snap.Alerts, p.events[i])
	}
	if p.cfg.Transform != nil {
		p.cfg.Transform(&snap)
	}
	return snap
}

func (p *Poller) fetch(ctx context.Context, url string, after uint64, started time.Time) fetched {
	var f fetched
	if f.info, f.err = p.admin.Node(ctx, url); f.err != nil {
		return f
	}
	if f.conns, f.err = p.admin.Connections(ctx, url); f.err != nil {
		return f
	}
	if !started.IsZero() && !f.info.Started.Equal(started) {
		after = 0 // restarted: a new event log
	}
	// Events are best effort: a node without them is still up.
	f.events, _ = p.admin.Events(ctx, url, after)
	return f
}

// update folds one fetch into a node's track. Called with p.mu held.
func (p *Poller) update(tr *track, f fetched, now time.Time) {
	n := &tr.node
	if f.err != nil {
		if n.State != StateDown {
			n.DownSince = now
		}
		n.State, n.Error = StateDown, errWords(f.err)
		// Keep the last devices and history; the connections are unknown.
		n.Conns = nil
		return
	}
	if !tr.started.IsZero() && !f.info.Started.Equal(tr.started) {
		// The worker restarted: its event log and ids start over.
		tr.cursor, tr.ended = 0, nil
		n.History = nil
	}
	tr.started = f.info.Started
	// Connections that vanished since the last poll ended.
	if n.Seen && n.State != StateDown {
		for _, old := range n.Conns {
			if !slices.ContainsFunc(f.conns, func(c worker.ConnInfo) bool { return c.ID == old.ID }) {
				tr.ended = append(tr.ended, endedConn{id: old.ID, when: now, bytes: old.Bytes})
			}
		}
	}
	n.State, n.Error, n.DownSince, n.Seen = StateUp, "", time.Time{}, true
	n.Info, n.Conns = f.info, f.conns
	if len(n.History) != len(f.info.Devices) {
		n.History = make([][]uint64, len(f.info.Devices))
	}
	for i, d := range f.info.Devices {
		h := append(n.History[i], d.BoundBytes)
		if len(h) > p.cfg.History {
			h = h[len(h)-p.cfg.History:]
		}
		n.History[i] = h
	}
	for _, e := range f.events {
		if e.Seq <= tr.cursor {
			continue
		}
		tr.cursor = e.Seq
		var a Alert
		switch {
		case e.Kind == "disconnect" && (e.Reason == "dead-peer" || e.Reason == "idle"):
			a = Alert{Kind: AlertReaped, Text: fmt.Sprintf("reaped conn %d (%s, %s): freed %d buffers, %s",
				e.Conn, e.Peer, e.Reason, e.Buffers, probe.HumanBytes(e.Bytes))}
		case e.Kind == "quota":
			a = Alert{Kind: AlertQuota, Text: fmt.Sprintf("quota refused conn %d: %s", e.Conn, e.Detail)}
		case e.Kind == "leaked":
			a = Alert{Kind: AlertLeaked, Text: fmt.Sprintf("conn %d ended and kept %d buffers (%s)", e.Conn, e.Buffers, probe.HumanBytes(e.Bytes))}
		default:
			continue
		}
		a.Time, a.Node = e.Time, n.Name
		p.events = append(p.events, a)
	}
	if len(p.events) > maxEventAlerts {
		p.events = p.events[len(p.events)-maxEventAlerts:]
	}
}

// Close closes connection id on the named node through its admin API; the
// worker frees the connection's buffers before it answers.
func (p *Poller) Close(ctx context.Context, node string, id uint64) error {
	p.mu.Lock()
	var url string
	for _, t := range p.targets {
		if t.Name == node {
			url = t.URL
		}
	}
	p.mu.Unlock()
	if url == "" {
		return fmt.Errorf("no admin URL for node %s", node)
	}
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout+3*time.Second)
	defer cancel()
	return p.admin.Close(ctx, url, id)
}

func cloneNode(n Node) Node {
	n.Conns = slices.Clone(n.Conns)
	for i := range n.Conns {
		n.Conns[i].Buffers = slices.Clone(n.Conns[i].Buffers)
	}
	n.Info.Devices = slices.Clone(n.Info.Devices)
	h := make([][]uint64, len(n.History))
	for i := range n.History {
		h[i] = slices.Clone(n.History[i])
	}
	n.History = h
	return n
}

func errWords(err error) string {
	s := err.Error()
	switch {
	case strings.Contains(s, "connection refused"):
		return "connection refused"
	case strings.Contains(s, "context deadline exceeded"), strings.Contains(s, "Client.Timeout"):
		return "timed out"
	case strings.Contains(s, "no such host"):
		return "unknown host"
	}
	return s
}
