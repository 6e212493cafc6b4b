// Package worker is box's ggml RPC server (protocol 3.6.0). Every buffer is
// bound to the connection that allocated it and freed when that connection
// ends, whatever the reason; every field a client sends is validated before
// ggml sees it; memory quotas are enforced; and everything is visible on an
// admin HTTP API.
package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/boxproj/box/ggml"
	"github.com/boxproj/box/rpc"
)

// Config is what `box worker` is started with.
type Config struct {
	// Devices names the ggml devices to expose, in order; empty means all.
	Devices []string
	Threads int
	// CacheDir enables SET_TENSOR_HASH: large uploads are kept there.
	CacheDir string
	// MaxMemory bounds the bytes bound per device (0 = the device's size);
	// MaxMemoryPerConn bounds one connection across devices (0 = none).
	MaxMemory        uint64
	MaxMemoryPerConn uint64
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
	// Fault injects a known bug, for tests of the leak checker only:
	// "leak-on-disconnect" keeps a connection's buffers after it ends.
	Fault string
}

// Defaults fills zero fields.
func (c *Config) defaults() {
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
}

// FaultLeakOnDisconnect is the test-only fault that reproduces the seed bug.
const FaultLeakOnDisconnect = "leak-on-disconnect"

// Worker serves RPC connections. Create with New, run with Serve.
type Worker struct {
	cfg      Config
	log      *slog.Logger
	backends []*ggml.Backend
	cache    *cache
	met      *metrics
	events   *eventLog
	started  time.Time

	mu       sync.Mutex
	conns    map[uint64]*conn
	devBytes []uint64
	nextConn uint64
	wg       sync.WaitGroup

	freedTotal atomic.Uint64
}

// New opens the devices.
func New(cfg Config, log *slog.Logger) (*Worker, error) {
	cfg.defaults()
	all := ggml.Devices()
	var pick []ggml.Device
	if len(cfg.Devices) == 0 {
		pick = all
	} else {
		for _, name := range cfg.Devices {
			i := slices.IndexFunc(all, func(d ggml.Device) bool { return d.Name == name })
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
	if cfg.Fault != "" && cfg.Fault != FaultLeakOnDisconnect {
		return nil, fmt.Errorf("unknown fault %q", cfg.Fault)
	}
	w := &Worker{cfg: cfg, log: log, started: time.Now(), conns: map[uint64]*conn{},
		events: newEventLog(1024)}
	for _, d := range pick {
		b, err := ggml.Open(d, cfg.Threads)
		if err != nil {
			w.closeBackends()
			return nil, err
		}
		w.backends = append(w.backends, b)
	}
	w.devBytes = make([]uint64, len(w.backends))
	if cfg.CacheDir != "" {
		c, err := openCache(cfg.CacheDir, log)
		if err != nil {
			w.closeBackends()
			return nil, err
		}
		w.cache = c
	}
	w.met = newMetrics(w)
	if cfg.Fault != "" {
		log.Warn("FAULT INJECTION ACTIVE: this worker leaks on purpose (tests only)", "fault", cfg.Fault)
	}
	return w, nil
}

func (w *Worker) closeBackends() {
	for _, b := range w.backends {
		b.Close()
	}
	w.backends = nil
}

// Listen opens a TCP listener with the worker's keepalive settings.
func (w *Worker) Listen(ctx context.Context, addr string) (net.Listener, error) {
	lc := net.ListenConfig{KeepAliveConfig: w.keepalive()}
	return lc.Listen(ctx, "tcp", addr)
}

func (w *Worker) keepalive() net.KeepAliveConfig {
	return net.KeepAliveConfig{Enable: true, Idle: w.cfg.Keepalive, Interval: w.cfg.KeepaliveInterval, Count: w.cfg.KeepaliveCount}
}

// Serve accepts connections on ln until ctx is cancelled, then closes every
// connection, frees everything and returns.
func (w *Worker) Serve(ctx context.Context, ln net.Listener) error {
	w.log.Info("rpc worker listening", "addr", ln.Addr().String(), "protocol", protoString(), "devices", len(w.backends))
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
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
	return err
}

func (w *Worker) accept(nc net.Conn) {
	peer := nc.RemoteAddr().String()
	if len(w.cfg.Allow) > 0 {
		ap, perr := netip.ParseAddrPort(peer)
		if perr != nil || !slices.ContainsFunc(w.cfg.Allow, func(p netip.Prefix) bool { return p.Contains(ap.Addr().Unmap()) }) {
			w.log.Warn("connection refused by --allow", "peer", peer)
			w.events.add(Event{Kind: "refused", Peer: peer, Detail: "not in --allow"})
			nc.Close()
			return
		}
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
		tc.SetKeepAliveConfig(w.keepalive())
		setUserTimeout(tc, w.cfg.Keepalive+time.Duration(w.cfg.KeepaliveCount)*w.cfg.KeepaliveInterval)
	}
	w.mu.Lock()
	w.nextConn++
	c := newConn(w, w.nextConn, nc)
	w.conns[c.id] = c
	w.wg.Add(1)
	w.mu.Unlock()
	w.met.connections.Inc()
	w.events.add(Event{Kind: "connect", Conn: c.id, Peer: peer})
	w.log.Info("connection opened", "conn", c.id, "peer", peer)
	go func() {
		defer w.wg.Done()
		c.serve()
	}()
}

// setUserTimeout bounds how long written data may stay unacknowledged.
func setUserTimeout(tc *net.TCPConn, d time.Duration) {
	raw, err := tc.SyscallConn()
	if err != nil {
		return
	}
	raw.Control(func(fd uintptr) {
		syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, tcpUserTimeout, int(d.Milliseconds()))
	})
}

// TCP_USER_TIMEOUT from linux/tcp.h (not in package syscall).
const tcpUserTimeout = 0x12

func (w *Worker) shutdown() {
	w.mu.Lock()
	conns := make([]*conn, 0, len(w.conns))
	for _, c := range w.conns {
		conns = append(conns, c)
	}
	w.mu.Unlock()
	for _, c := range conns {
		c.close("shutdown")
	}
	w.wg.Wait()
	// Leaked buffers (fault injection) are freed here at the latest.
	// freeAll takes w.mu to unaccount, so collect first.
	w.mu.Lock()
	leaked := make([]*conn, 0, len(w.conns))
	for _, c := range w.conns {
		leaked = append(leaked, c)
	}
	w.mu.Unlock()
	for _, c := range leaked {
		c.freeAll()
	}
	w.closeBackends()
	w.events.add(Event{Kind: "shutdown", Bytes: w.freedTotal.Load()})
	w.log.Info("worker stopped", "bytes_freed", w.freedTotal.Load())
}

// Close frees the devices of a worker that never served.
func (w *Worker) Close() { w.closeBackends() }

// reserve accounts size bytes on dev for c, refusing beyond the quotas.
func (w *Worker) reserve(c *conn, dev int, size uint64) (string, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	limit := w.cfg.MaxMemory
	if limit > 0 && w.devBytes[dev]+size > limit || w.devBytes[dev]+size < size {
		return "max-memory", false
	}
	if pc := w.cfg.MaxMemoryPerConn; pc > 0 && c.bytes.Load()+size > pc {
		return "max-memory-per-conn", false
	}
	w.devBytes[dev] += size
	c.bytes.Add(size)
	return "", true
}

func (w *Worker) unreserve(c *conn, dev int, size uint64) {
	w.mu.Lock()
	w.devBytes[dev] -= size
	w.mu.Unlock()
	c.bytes.Add(^(size - 1))
}

// assign hands out an opaque handle and a virtual base address range for a
// new buffer of c: clients never see real addresses. Both are per
// connection (handles and addresses only mean something on the connection
// that got them), which also makes a client's traffic reproducible.
func (c *conn) assign(size uint64, align uint64) (handle, vbase uint64) {
	const gap = 1 << 16
	if align < gap {
		align = gap
	}
	c.nextBuf++
	handle = c.nextBuf
	vbase = (c.nextVA + align - 1) &^ (align - 1)
	c.nextVA = vbase + size + gap
	return handle, vbase
}

func (w *Worker) removeConn(c *conn) {
	w.mu.Lock()
	delete(w.conns, c.id)
	w.mu.Unlock()
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

func protoString() string {
	return fmt.Sprintf("%d.%d.%d", rpc.ProtoMajor, rpc.ProtoMinor, rpc.ProtoPatch)
}
