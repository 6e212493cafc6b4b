// Package tui is boxtop: a terminal view of box workers' memory, connections
// and buffer bindings, and of the head that serves over them. The data layer
// (Poller: polling admin APIs and the head, keeping history, deriving alerts
// and the event log) is separate from the bubbletea Model, which only renders
// Snapshots and turns keys into requests; Poll runs in tea.Cmds, so Update and
// View never block.
package tui

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/boxproj/box/api"
	"github.com/boxproj/box/probe"
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
			t = Target{Name: name, URL: api.NormalizeURL(u)}
		} else {
			t = Target{URL: api.NormalizeURL(item)}
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
	// (default 600: ten minutes at one poll a second).
	History int
	HTTP    *http.Client
	// AdminToken is the workers' admin token, sent to their admin APIs only.
	AdminToken string
	// HeadKey is the head's API key (box serve --api-key), sent to the head
	// only.
	HeadKey string
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
	HeadState string // the head's state (ok, loading, degraded, ...)
	HeadError string // set when the head cannot be reached
	// HeadStats is the head's serving view; nil unless watching a head.
	HeadStats *HeadStats
	Nodes     []Node
	// Alerts holds the active conditions first, then the event log (worker
	// events, alerts that ended, with their duration), newest first.
	Alerts []Alert
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
	Info  api.NodeInfo
	Conns []api.ConnInfo
	// Activity is each connection's rates since the previous poll, by id.
	Activity map[uint64]Activity
	// History holds recent bound bytes per device (Info.Devices order),
	// oldest first.
	History [][]uint64
	// Seen reports whether the node ever answered.
	Seen bool
	// What the head says of this worker (InHead false: no head, or the head
	// does not list it): the layers it placed there, the bytes it holds
	// there and the bytes its plan said the share needs.
	InHead bool
	Layers int
	Placed uint64
	Need   uint64
	// HeadConn is the id of the connection the head holds (0: none known).
	HeadConn uint64
}

// Activity is one connection's rates between two polls. Rated is false on
// the first sight of a connection, and for workers without the counters.
type Activity struct {
	Rated      bool
	CmdsPerSec float64
	InPerSec   float64
	OutPerSec  float64
}

// Alert kinds.
const (
	AlertDown     = "down"       // node unreachable
	AlertBaseline = "baseline"   // bytes still bound after a connection ended
	AlertOrphan   = "orphan"     // buffers bound to a connection the worker reports closed
	AlertLost     = "lost"       // the head reports the worker down
	AlertReaped   = "reaped"     // a dead or idle peer was reaped
	AlertQuota    = "quota"      // an allocation refused by a quota
	AlertGPU      = "gpu"        // NVML: GPU memory used by a process that is not box
	AlertHead     = "head"       // the head is unreachable, degraded or failed
	AlertClosed   = "closed"     // an operator closed a connection
	AlertCrashed  = "crashed"    // a connection's compute process crashed
	AlertUnfreed  = "unreleased" // a connection ended but its memory was not given back (its process lives on, or the driver still lists it)
	AlertTimeout  = "timeout"    // a connection closed because a compute took too long
	AlertViolate  = "violation"  // a connection dropped for a protocol violation
	AlertRefused  = "refused"    // a peer refused by --allow
)

// Kinds of the event log's plain entries (Info: true).
const (
	EventConnect    = "connect"
	EventDisconnect = "disconnect"
	EventShutdown   = "shutdown"
	EventOther      = "event"
)

// Alert is a condition (Active while it lasts; End set once it is over) or
// an event (Info: routine, not an alert).
type Alert struct {
	Time   time.Time
	End    time.Time // when a condition ended; zero while active and for events
	Node   string
	Kind   string
	Text   string
	Active bool
	Info   bool
	key    string // a condition's identity across polls
}

// Lasted is how long an ended condition held.
func (a Alert) Lasted() time.Duration {
	if a.End.IsZero() {
		return 0
	}
	return a.End.Sub(a.Time)
}

// Poller polls admin APIs and keeps history. It is safe for concurrent use.
type Poller struct {
	cfg   Config
	admin api.Client

	mu       sync.Mutex
	targets  []Target
	track    map[string]*track // by URL
	log      []Alert           // the event log, oldest first
	conds    map[string]*Alert // active conditions by key
	condSeq  []string          // their keys in the order they began
	head     api.ClusterView
	headErr  string
	stats    HeadStats
	hsamples []headSample
}

type track struct {
	node    Node
	cursor  uint64    // last event seq seen
	started time.Time // worker start time: a restart resets the cursor
	ended   []endedConn
	prevAt  time.Time // when Conns were fetched
}

type endedConn struct {
	id    uint64
	when  time.Time
	bytes uint64
}

const maxLog = 300

// Local reports whether the head or a node is on this host (api.IsLocal):
// then this host's NVML sees their GPUs.
func (c Config) Local() bool {
	return api.IsLocal(c.Head) || slices.ContainsFunc(c.Nodes, func(t Target) bool { return api.IsLocal(t.URL) })
}

// NewPoller makes a Poller; nothing is fetched until Poll.
func NewPoller(cfg Config) *Poller {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Second
	}
	if cfg.History <= 0 {
		cfg.History = 600
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.HTTP == nil {
		cfg.HTTP = http.DefaultClient
	}
	cfg.Head = api.NormalizeURL(cfg.Head)
	p := &Poller{cfg: cfg, admin: api.Client{HTTP: cfg.HTTP, Token: cfg.AdminToken}, track: map[string]*track{}, conds: map[string]*Alert{}}
	p.stats.URL = cfg.Head
	for _, t := range cfg.Nodes {
		t.URL = api.NormalizeURL(t.URL)
		if t.Name == "" {
			t.Name = hostOf(t.URL)
		}
		p.targets = append(p.targets, t)
	}
	return p
}

type fetched struct {
	info   api.NodeInfo
	conns  []api.ConnInfo
	events []api.Event
	err    error
}

// headWorker is what the head says about one worker.
type headWorker struct {
	api.ClusterWorker
	need uint64
}

// Poll fetches every node at once (each request bounded by Timeout) and
// returns the new snapshot.
func (p *Poller) Poll(ctx context.Context) Snapshot {
	var headWorkers map[string]headWorker
	if p.cfg.Head != "" {
		hctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
		hf := fetchHead(hctx, p.cfg.HTTP, p.cfg.Head, p.cfg.HeadKey)
		cancel()
		now := p.cfg.Now()
		p.mu.Lock()
		if hf.err != nil {
			p.headErr = "head " + p.cfg.Head + ": " + errWords(hf.err)
		} else {
			p.headErr = ""
			p.head = hf.cluster
			p.targets = p.targets[:0]
			for _, w := range hf.cluster.Workers {
				p.targets = append(p.targets, Target{Name: w.Addr, URL: api.NormalizeURL(w.Admin)})
			}
		}
		p.stats = headStats(p.stats, hf, &p.hsamples, now)
		headWorkers = map[string]headWorker{}
		for _, w := range p.head.Workers {
			headWorkers[w.Addr] = headWorker{ClusterWorker: w}
		}
		for _, s := range p.head.Plan {
			if hw, ok := headWorkers[s.Addr]; ok {
				hw.need = s.Need
				if hw.Layers == 0 {
					hw.Layers = s.Layers
				}
				headWorkers[s.Addr] = hw
			}
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
	var conds []Alert
	if p.cfg.Head != "" {
		snap.HeadState = p.head.State
		st := p.stats
		snap.HeadStats = &st
		conds = append(conds, headConds(st)...)
	}
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
		hw, inHead := headWorkers[t.Name]
		if t.URL == "" && inHead {
			// A worker without an admin API (a llama.cpp rpc-server, or
			// --rpc host:port@): what the head says is all there is.
			p.updateFromHead(tr, hw.ClusterWorker, now)
		} else {
			p.update(tr, res[i], now)
		}
		n := &tr.node
		n.InHead, n.Layers, n.Placed, n.Need, n.HeadConn = inHead, 0, 0, 0, 0
		if inHead {
			n.Addr, n.Layers, n.Placed, n.Need = hw.Addr, hw.Layers, uint64(max(0, hw.PlacedBytes)), hw.need
			n.HeadConn = headConn(n, hw, p.cfg.Head)
		}
		conds = append(conds, p.nodeConds(tr, hw, inHead, now)...)
		snap.Nodes = append(snap.Nodes, cloneNode(*n))
	}
	if nv != nil {
		for _, gp := range nv.NonBox() {
			conds = append(conds, Alert{Time: now, Node: "local", Kind: AlertGPU, key: fmt.Sprintf("gpu|%d|%d", gp.GPU, gp.PID),
				Text: fmt.Sprintf("GPU%d: %s (pid %d) holds %s outside box", gp.GPU, gp.Name, gp.PID, probe.HumanBytes(gp.UsedMemory))})
		}
	}
	snap.Alerts = p.observe(conds, now)
	for i := len(p.log) - 1; i >= 0; i-- {
		snap.Alerts = append(snap.Alerts, p.log[i])
	}
	if p.cfg.Transform != nil {
		p.cfg.Transform(&snap)
	}
	return snap
}

// headConds are the head's conditions: unreachable, or not serving.
func headConds(st HeadStats) []Alert {
	switch {
	case !st.Reachable:
		return []Alert{{Time: st.Since, Node: "head", Kind: AlertHead, key: "head|unreachable",
			Text: "head unreachable: " + st.Error}}
	case st.State == "degraded" || st.State == "error":
		text := "head " + st.State
		if st.Error != "" {
			text += ": " + st.Error
		}
		return []Alert{{Time: st.Since, Node: "head", Kind: AlertHead, key: "head|" + st.State, Text: text}}
	}
	return nil
}

// headConn finds the connection the head holds on a worker: the one whose
// bytes and buffers are what the head says it placed there, or else the
// only live connection from the head's host.
func headConn(n *Node, hw headWorker, head string) uint64 {
	if n.State == StateDown {
		return 0
	}
	if hw.PlacedBytes > 0 {
		for _, c := range n.Conns {
			if c.State != "closed" && c.Bytes == uint64(hw.PlacedBytes) && int64(len(c.Buffers)) == hw.Buffers {
				return c.ID
			}
		}
	}
	hh := hostOf(head)
	if h, _, err := net.SplitHostPort(hh); err == nil {
		hh = h
	}
	var id uint64
	for _, c := range n.Conns {
		ph, _, err := net.SplitHostPort(c.Peer)
		if err != nil || c.State == "closed" || ph != strings.Trim(hh, "[]") {
			continue
		}
		if id != 0 {
			return 0 // two from the head's host: cannot tell
		}
		id = c.ID
	}
	return id
}

// nodeConds are a node's conditions this poll; they also set a degraded
// state. Called with p.mu held.
func (p *Poller) nodeConds(tr *track, hw headWorker, inHead bool, now time.Time) []Alert {
	n := &tr.node
	if n.State == StateDown {
		return []Alert{{Time: n.DownSince, Node: n.Name, Kind: AlertDown, key: "down|" + n.Name,
			Text: "unreachable: " + n.Error}}
	}
	var out []Alert
	var reasons []string
	if inHead && hw.State == StateDown {
		reasons = append(reasons, "head lost it: "+hw.Error)
		out = append(out, Alert{Time: now, Node: n.Name, Kind: AlertLost, key: "lost|" + n.Name,
			Text: "the head lost this worker: " + hw.Error})
	}
	var live, orphan uint64
	for _, c := range n.Conns {
		if c.State == "closed" {
			if len(c.Buffers) > 0 {
				orphan += c.Bytes
				out = append(out, Alert{Time: now, Node: n.Name, Kind: AlertOrphan, key: fmt.Sprintf("orphan|%s|%d", n.Name, c.ID),
					Text: fmt.Sprintf("conn %d is closed but holds %d buffers (%s)", c.ID, len(c.Buffers), probe.HumanBytes(c.Bytes))})
			}
			continue
		}
		live += c.Bytes
	}
	if n.Info.BoundBytes > live && len(tr.ended) > 0 {
		last := tr.ended[len(tr.ended)-1]
		out = append(out, Alert{Time: last.when, Node: n.Name, Kind: AlertBaseline, key: "baseline|" + n.Name,
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
	return out
}

// observe folds this poll's conditions into the active set: a new one
// begins, one that holds keeps its start, and one that is gone ends and goes
// to the event log with its duration. It returns the active conditions in
// the order they began. Called with p.mu held.
func (p *Poller) observe(conds []Alert, now time.Time) []Alert {
	seen := map[string]bool{}
	for _, c := range conds {
		seen[c.key] = true
		if old := p.conds[c.key]; old != nil {
			old.Text = c.Text
			continue
		}
		c.Active = true
		p.conds[c.key] = &c
		p.condSeq = append(p.condSeq, c.key)
	}
	var out []Alert
	keep := p.condSeq[:0]
	for _, k := range p.condSeq {
		a := p.conds[k]
		if !seen[k] {
			ended := *a
			ended.Active, ended.End = false, now
			p.addLog(ended)
			delete(p.conds, k)
			continue
		}
		keep = append(keep, k)
		out = append(out, *a)
	}
	p.condSeq = keep
	return out
}

func (p *Poller) addLog(a Alert) {
	p.log = append(p.log, a)
	if len(p.log) > maxLog {
		p.log = p.log[len(p.log)-maxLog:]
	}
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
// updateFromHead sets a node's state from the head's view of it, for a
// worker with no admin API: up or down, no memory figures.
func (p *Poller) updateFromHead(tr *track, w api.ClusterWorker, now time.Time) {
	n := &tr.node
	if w.State == "down" {
		if n.State != StateDown {
			n.DownSince = now
			if !w.DownSince.IsZero() {
				n.DownSince = w.DownSince
			}
		}
		n.State, n.Error = StateDown, "the head says: "+w.Error
		return
	}
	n.State, n.Error, n.DownSince, n.Seen = StateUp, "no admin API: state from the head", time.Time{}, true
	n.Info, n.Conns, n.Activity, n.History = api.NodeInfo{}, nil, nil, nil
}

func (p *Poller) update(tr *track, f fetched, now time.Time) {
	n := &tr.node
	if f.err != nil {
		if n.State != StateDown {
			n.DownSince = now
		}
		n.State, n.Error = StateDown, errWords(f.err)
		// Keep the last devices and history; the connections are unknown.
		n.Conns, n.Activity = nil, nil
		return
	}
	if !tr.started.IsZero() && !f.info.Started.Equal(tr.started) {
		// The worker restarted: its event log and ids start over.
		tr.cursor, tr.ended = 0, nil
		n.History, n.Conns = nil, nil
	}
	tr.started = f.info.Started
	// Connections that vanished since the last poll ended.
	if n.Seen && n.State != StateDown {
		for _, old := range n.Conns {
			if !slices.ContainsFunc(f.conns, func(c api.ConnInfo) bool { return c.ID == old.ID }) {
				tr.ended = append(tr.ended, endedConn{id: old.ID, when: now, bytes: old.Bytes})
			}
		}
	}
	n.Activity = activity(n.Conns, f.conns, now.Sub(tr.prevAt))
	tr.prevAt = now
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
		a, ok := eventAlert(e)
		if !ok {
			continue
		}
		a.Time, a.Node = e.Time, n.Name
		p.addLog(a)
	}
}

// activity is each connection's rates from the counters of two polls dt
// apart. A worker that does not count (all zero) has no rates.
func activity(prev, cur []api.ConnInfo, dt time.Duration) map[uint64]Activity {
	out := map[uint64]Activity{}
	for _, c := range cur {
		i := slices.IndexFunc(prev, func(o api.ConnInfo) bool { return o.ID == c.ID })
		if i < 0 || dt <= 0 || c.Commands == 0 && c.BytesIn == 0 && c.BytesOut == 0 {
			out[c.ID] = Activity{}
			continue
		}
		o, s := prev[i], dt.Seconds()
		rate := func(now, was uint64) float64 {
			if now < was {
				return 0
			}
			return float64(now-was) / s
		}
		out[c.ID] = Activity{Rated: true, CmdsPerSec: rate(c.Commands, o.Commands),
			InPerSec: rate(c.BytesIn, o.BytesIn), OutPerSec: rate(c.BytesOut, o.BytesOut)}
	}
	return out
}

// eventAlert turns a worker event into an event log entry.
func eventAlert(e api.Event) (Alert, bool) {
	freed := fmt.Sprintf("freed %s, %s", plural(e.Buffers, "buffer"), probe.HumanBytes(e.Bytes))
	detail := ""
	if e.Detail != "" {
		detail = ": " + e.Detail
	}
	switch e.Kind {
	case "connect":
		return Alert{Kind: EventConnect, Info: true, Text: fmt.Sprintf("conn %d opened by %s", e.Conn, e.Peer)}, true
	case "disconnect":
		switch e.Reason {
		case "dead-peer", "idle":
			return Alert{Kind: AlertReaped, Text: fmt.Sprintf("reaped conn %d (%s, %s): freed %d buffers, %s",
				e.Conn, e.Peer, e.Reason, e.Buffers, probe.HumanBytes(e.Bytes))}, true
		case "violation":
			v := e.Violation
			if v == "" {
				v = "protocol"
			}
			return Alert{Kind: AlertViolate, Text: fmt.Sprintf("conn %d dropped, %s violation%s; %s", e.Conn, v, detail, freed)}, true
		case "compute-timeout":
			return Alert{Kind: AlertTimeout, Text: fmt.Sprintf("conn %d closed: compute timed out%s; %s", e.Conn, detail, freed)}, true
		}
		reason := e.Reason
		if reason == "" {
			reason = "closed"
		}
		return Alert{Kind: EventDisconnect, Info: true, Text: fmt.Sprintf("conn %d ended (%s): %s", e.Conn, reason, freed)}, true
	case "closed-by-operator":
		return Alert{Kind: AlertClosed, Text: fmt.Sprintf("conn %d (%s) closed by an operator", e.Conn, e.Peer)}, true
	case "quota":
		return Alert{Kind: AlertQuota, Text: fmt.Sprintf("quota refused conn %d: %s", e.Conn, e.Detail)}, true
	case "crashed":
		return Alert{Kind: AlertCrashed, Text: fmt.Sprintf("conn %d: its compute process crashed%s; %s", e.Conn, detail, freed)}, true
	case "unreleased":
		return Alert{Kind: AlertUnfreed, Text: fmt.Sprintf("conn %d ended but %s was not given back%s", e.Conn, probe.HumanBytes(e.Bytes), detail)}, true
	case "refused":
		return Alert{Kind: AlertRefused, Text: fmt.Sprintf("refused %s%s", e.Peer, detail)}, true
	case "shutdown":
		return Alert{Kind: EventShutdown, Info: true, Text: fmt.Sprintf("worker shut down (freed %s in all)", probe.HumanBytes(e.Bytes))}, true
	case "":
		return Alert{}, false
	}
	text := string(e.Kind)
	if e.Conn != 0 {
		text += fmt.Sprintf(" conn %d", e.Conn)
	}
	return Alert{Kind: EventOther, Info: true, Text: text + detail}, true
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
	if err := p.admin.Close(ctx, url, id); err != nil {
		return fmt.Errorf("close conn %d on %s: %w", id, node, err)
	}
	return nil
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
	if n.Activity != nil {
		a := make(map[uint64]Activity, len(n.Activity))
		for k, v := range n.Activity {
			a[k] = v
		}
		n.Activity = a
	}
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
