package worker

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/boxproj/box/api"
	"github.com/boxproj/box/rpc"
	"github.com/boxproj/box/worker/cache"
	"github.com/boxproj/box/worker/ctl"
)

// binding is one buffer a compute process reported.
type binding struct {
	handle  uint64
	dev     int
	size    uint64
	name    string // first tensor written into it
	created time.Time
}

// conn is the supervisor's record of one client connection: its quota
// account, the buffers its process reported, and that process.
type conn struct {
	w     *Worker
	id    uint64
	peer  string
	since time.Time
	done  chan struct{} // closed when the connection is gone and accounted

	peerHost string      // peer address without the port, for --max-conns-per-peer
	proto    rpc.Version // negotiated at HELLO (front only)

	mu         sync.Mutex
	nc         net.Conn // the supervisor's copy, until a process has it
	state      api.State
	buffers    map[uint64]*binding
	devBytes   []uint64 // buffer bytes per device
	bytes      uint64   // buffer bytes in all
	host       uint64   // host memory accounted to it (see Worker.reserve)
	held       uint64   // what --max-memory-per-conn counts
	nbuf       int      // buffers, granted or bound
	refused    map[string]bool
	proc       *proc
	ended      api.Reason // set by the supervisor when it ends the connection
	report     *ctl.Msg   // the process's own account of the end
	lastActive time.Time  // before a process exists
}

// proc is a running compute process.
type proc struct {
	cmd     *exec.Cmd
	pid     int
	page    *ctl.Page
	ctl     *ctl.Conn
	started time.Time

	stderr *os.File // read end of its stderr

	tailMu sync.Mutex
	head   []string // first lines of its stderr (a Go crash names the signal there)
	tail   []string // last lines
}

func newConn(w *Worker, id uint64, nc net.Conn) *conn {
	now := time.Now()
	return &conn{w: w, id: id, peer: nc.RemoteAddr().String(), since: now, done: make(chan struct{}),
		nc: nc, state: api.StateHandshake, buffers: map[uint64]*binding{}, devBytes: make([]uint64, len(w.devs)),
		lastActive: now}
}

// run serves the connection until it ends and accounts the end: the one
// place a connection is released.
func (c *conn) run() {
	defer close(c.done)
	prefix, reason, detail, kind := c.front()
	var exit *exitInfo
	if reason == "" {
		exit, reason, detail, kind = c.serveInProcess(prefix)
	}
	c.mu.Lock()
	if c.nc != nil {
		c.nc.Close()
		c.nc = nil
	}
	c.mu.Unlock()
	c.finish(reason, detail, kind, exit)
}

// front answers the first commands itself until one needs a backend; it
// returns the bytes read but not served, or why the connection ended.
func (c *conn) front() (prefix []byte, reason api.Reason, detail, kind string) {
	nc := c.nc
	br := bufio.NewReaderSize(nc, 4096)
	bw := bufio.NewWriterSize(nc, 4096)
	end := func(err error) ([]byte, api.Reason, string, string) {
		var pe *rpc.ProtocolError
		if errors.As(err, &pe) {
			return nil, api.ReasonViolation, pe.Error(), pe.Kind
		}
		if r := c.endedBy(); r != "" {
			return nil, r, "", ""
		}
		r, d := ctl.Classify(err)
		return nil, r, d, ""
	}
	cfg := c.w.cfg
	for {
		var idle time.Time
		if cfg.IdleTimeout > 0 {
			idle = time.Now().Add(cfg.IdleTimeout)
		}
		nc.SetReadDeadline(idle)
		if _, err := br.Peek(1); err != nil {
			return end(err)
		}
		// From a message's first byte, it must arrive whole in time.
		nc.SetReadDeadline(time.Now().Add(ctl.MessageDeadline(cfg.MessageTimeout, cfg.MessageMinRate, rpc.RequestHeaderSize+8)))
		cmd, size, err := rpc.ReadRequestHeader(br)
		if err != nil {
			if r, _ := ctl.Classify(err); r == api.ReasonIdle {
				return nil, api.ReasonMessageTimeout, "a message did not arrive within --message-timeout", ""
			}
			return end(err)
		}
		if err := c.frontCommand(cmd, size, br, bw); err != nil {
			if errors.Is(err, errNeedsProcess) {
				nc.SetReadDeadline(time.Time{}) // the process sets its own
				hdr := rpc.AppendRequestHeader(nil, cmd, size)
				rest, _ := br.Peek(br.Buffered())
				return append(hdr, rest...), "", "", ""
			}
			return end(err)
		}
		if err := bw.Flush(); err != nil {
			return end(err)
		}
		c.mu.Lock()
		c.lastActive = time.Now()
		c.mu.Unlock()
	}
}

var errNeedsProcess = errors.New("needs a compute process")

func violation(cmd rpc.Cmd, kind, format string, args ...any) *rpc.ProtocolError {
	return &rpc.ProtocolError{Cmd: cmd, Kind: kind, Msg: fmt.Sprintf(format, args...)}
}

func (c *conn) frontCommand(cmd rpc.Cmd, size uint64, br *bufio.Reader, bw *bufio.Writer) error {
	c.mu.Lock()
	state := c.state
	c.mu.Unlock()
	if state == api.StateHandshake {
		if cmd != rpc.CmdHello {
			return violation(cmd, "hello", "first command must be HELLO, got %s", cmd)
		}
		// A 3.6 client sends an empty HELLO, a 4.0-or-newer one its
		// transport caps: both are served on this port.
		legacy, current := c.w.protocols()
		var resp []byte
		switch size {
		case 0:
			c.proto = legacy
			resp = []byte{legacy.Major, legacy.Minor, legacy.Patch}
		case rpc.ConnCapsSize:
			if _, err := io.ReadFull(br, make([]byte, rpc.ConnCapsSize)); err != nil {
				return err
			}
			c.proto = current
			// Caps all zero: TCP only (no RDMA).
			resp = append([]byte{current.Major, current.Minor, current.Patch, 0}, make([]byte, rpc.ConnCapsSize)...)
		default:
			return violation(cmd, "hello", "HELLO carries %d bytes; a 3.6 client sends none, a 4.0 or newer one %d", size, rpc.ConnCapsSize)
		}
		c.mu.Lock()
		c.state = api.StateServing
		c.mu.Unlock()
		return rpc.WriteResponse(bw, resp)
	}
	switch cmd {
	case rpc.CmdHello:
		return violation(cmd, "hello", "second HELLO")
	case rpc.CmdDeviceCount:
		if size != 0 {
			return violation(cmd, "size", "payload is %d bytes, want 0", size)
		}
		return rpc.WriteResponse(bw, binary.LittleEndian.AppendUint32(nil, uint32(len(c.w.devs))))
	case rpc.CmdGetAlignment, rpc.CmdGetMaxSize, rpc.CmdGetDeviceMemory:
		if size != 4 {
			return violation(cmd, "size", "payload is %d bytes, want 4", size)
		}
		var p [4]byte
		if _, err := io.ReadFull(br, p[:]); err != nil {
			return err
		}
		d := binary.LittleEndian.Uint32(p[:])
		if int(d) >= len(c.w.devs) || d > 1<<20 {
			return violation(cmd, "device", "device %d out of range (worker has %d)", d, len(c.w.devs))
		}
		switch cmd {
		case rpc.CmdGetAlignment:
			return rpc.WriteResponse(bw, u64(c.w.devs[d].Alignment))
		case rpc.CmdGetMaxSize:
			return rpc.WriteResponse(bw, u64(c.w.devs[d].MaxSize))
		default:
			free, total := c.w.deviceMemory(int(d))
			return rpc.WriteResponse(bw, u64(free), u64(total))
		}
	default:
		if !c.proto.Known(cmd) {
			return violation(cmd, "command", "unknown command %d at protocol %s", uint8(cmd), c.proto)
		}
		return errNeedsProcess
	}
}

func u64(v uint64) []byte { return binary.LittleEndian.AppendUint64(nil, v) }

// exitInfo is how a compute process ended.
type exitInfo struct {
	pid    int
	code   int // -1 for a signal
	signal syscall.Signal
	tail   string
	last   rpc.Cmd // the command it was running, if any
	busy   bool
}

func (e *exitInfo) crashed() bool { return e.code != 0 }

func (e *exitInfo) String() string {
	var s string
	if e.code < 0 {
		s = "killed by signal " + e.signal.String()
	} else {
		s = fmt.Sprintf("exit status %d", e.code)
	}
	if e.busy {
		s += " during " + e.last.String()
	}
	if e.tail != "" {
		s += ": " + e.tail
	}
	return s
}

// serveInProcess hands the connection to a new compute process and
// supervises it until it has exited.
func (c *conn) serveInProcess(prefix []byte) (*exitInfo, api.Reason, string, string) {
	p, err := c.start(prefix)
	if err != nil {
		if r := c.endedBy(); r != "" {
			return nil, r, "", ""
		}
		var q *quotaRefusal
		if errors.As(err, &q) {
			return nil, api.ReasonQuota, "no room for a compute process under " + q.limit, ""
		}
		c.w.log.Error("cannot start a compute process", "conn", c.id, "err", err)
		return nil, api.ReasonError, err.Error(), ""
	}
	stderrDone := make(chan struct{})
	go func() {
		defer close(stderrDone)
		p.readStderr(c, p.stderr)
	}()
	c.control(p)
	<-stderrDone
	werr := p.cmd.Wait()
	exit := &exitInfo{pid: p.pid}
	var ee *exec.ExitError
	if errors.As(werr, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			exit.code, exit.signal = -1, ws.Signal()
		} else {
			exit.code = ee.ExitCode()
		}
	} else if werr != nil {
		exit.code = -1
	}
	a := p.page.Read()
	exit.busy, exit.last = a.Busy, rpc.Cmd(a.Running)
	exit.tail = p.crashLine()
	p.ctl.Close()

	c.mu.Lock()
	report, ended := c.report, c.ended
	c.mu.Unlock()
	switch {
	case ended != "":
		return exit, ended, "", ""
	case report != nil && !exit.crashed():
		return exit, report.Reason, report.Detail, report.Violation
	case report != nil && report.Reason == api.ReasonCrashed:
		return exit, api.ReasonCrashed, report.Detail, ""
	default:
		return exit, api.ReasonCrashed, exit.String(), ""
	}
}

// start makes the process: the client socket, one end of a control
// socketpair and the activity page are its descriptors 3, 4 and 5.
func (c *conn) start(prefix []byte) (*proc, error) {
	c.mu.Lock()
	nc, ended := c.nc, c.ended
	c.mu.Unlock()
	if ended != "" {
		return nil, errors.New("ended before its process started")
	}
	tc, ok := nc.(*net.TCPConn)
	if !ok {
		return nil, fmt.Errorf("not a TCP connection: %T", nc)
	}
	// A process is host memory too; it is counted until the connection is
	// accounted as ended.
	if limit, ok := c.w.reserve(c, cost{dev: -1, host: ctl.ProcessOverhead}); !ok {
		c.w.met.quotaRefusals.WithLabelValues(limit).Inc()
		c.w.events.add(Event{Kind: api.EventQuota, Conn: c.id, Peer: c.peer, Bytes: ctl.ProcessOverhead, Detail: limit + ": no room for a compute process"})
		return nil, &quotaRefusal{limit: limit}
	}
	client, err := tc.File()
	if err != nil {
		return nil, fmt.Errorf("client socket: %w", err)
	}
	defer client.Close()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socketpair: %w", err)
	}
	mine, theirs := os.NewFile(uintptr(fds[0]), "control"), os.NewFile(uintptr(fds[1]), "control")
	defer theirs.Close()
	cc, err := net.FileConn(mine)
	mine.Close()
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	page, pageFile, err := ctl.NewPage()
	if err != nil {
		cc.Close()
		return nil, err
	}
	defer pageFile.Close()
	stderrR, stderrW, err := os.Pipe()
	if err != nil {
		cc.Close()
		page.Close()
		return nil, fmt.Errorf("stderr pipe: %w", err)
	}
	defer stderrW.Close()

	cfg := c.w.cfg
	cmd := exec.Command(cfg.Compute.Path, append(slices.Clone(cfg.Compute.Args), "serve")...)
	cmd.Env = append(os.Environ(), cfg.Compute.Env...)
	cmd.ExtraFiles = []*os.File{client, theirs, pageFile}
	cmd.Stderr = stderrW
	// Its own process group, so a terminal's ^C reaches only the
	// supervisor, which drains; and it dies with the supervisor.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		cc.Close()
		page.Close()
		stderrR.Close()
		return nil, fmt.Errorf("start %s: %w", cfg.Compute.Path, err)
	}
	p := &proc{cmd: cmd, pid: cmd.Process.Pid, page: page, ctl: ctl.NewConn(cc), started: time.Now(), stderr: stderrR}
	ini := ctl.Init{Conn: c.id, Peer: c.peer, Devices: c.w.devs, Threads: cfg.Threads, CacheDir: cfg.CacheDir,
		CacheTenant: cache.Tenant(c.peerHost, cfg.CacheShared),
		IdleTimeout: cfg.IdleTimeout, MessageTimeout: cfg.MessageTimeout, MinRate: cfg.MessageMinRate,
		Keepalive: c.w.socketKeepalive(), MaxGraphBytes: cfg.MaxGraphBytes, Prefix: prefix, Protocol: c.proto.String()}
	c.mu.Lock()
	c.proc = p
	c.nc = nil // the process has the socket now; ours closes below
	ended = c.ended
	c.mu.Unlock()
	nc.Close()
	if ended != "" {
		p.cmd.Process.Kill()
	}
	if err := p.ctl.Send(ini); err != nil {
		p.cmd.Process.Kill()
	}
	c.w.met.processStarts.Inc()
	return p, nil
}

// firstRefusal reports whether limit refuses c for the first time.
func (c *conn) firstRefusal(limit string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.refused == nil {
		c.refused = map[string]bool{}
	}
	first := !c.refused[limit]
	c.refused[limit] = true
	return first
}

// quotaRefusal means a quota left no room to start a compute process.
type quotaRefusal struct{ limit string }

func (q *quotaRefusal) Error() string { return "refused by " + q.limit }

// control handles the process's messages until it closes its end.
func (c *conn) control(p *proc) {
	w := c.w
	for {
		var m ctl.Msg
		if err := p.ctl.Recv(&m); err != nil {
			return
		}
		if m.Dev < 0 || m.Dev >= len(w.devs) {
			continue
		}
		dev := w.devs[m.Dev].Name
		switch m.Op {
		case ctl.OpReserve:
			limit, ok := w.reserve(c, w.costOf(m))
			if !ok {
				what := "allocation"
				if m.Host {
					what, dev = "host memory", "host"
				}
				w.met.quotaRefusals.WithLabelValues(limit).Inc()
				// One event and log line per connection and quota: a
				// client that keeps asking must not flood them.
				if c.firstRefusal(limit) {
					w.events.add(Event{Kind: api.EventQuota, Conn: c.id, Peer: c.peer, Bytes: m.Size, Detail: limit})
					w.log.Warn(what+" refused by quota (further refusals of this connection are only counted)", "conn", c.id,
						"device", dev, "bytes", m.Size, "limit", limit)
				}
			}
			if ok && m.Handle != 0 {
				c.mu.Lock()
				if m.Buffer {
					// A granted buffer is listed at once, under the handle
					// it will have.
					c.buffers[m.Handle] = &binding{handle: m.Handle, dev: m.Dev, size: m.Size, created: time.Now()}
					w.met.allocs.WithLabelValues(dev).Inc()
				} else if b := c.buffers[m.Handle]; b != nil {
					b.size += m.Size // the device gave more than asked
				}
				c.mu.Unlock()
			}
			p.ctl.Send(ctl.Reply{Seq: m.Seq, OK: ok, Limit: limit})
		case ctl.OpUnreserve:
			w.unreserve(c, w.costOf(m))
			if m.Handle != 0 {
				c.mu.Lock()
				if m.Buffer {
					delete(c.buffers, m.Handle) // the device could not, or the rest was refused
				} else if b := c.buffers[m.Handle]; b != nil {
					b.size -= min(b.size, m.Size)
				}
				c.mu.Unlock()
			}
		case ctl.OpMemory:
			free, total := w.deviceMemory(m.Dev)
			p.ctl.Send(ctl.Reply{Seq: m.Seq, OK: true, Free: free, Total: total})
		case ctl.OpName:
			c.mu.Lock()
			if b := c.buffers[m.Handle]; b != nil && b.name == "" {
				b.name = truncate(m.Name, 64)
			}
			c.mu.Unlock()
		case ctl.OpFree:
			c.mu.Lock()
			b := c.buffers[m.Handle]
			delete(c.buffers, m.Handle)
			c.mu.Unlock()
			if b != nil {
				w.unreserve(c, w.costOf(ctl.Msg{Dev: b.dev, Size: b.size, Buffer: true}))
				w.met.frees.WithLabelValues(w.devs[b.dev].Name).Inc()
				w.freedTotal.Add(b.size)
			}
			if m.Seq != 0 {
				p.ctl.Send(ctl.Reply{Seq: m.Seq, OK: true})
			}
		case ctl.OpCacheRoom:
			ok := w.cache != nil && w.cache.Room(fmt.Sprintf("%d-%d", c.id, m.Seq), m.Size)
			p.ctl.Send(ctl.Reply{Seq: m.Seq, OK: ok})
		case ctl.OpCacheDone:
			if w.cache != nil {
				w.cache.Done(fmt.Sprintf("%d-%d", c.id, m.Seq))
			}
		case ctl.OpAllocFail:
			w.met.allocFailures.WithLabelValues(dev).Inc()
			w.log.Warn("allocation failed", "conn", c.id, "device", dev, "bytes", m.Size)
		case ctl.OpEnd:
			c.mu.Lock()
			c.report = &m
			c.state = api.StateClosed
			c.mu.Unlock()
			// The process exits next. If it does not, its memory is not
			// given back: say so while it lingers.
			go c.expectExit(p)
		}
	}
}

// unreleasedAfter is how long a process that reported its end may take to
// exit before the supervisor calls its memory unreleased.
const unreleasedAfter = 2 * time.Second

func (c *conn) expectExit(p *proc) {
	select {
	case <-c.done:
	case <-time.After(unreleasedAfter):
		c.mu.Lock()
		n, bytes := len(c.buffers), c.bytes
		c.mu.Unlock()
		c.w.met.unreleased.Inc()
		c.w.events.add(Event{Kind: api.EventUnreleased, Conn: c.id, Peer: c.peer, PID: p.pid, Buffers: n, Bytes: bytes,
			Detail: fmt.Sprintf("process %d still alive %v after its connection ended", p.pid, unreleasedAfter)})
		c.w.log.Error("memory not given back: the connection ended but its process lives on", "conn", c.id, "pid", p.pid,
			"buffers", n, "bytes", bytes)
	}
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// readStderr relays the process's stderr to the log and keeps its last
// lines for a crash report.
func (p *proc) readStderr(c *conn, r *os.File) {
	defer r.Close()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), 64<<10)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		p.tailMu.Lock()
		if len(p.head) < 16 {
			p.head = append(p.head, line)
		}
		if len(p.tail) == 32 {
			p.tail = p.tail[1:]
		}
		p.tail = append(p.tail, line)
		p.tailMu.Unlock()
		c.w.log.Warn("compute process", "conn", c.id, "pid", p.pid, "says", line)
	}
}

// crashLine picks the most telling line of what a process printed last:
// ggml's assertion or Go's panic line, else the last line.
func (p *proc) crashLine() string {
	p.tailMu.Lock()
	defer p.tailMu.Unlock()
	lines := append(slices.Clone(p.head), p.tail...)
	for _, mark := range []string{"GGML_ASSERT", "ggml abort", "Assertion", "panic:", "fatal error:", "SIGABRT", "SIGSEGV", "SIGBUS", "SIGILL", "SIGFPE"} {
		for _, l := range lines {
			if strings.Contains(l, mark) {
				return truncate(l, 300)
			}
		}
	}
	if len(p.tail) > 0 {
		return truncate(p.tail[len(p.tail)-1], 300)
	}
	return ""
}

// endedBy is the reason the supervisor ended the connection, if it did.
func (c *conn) endedBy() api.Reason {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ended
}

// terminate ends the connection now: its process is killed (or, before
// one exists, its socket closed). The first reason given wins.
func (c *conn) terminate(why api.Reason) {
	c.mu.Lock()
	if c.ended == "" {
		c.ended = why
	}
	p, nc := c.proc, c.nc
	c.mu.Unlock()
	if p != nil {
		p.cmd.Process.Signal(syscall.SIGKILL)
	} else if nc != nil {
		nc.Close()
	}
}

// drain asks the connection to end at its next command boundary.
func (c *conn) drain() {
	c.mu.Lock()
	if c.ended == "" {
		c.ended = api.ReasonShutdown
	}
	p, nc := c.proc, c.nc
	c.mu.Unlock()
	if p != nil {
		p.cmd.Process.Signal(syscall.SIGTERM)
	} else if nc != nil {
		nc.Close()
	}
}

// activity is the process's page, if it has one.
func (c *conn) activity() (ctl.Activity, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.proc == nil || c.proc.page == nil {
		return ctl.Activity{}, false
	}
	return c.proc.page.Read(), true
}

// finish accounts the end of the connection: the process (if any) has
// exited and been reaped, so the kernel and the driver have its memory
// back; the quota it held returns, and the end is logged, counted and
// recorded as an event.
func (c *conn) finish(reason api.Reason, detail, violationKind string, exit *exitInfo) {
	w := c.w
	w.mu.Lock()
	c.mu.Lock()
	c.state = api.StateClosed
	n, bytes := len(c.buffers), c.bytes
	c.buffers = map[uint64]*binding{}
	// Everything it held is back: the process is reaped.
	for d, b := range c.devBytes {
		w.devBytes[d] -= b
		c.devBytes[d] = 0
	}
	w.hostBytes -= c.host
	c.bytes, c.host, c.held, c.nbuf = 0, 0, 0, 0
	if w.peers[c.peerHost]--; w.peers[c.peerHost] <= 0 {
		delete(w.peers, c.peerHost)
	}
	p := c.proc
	if p != nil {
		w.finished.add(p.page)
		p.page.Close()
		p.page = nil
	}
	c.mu.Unlock()
	w.mu.Unlock()
	w.freedTotal.Add(bytes)
	pid := 0
	if p != nil {
		pid = p.pid
		w.verifyReleased(c, pid)
	}
	// The end's event before the connection leaves the list: whoever sees
	// it gone (the admin API, a test) finds why in the events.
	kind := api.EventDisconnect
	if reason == api.ReasonCrashed {
		kind = api.EventCrashed
		w.met.crashes.Inc()
	}
	w.events.add(Event{Kind: kind, Conn: c.id, Peer: c.peer, PID: pid, Reason: reason, Detail: detail, Violation: violationKind,
		Buffers: n, Bytes: bytes})
	w.mu.Lock()
	delete(w.conns, c.id)
	w.mu.Unlock()

	w.met.connections.Dec()
	w.met.closes.WithLabelValues(string(reason)).Inc()
	if reason == api.ReasonDeadPeer || reason == api.ReasonIdle {
		w.met.reaped.WithLabelValues(string(reason)).Inc()
	}
	if violationKind != "" {
		w.met.protoErrors.WithLabelValues(violationKind).Inc()
	}
	log := w.log.Info
	switch reason {
	case api.ReasonViolation, api.ReasonDeadPeer, api.ReasonError, api.ReasonComputeTimeout:
		log = w.log.Warn
	case api.ReasonCrashed:
		log = w.log.Error
	}
	args := []any{"conn", c.id, "peer", c.peer, "reason", reason, "buffers", n, "bytes", bytes}
	if pid != 0 {
		args = append(args, "pid", pid)
	}
	if detail != "" {
		args = append(args, "detail", detail)
	}
	if violationKind != "" {
		args = append(args, "violation", violationKind)
	}
	log("connection closed, memory given back", args...)
}

// verifyReleased checks, where the driver can tell, that an exited
// process holds no device memory any more.
func (w *Worker) verifyReleased(c *conn, pid int) {
	if w.cfg.DriverMemory == nil {
		return
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		m, err := w.cfg.DriverMemory()
		if err != nil {
			return
		}
		held, listed := m[pid]
		if !listed {
			return
		}
		if time.Now().After(deadline) {
			w.met.unreleased.Inc()
			w.events.add(Event{Kind: api.EventUnreleased, Conn: c.id, Peer: c.peer, PID: pid, Bytes: held,
				Detail: fmt.Sprintf("the GPU driver still lists process %d 5s after it exited", pid)})
			w.log.Error("GPU memory not given back after the process exited", "conn", c.id, "pid", pid, "bytes", held)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}
