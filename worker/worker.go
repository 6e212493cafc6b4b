// Package worker is box's ggml RPC server (protocol 3.6.0) as a supervisor
// and one compute process per connection (package worker/compute), in the
// manner of PostgreSQL's postmaster and backends.
//
// The supervisor accepts connections, applies --allow, answers the device
// questions a client asks first (HELLO, DEVICE_COUNT, GET_DEVICE_MEMORY,
// GET_ALIGNMENT, GET_MAX_SIZE) from a description of the devices taken
// once at start, and starts a compute process when a command needs a
// backend, handing it the socket. It owns the quotas (a process asks
// before every allocation), the admin API, metrics and events. A process
// that ends, however it ends, gives everything back to the kernel and the
// device driver; the supervisor checks it is gone and, on NVIDIA hosts, that
// the driver no longer lists it.
//
// This package is pure Go: it never loads ggml.
package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/boxproj/box/api"
	"github.com/boxproj/box/hostmem"
	"github.com/boxproj/box/rpc"
	"github.com/boxproj/box/worker/cache"
	"github.com/boxproj/box/worker/ctl"
)

// Config is what `box worker` is started with.
type Config struct {
	// Devices names the ggml devices to expose, in order; empty means all.
	Devices []string
	Threads int
	// CacheDir enables SET_TENSOR_HASH: large uploads are kept there, at
	// most CacheMaxSize bytes (0: 20% of its filesystem), least recently
	// used first out. Each client network address has its own entries
	// unless CacheShared.
	CacheDir     string
	CacheMaxSize uint64
	CacheShared  bool
	// Protocol is the version a client that sends a 4.0-or-newer HELLO is
	// answered with and served at (zero: rpc.Newest, 7.0.0); Legacy the
	// one for an empty (3.6) HELLO (zero: 3.6.0). A client cannot say its
	// patch or op table, so a fleet of older heads picks them here.
	Protocol rpc.Version
	Legacy   rpc.Version
	// MaxMemory bounds the bytes bound per device (0 = the device's size);
	// MaxMemoryPerConn bounds what one connection holds: its buffers, their
	// overhead, and messages and graphs in memory (0 = none).
	MaxMemory        uint64
	MaxMemoryPerConn uint64
	// MaxHostMemory bounds all host memory connections make the worker
	// hold: CPU buffers, every buffer's overhead, messages and graphs, and
	// each compute process (0 = 75% of RAM or of the cgroup limit).
	MaxHostMemory uint64
	// MaxBuffersPerConn bounds one connection's buffers (0 = 65536).
	MaxBuffersPerConn int
	// MaxConns and MaxConnsPerPeer bound open connections in all and from
	// one peer address (0 = 512 and 64).
	MaxConns, MaxConnsPerPeer int
	// A message must arrive whole within MessageTimeout plus one second
	// per MessageMinRate bytes, from its first byte (0 = 30s, 1 MiB/s).
	MessageTimeout time.Duration
	MessageMinRate uint64
	// Keepalive is the TCP keepalive idle time (probes every KeepaliveInterval,
	// KeepaliveCount of them); TCP_USER_TIMEOUT is set to their sum so
	// unacknowledged writes fail in the same window.
	Keepalive         time.Duration
	KeepaliveInterval time.Duration
	KeepaliveCount    int
	// IdleTimeout reaps connections silent for longer (0 = off).
	IdleTimeout time.Duration
	// Allow lists the client networks accepted; empty means any.
	Allow []netip.Prefix
	// MaxGraphBytes bounds one GRAPH_COMPUTE message.
	MaxGraphBytes uint64
	// MaxComputeTime bounds one GRAPH_COMPUTE or GRAPH_RECOMPUTE; past it
	// the connection's process is killed (default 60s).
	MaxComputeTime time.Duration
	// Grace is how long Serve's shutdown lets processes finish their
	// command before killing them (default 10s).
	Grace time.Duration
	// Compute is how a compute process is started (default: this
	// executable with the hidden command "__compute").
	Compute Command
	// DriverMemory, when set, lists the device memory the GPU driver
	// reports per process (NVML). It is used to show each connection's
	// figure and to check that an ended process's memory is gone.
	DriverMemory func() (map[int]uint64, error)
}

// Command is how to start a compute process: Path with Args, then the mode
// ("describe" or "serve"), with Env added to this process's environment.
type Command struct {
	Path string
	Args []string
	Env  []string
}

func (c *Config) defaults() error {
	if c.Keepalive == 0 {
		c.Keepalive = 10 * time.Second
	}
	if c.KeepaliveInterval == 0 {
		c.KeepaliveInterval = 5 * time.Second
	}
	if c.KeepaliveCount == 0 {
		c.KeepaliveCount = 3
	}
	if c.MaxGraphBytes == 0 {
		c.MaxGraphBytes = 256 << 20
	}
	if c.MaxBuffersPerConn == 0 {
		c.MaxBuffersPerConn = 65536
	}
	if c.MaxConns == 0 {
		c.MaxConns = 512
	}
	if c.MaxConnsPerPeer == 0 {
		c.MaxConnsPerPeer = 64
	}
	if c.MessageTimeout == 0 {
		c.MessageTimeout = 30 * time.Second
	}
	if c.MessageMinRate == 0 {
		c.MessageMinRate = 1 << 20
	}
	if c.MaxHostMemory == 0 {
		c.MaxHostMemory = DefaultHostMemory()
	}
	if c.MaxComputeTime == 0 {
		c.MaxComputeTime = 60 * time.Second
	}
	if c.Grace == 0 {
		c.Grace = 10 * time.Second
	}
	if c.Compute.Path == "" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("find own executable for compute processes: %w", err)
		}
		c.Compute = Command{Path: exe, Args: []string{"__compute"}}
	}
	return nil
}

// Worker serves RPC connections. Create with New, run with Serve.
type Worker struct {
	cfg     Config
	log     *slog.Logger
	devs    []ctl.Device
	cache   *cache.Index // nil without --cache
	met     *metrics
	events  *eventLog
	started time.Time

	mu        sync.Mutex
	conns     map[uint64]*conn
	peers     map[string]int // open connections per peer address
	devBytes  []uint64       // buffer bytes per device
	hostBytes uint64         // host memory held for connections (see reserve)
	nextConn  uint64
	finished  histograms // latency of commands of processes that ended
	wg        sync.WaitGroup

	freedTotal atomic.Uint64
}

// New describes the devices (in a short-lived compute process, so the
// supervisor itself never opens a device) and prepares the cache.
func New(cfg Config, log *slog.Logger) (*Worker, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	all, err := describe(cfg.Compute, log)
	if err != nil {
		return nil, err
	}
	var pick []ctl.Device
	if len(cfg.Devices) == 0 {
		pick = all
	} else {
		for _, name := range cfg.Devices {
			i := slices.IndexFunc(all, func(d ctl.Device) bool { return d.Name == name })
			if i < 0 {
				names := make([]string, len(all))
				for j, d := range all {
					names[j] = d.Name
				}
				return nil, fmt.Errorf("unknown device %q (have %v)", name, names)
			}
			pick = append(pick, all[i])
		}
	}
	if len(pick) == 0 {
		return nil, errors.New("no ggml devices")
	}
	var ix *cache.Index
	if cfg.CacheDir != "" {
		if ix, err = cache.Prepare(cfg.CacheDir, cfg.CacheMaxSize, log); err != nil {
			return nil, err
		}
	}
	w := &Worker{cfg: cfg, log: log, devs: pick, started: time.Now(), conns: map[uint64]*conn{}, peers: map[string]int{},
		events: newEventLog(1024), devBytes: make([]uint64, len(pick)), cache: ix}
	w.met = newMetrics(w)
	return w, nil
}

// describe runs a compute process that lists ggml's devices.
func describe(c Command, log *slog.Logger) ([]ctl.Device, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.Path, append(slices.Clone(c.Args), "describe")...)
	cmd.Env = append(os.Environ(), c.Env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("describe devices (%s): %w: %s", c.Path, err, bytes.TrimSpace(stderr.Bytes()))
	}
	// What it says (the backend libraries loaded and skipped) is the
	// operator's to read.
	for _, line := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
		if line != "" {
			log.Info("devices", "compute", line)
		}
	}
	var devs []ctl.Device
	if err := json.Unmarshal(out, &devs); err != nil {
		return nil, fmt.Errorf("describe devices: %w", err)
	}
	return devs, nil
}

// Listen opens a TCP listener with the worker's keepalive settings.
func (w *Worker) Listen(ctx context.Context, addr string) (net.Listener, error) {
	lc := net.ListenConfig{KeepAliveConfig: w.keepalive()}
	return lc.Listen(ctx, "tcp", addr)
}

func (w *Worker) socketKeepalive() ctl.Keepalive {
	return ctl.Keepalive{Idle: w.cfg.Keepalive, Interval: w.cfg.KeepaliveInterval, Count: w.cfg.KeepaliveCount}
}

func (w *Worker) keepalive() net.KeepAliveConfig {
	return net.KeepAliveConfig{Enable: true, Idle: w.cfg.Keepalive, Interval: w.cfg.KeepaliveInterval, Count: w.cfg.KeepaliveCount}
}

// Serve accepts connections on ln until ctx is cancelled, then ends every
// connection (SIGTERM to each process, SIGKILL after Grace) and returns.
func (w *Worker) Serve(ctx context.Context, ln net.Listener) error {
	w.log.Info("rpc worker listening", "addr", ln.Addr().String(), "protocol", protoString(), "devices", len(w.devs),
		"max_compute_time", w.cfg.MaxComputeTime, "grace", w.cfg.Grace)
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	wctx, cancelWatch := context.WithCancel(context.Background())
	watchDone := make(chan struct{})
	go func() { defer close(watchDone); w.watch(wctx) }()
	var err error
	for {
		nc, aerr := ln.Accept()
		if aerr != nil {
			if ctx.Err() == nil {
				err = fmt.Errorf("accept: %w", aerr)
			}
			break
		}
		w.accept(nc)
	}
	w.shutdown()
	cancelWatch()
	<-watchDone
	return err
}

func (w *Worker) accept(nc net.Conn) {
	peer := nc.RemoteAddr().String()
	if len(w.cfg.Allow) > 0 {
		ap, perr := netip.ParseAddrPort(peer)
		if perr != nil || !slices.ContainsFunc(w.cfg.Allow, func(p netip.Prefix) bool { return p.Contains(ap.Addr().Unmap()) }) {
			w.log.Warn("connection refused by --allow", "peer", peer)
			w.events.add(Event{Kind: api.EventRefused, Peer: peer, Detail: "not in --allow"})
			w.met.refused.WithLabelValues("allow").Inc()
			nc.Close()
			return
		}
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		w.socketKeepalive().Apply(tc)
	}
	host := peer
	if h, _, err := net.SplitHostPort(peer); err == nil {
		host = h
	}
	w.mu.Lock()
	limit := ""
	switch {
	case len(w.conns) >= w.cfg.MaxConns:
		limit = fmt.Sprintf("--max-conns %d", w.cfg.MaxConns)
	case w.peers[host] >= w.cfg.MaxConnsPerPeer:
		limit = fmt.Sprintf("--max-conns-per-peer %d", w.cfg.MaxConnsPerPeer)
	}
	if limit != "" {
		w.mu.Unlock()
		w.log.Warn("connection refused: too many connections", "peer", peer, "limit", limit)
		w.events.add(Event{Kind: api.EventRefused, Peer: peer, Detail: limit})
		w.met.refused.WithLabelValues("max-conns").Inc()
		nc.Close()
		return
	}
	w.nextConn++
	c := newConn(w, w.nextConn, nc)
	c.peerHost = host
	w.conns[c.id] = c
	w.peers[host]++
	w.wg.Add(1)
	w.mu.Unlock()
	w.met.connections.Inc()
	w.events.add(Event{Kind: api.EventConnect, Conn: c.id, Peer: peer})
	w.log.Info("connection opened", "conn", c.id, "peer", peer)
	go func() {
		defer w.wg.Done()
		c.run()
	}()
}

// watch ends processes whose graph runs past MaxComputeTime. It reads only
// the shared pages: a process busy in ggml cannot be asked anything.
func (w *Worker) watch(ctx context.Context) {
	tick := time.NewTicker(min(100*time.Millisecond, w.cfg.MaxComputeTime/10))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			for _, c := range w.connList() {
				a, ok := c.activity()
				if !ok || !a.Busy {
					continue
				}
				cmd := rpc.Cmd(a.Running)
				if (cmd == rpc.CmdGraphCompute || cmd == rpc.CmdGraphRecompute) && now.Sub(a.Since) > w.cfg.MaxComputeTime {
					w.log.Warn("graph ran past --max-compute-time; ending the connection", "conn", c.id, "peer", c.peer,
						"limit", w.cfg.MaxComputeTime)
					c.terminate(api.ReasonComputeTimeout)
				}
			}
		}
	}
}

func (w *Worker) connList() []*conn {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]*conn, 0, len(w.conns))
	for _, c := range w.conns {
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b *conn) int { return int(a.id) - int(b.id) })
	return out
}

// shutdown drains: every process gets SIGTERM and Grace to finish its
// command, then SIGKILL.
func (w *Worker) shutdown() {
	conns := w.connList()
	for _, c := range conns {
		c.drain()
	}
	all := make(chan struct{})
	go func() { w.wg.Wait(); close(all) }()
	select {
	case <-all:
	case <-time.After(w.cfg.Grace):
		for _, c := range w.connList() {
			w.log.Warn("connection did not end within --grace; killing its process", "conn", c.id, "grace", w.cfg.Grace)
			c.terminate(api.ReasonShutdown)
		}
		<-all
	}
	w.events.add(Event{Kind: api.EventShutdown, Bytes: w.freedTotal.Load()})
	w.log.Info("worker stopped", "bytes_freed", w.freedTotal.Load())
}

// Config is the configuration in force, defaults filled in.
func (w *Worker) Config() Config { return w.cfg }

// Close releases a worker that never served (nothing is held before Serve).
func (w *Worker) Close() {}

// DefaultHostMemory is the default --max-host-memory: 75% of the host's
// RAM, or of this process's cgroup limit when that is lower.
func DefaultHostMemory() uint64 {
	h, err := hostmem.Read("/")
	if err != nil {
		return 0
	}
	total := h.MemTotal
	if h.Cgroup != nil {
		total = min(total, h.Cgroup.Limit)
	}
	return total / 4 * 3
}

// cost is what a reservation adds to the accounts: buffer bytes on a
// device, host memory, what the connection holds, and buffers.
type cost struct {
	dev        int
	devBytes   uint64
	host, held uint64
	buffers    int
}

func (w *Worker) costOf(m ctl.Msg) cost {
	if m.Host {
		return cost{dev: -1, host: m.Size, held: m.Size}
	}
	k := cost{dev: m.Dev, devBytes: m.Size, held: m.Size}
	if w.devs[m.Dev].Type == "cpu" {
		k.host = m.Size
	}
	if m.Buffer {
		k.buffers = 1
		k.host += ctl.BufferOverhead
		k.held += ctl.BufferOverhead
	}
	return k
}

// reserve accounts k for c, refusing beyond the quotas; it names the
// quota that refused.
func (w *Worker) reserve(c *conn, k cost) (string, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	over := func(have, add, limit uint64) bool { return limit > 0 && (have+add > limit || have+add < have) }
	switch {
	case k.dev >= 0 && over(w.devBytes[k.dev], k.devBytes, w.cfg.MaxMemory):
		return "max-memory", false
	case over(c.held, k.held, w.cfg.MaxMemoryPerConn):
		return "max-memory-per-conn", false
	case over(w.hostBytes, k.host, w.cfg.MaxHostMemory):
		return "max-host-memory", false
	case c.nbuf+k.buffers > w.cfg.MaxBuffersPerConn:
		return "max-buffers-per-conn", false
	}
	w.add(c, k, true)
	return "", true
}

// unreserve gives back k of c's (never more than c holds).
func (w *Worker) unreserve(c *conn, k cost) {
	w.mu.Lock()
	defer w.mu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	w.add(c, k, false)
}

// add applies k to c's and the worker's accounts; w.mu and c.mu are held.
func (w *Worker) add(c *conn, k cost, plus bool) {
	if plus {
		if k.dev >= 0 {
			w.devBytes[k.dev] += k.devBytes
			c.devBytes[k.dev] += k.devBytes
			c.bytes += k.devBytes
		}
		w.hostBytes += k.host
		c.host += k.host
		c.held += k.held
		c.nbuf += k.buffers
		return
	}
	if k.dev >= 0 {
		n := min(k.devBytes, c.devBytes[k.dev])
		w.devBytes[k.dev] -= n
		c.devBytes[k.dev] -= n
		c.bytes -= n
	}
	h := min(k.host, c.host)
	w.hostBytes -= h
	c.host -= h
	c.held -= min(k.held, c.held)
	c.nbuf -= min(k.buffers, c.nbuf)
}

// HostBytes is the host memory accounted to connections.
func (w *Worker) HostBytes() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.hostBytes
}

// BoundBytes is the total bound on all devices.
func (w *Worker) BoundBytes() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	var n uint64
	for _, b := range w.devBytes {
		n += b
	}
	return n
}

// memory is a device's free and total bytes. For a CPU device the host's
// MemAvailable and cgroup limit count (what could really be allocated);
// for other devices, the figure taken at start less what box has bound
// since.
func (w *Worker) memory(d int) (free, total uint64) {
	desc := w.devs[d]
	free, total = desc.MemoryFree, desc.MemoryTotal
	if desc.Type == "cpu" {
		if h, err := hostmem.Read("/"); err == nil {
			total, free = hostmem.CPU(total, free, h)
		}
		return free, total
	}
	w.mu.Lock()
	bound := w.devBytes[d]
	w.mu.Unlock()
	return free - min(free, bound), total
}

// deviceMemory is what GET_DEVICE_MEMORY answers: a quota is the device as
// far as clients are concerned, so a head sizes its split to what it may
// actually allocate.
func (w *Worker) deviceMemory(d int) (free, total uint64) {
	free, total = w.memory(d)
	if w.cfg.MaxMemory > 0 {
		w.mu.Lock()
		used := w.devBytes[d]
		w.mu.Unlock()
		qfree := uint64(0)
		if used < w.cfg.MaxMemory {
			qfree = w.cfg.MaxMemory - used
		}
		return min(free, qfree), min(total, w.cfg.MaxMemory)
	}
	return free, total
}

func protoString() string {
	return fmt.Sprintf("%d.%d.%d", rpc.ProtoMajor, rpc.ProtoMinor, rpc.ProtoPatch)
}

// protocols is what the worker answers: a 3.6 HELLO, then a 4.0-or-newer one.
func (w *Worker) protocols() (legacy, current rpc.Version) {
	legacy, current = w.cfg.Legacy, w.cfg.Protocol
	if legacy == (rpc.Version{}) {
		legacy = rpc.V3_6
	}
	if current == (rpc.Version{}) {
		current = rpc.Newest
	}
	return legacy, current
}
