package worker

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/boxproj/box/ggml"
	"github.com/boxproj/box/hostmem"
	"github.com/boxproj/box/rpc"
)

// binding is one buffer and the connection it belongs to.
type binding struct {
	handle  uint64
	dev     int
	buf     *ggml.Buffer
	vbase   uint64
	size    uint64
	created time.Time
}

type storedGraph struct {
	g       *ggml.Graph
	indexes []indexCheck
}

// conn is one client connection and everything it holds.
type conn struct {
	w     *Worker
	id    uint64
	nc    net.Conn
	peer  string
	since time.Time

	lastActive atomic.Int64 // unix nanos
	bytes      atomic.Uint64
	closeWhy   atomic.Pointer[string]

	mu      sync.Mutex // guards buffers and state for readers outside the loop
	buffers map[uint64]*binding
	state   string // handshake, serving, closed
	graphs  []*storedGraph

	violationKind string
	nextBuf       uint64
	nextVA        uint64

	br      *bufio.Reader
	bw      *bufio.Writer
	scratch []byte
}

func newConn(w *Worker, id uint64, nc net.Conn) *conn {
	c := &conn{w: w, id: id, nc: nc, peer: nc.RemoteAddr().String(), since: time.Now(),
		buffers: map[uint64]*binding{}, state: "handshake", graphs: make([]*storedGraph, len(w.backends)),
		br: bufio.NewReaderSize(nc, 1<<20), bw: bufio.NewWriterSize(nc, 1<<20)}
	c.nextVA = 1 << 40
	c.lastActive.Store(time.Now().UnixNano())
	return c
}

// close ends the connection from outside its loop (operator, shutdown).
func (c *conn) close(why string) {
	c.closeWhy.CompareAndSwap(nil, &why)
	c.nc.Close()
}

func (c *conn) serve() {
	reason, detail := c.loop()
	kind := ""
	if reason == "violation" {
		kind = c.violationKind
	}
	if why := c.closeWhy.Load(); why != nil {
		reason = *why
	}
	c.nc.Close()
	c.finish(reason, detail, kind)
}

// finish frees everything the connection holds and records why it ended.
func (c *conn) finish(reason, detail, violationKind string) {
	w := c.w
	c.mu.Lock()
	c.state = "closed"
	c.mu.Unlock()
	n, bytes := len(c.buffers), c.bytes.Load()
	leak := w.cfg.Fault == FaultLeakOnDisconnect
	if !leak {
		c.freeAll()
		w.removeConn(c)
	} else {
		c.freeGraphs() // graphs hold no device memory of their own
	}
	w.met.connections.Dec()
	w.met.closes.WithLabelValues(reason).Inc()
	if reason == "dead-peer" || reason == "idle" {
		w.met.reaped.WithLabelValues(reason).Inc()
	}
	kind := "disconnect"
	if leak {
		kind = "leaked"
	}
	w.events.add(Event{Kind: kind, Conn: c.id, Peer: c.peer, Reason: reason, Detail: detail, Violation: violationKind, Buffers: n, Bytes: bytes})
	log := w.log.Info
	if reason == "violation" || reason == "dead-peer" || reason == "error" {
		log = w.log.Warn
	}
	args := []any{"conn", c.id, "peer", c.peer, "reason", reason, "buffers", n, "bytes", bytes}
	if detail != "" {
		args = append(args, "detail", detail)
	}
	if leak {
		log("connection closed, buffers KEPT (fault injection)", args...)
	} else {
		log("connection closed, buffers freed", args...)
	}
}

func (c *conn) freeGraphs() {
	for i, g := range c.graphs {
		if g != nil {
			g.g.Free()
			c.graphs[i] = nil
		}
	}
}

// freeAll releases every buffer of the connection.
func (c *conn) freeAll() {
	c.freeGraphs()
	c.mu.Lock()
	bufs := c.buffers
	c.buffers = map[uint64]*binding{}
	c.mu.Unlock()
	for _, b := range bufs {
		c.freeBinding(b)
	}
}

func (c *conn) freeBinding(b *binding) {
	b.buf.Free()
	c.w.unreserve(c, b.dev, b.size)
	c.w.met.frees.WithLabelValues(c.w.backends[b.dev].Device.Name).Inc()
	c.w.freedTotal.Add(b.size)
}

// loop serves commands until the connection ends; it returns a reason
// (closed, dead-peer, idle, violation, error) and detail.
func (c *conn) loop() (string, string) {
	for {
		if c.w.cfg.IdleTimeout > 0 {
			c.nc.SetReadDeadline(time.Now().Add(c.w.cfg.IdleTimeout))
		}
		cmd, size, err := rpc.ReadRequestHeader(c.br)
		if err != nil {
			return classify(err)
		}
		if c.w.cfg.IdleTimeout > 0 {
			c.nc.SetReadDeadline(time.Time{})
		}
		c.lastActive.Store(time.Now().UnixNano())
		t0 := time.Now()
		err = c.dispatch(cmd, size)
		c.w.met.cmdSeconds.WithLabelValues(cmd.String()).Observe(time.Since(t0).Seconds())
		if err != nil {
			var pe *rpc.ProtocolError
			if errors.As(err, &pe) {
				c.w.met.protoErrors.WithLabelValues(pe.Kind).Inc()
				c.violationKind = pe.Kind
				return "violation", pe.Error()
			}
			return classify(err)
		}
		if c.bw.Buffered() > 0 {
			if err := c.bw.Flush(); err != nil {
				return classify(err)
			}
		}
	}
}

func classify(err error) (string, string) {
	var ne net.Error
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "closed", ""
	case errors.Is(err, syscall.ETIMEDOUT), errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		// Only keepalive probes (or unacknowledged writes) find these on an
		// otherwise quiet connection: the peer's host is gone.
		return "dead-peer", "keepalive: " + err.Error()
	case errors.As(err, &ne) && ne.Timeout(), errors.Is(err, os.ErrDeadlineExceeded):
		return "idle", "no message within --idle-timeout"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "closed", "peer closed mid-message"
	default:
		return "error", err.Error()
	}
}

// fixed reads a payload that must be exactly n bytes.
func (c *conn) fixed(cmd rpc.Cmd, size uint64, n int) ([]byte, error) {
	if size != uint64(n) {
		return nil, violation(cmd, "size", "payload is %d bytes, want %d", size, n)
	}
	if cap(c.scratch) < n {
		c.scratch = make([]byte, max(n, 4096))
	}
	b := c.scratch[:n]
	_, err := io.ReadFull(c.br, b)
	return b, err
}

// readFixed reads a payload of exactly n bytes and decodes it.
func readFixed[T any](c *conn, cmd rpc.Cmd, size uint64, n int, decode func([]byte) (T, error)) (T, error) {
	p, err := c.fixed(cmd, size, n)
	if err != nil {
		var zero T
		return zero, err
	}
	return decode(p)
}

// deviceArg reads a request that names only a device, and checks the device.
func (c *conn) deviceArg(cmd rpc.Cmd, size uint64) (int, error) {
	req, err := readFixed(c, cmd, size, 4, rpc.DecodeDeviceReq)
	if err != nil {
		return 0, err
	}
	return c.device(cmd, req.Device)
}

func (c *conn) device(cmd rpc.Cmd, d uint32) (int, error) {
	if int(d) >= len(c.w.backends) || d > 1<<20 {
		return 0, violation(cmd, "device", "device %d out of range (worker has %d)", d, len(c.w.backends))
	}
	return int(d), nil
}

func (c *conn) reply(payload ...[]byte) error { return rpc.WriteResponse(c.bw, payload...) }

func u64(v uint64) []byte { return binary.LittleEndian.AppendUint64(nil, v) }

func (c *conn) binding(cmd rpc.Cmd, h uint64) (*binding, error) {
	b := c.buffers[h]
	if b == nil {
		return nil, violation(cmd, "buffer", "buffer %#x is not owned by this connection", h)
	}
	return b, nil
}

// bufferArg reads a request that names only a buffer, and looks it up.
func (c *conn) bufferArg(cmd rpc.Cmd, size uint64) (*binding, error) {
	req, err := readFixed(c, cmd, size, 8, rpc.DecodeBufferReq)
	if err != nil {
		return nil, err
	}
	return c.binding(cmd, req.Handle)
}

func (c *conn) dispatch(cmd rpc.Cmd, size uint64) error {
	if c.state == "handshake" {
		if cmd != rpc.CmdHello {
			return violation(cmd, "hello", "first command must be HELLO, got %s", cmd)
		}
		if size != 0 {
			return violation(cmd, "hello", "HELLO carries %d bytes; a 3.x client sends none (newer protocol?)", size)
		}
		c.mu.Lock()
		c.state = "serving"
		c.mu.Unlock()
		return c.reply([]byte{rpc.ProtoMajor, rpc.ProtoMinor, rpc.ProtoPatch})
	}
	switch cmd {
	case rpc.CmdHello:
		return violation(cmd, "hello", "second HELLO")
	case rpc.CmdDeviceCount:
		if size != 0 {
			return violation(cmd, "size", "payload is %d bytes, want 0", size)
		}
		return c.reply(binary.LittleEndian.AppendUint32(nil, uint32(len(c.w.backends))))
	case rpc.CmdAllocBuffer:
		return c.allocBuffer(cmd, size)
	case rpc.CmdGetAlignment, rpc.CmdGetMaxSize, rpc.CmdGetDeviceMemory:
		d, err := c.deviceArg(cmd, size)
		if err != nil {
			return err
		}
		be := c.w.backends[d]
		switch cmd {
		case rpc.CmdGetAlignment:
			return c.reply(u64(be.Alignment()))
		case rpc.CmdGetMaxSize:
			return c.reply(u64(be.MaxSize()))
		default:
			free, total := c.w.deviceMemory(d)
			return c.reply(u64(free), u64(total))
		}
	case rpc.CmdBufferGetBase, rpc.CmdFreeBuffer:
		b, err := c.bufferArg(cmd, size)
		if err != nil {
			return err
		}
		if cmd == rpc.CmdBufferGetBase {
			base := b.vbase
			if b.size == 0 {
				base = 0
			}
			return c.reply(u64(base))
		}
		c.dropGraphsUsing(b)
		c.mu.Lock()
		delete(c.buffers, b.handle)
		c.mu.Unlock()
		c.freeBinding(b)
		return c.reply()
	case rpc.CmdBufferClear:
		req, err := readFixed(c, cmd, size, 9, rpc.DecodeBufferClear)
		if err != nil {
			return err
		}
		b, err := c.binding(cmd, req.Handle)
		if err != nil {
			return err
		}
		if b.size > 0 {
			b.buf.Clear(req.Value)
		}
		return c.reply()
	case rpc.CmdSetTensor:
		return c.setTensor(cmd, size)
	case rpc.CmdSetTensorHash:
		return c.setTensorHash(cmd, size)
	case rpc.CmdGetTensor:
		return c.getTensor(cmd, size)
	case rpc.CmdCopyTensor:
		return c.copyTensor(cmd, size)
	case rpc.CmdGraphCompute:
		return c.graphCompute(cmd, size)
	case rpc.CmdGraphRecompute:
		d, err := c.deviceArg(cmd, size)
		if err != nil {
			return err
		}
		if c.graphs[d] == nil {
			return violation(cmd, "graph", "no stored graph for device %d", d)
		}
		return c.compute(cmd, d, c.graphs[d])
	case rpc.CmdInitTensor:
		req, err := readFixed(c, cmd, size, rpc.TensorSize, rpc.DecodeInitTensor)
		if err != nil {
			return err
		}
		spec, b, _, err := c.resolveTensor(cmd, &req.Tensor, false)
		if err != nil {
			return err
		}
		if b != nil && !b.buf.IsHost() {
			if err := ggml.InitTensor(spec); err != nil {
				return violation(cmd, "tensor", "%v", err)
			}
		}
		return c.reply()
	case rpc.CmdGetAllocSize:
		return c.getAllocSize(cmd, size)
	default:
		return violation(cmd, "command", "unknown command %d", uint8(cmd))
	}
}

// memory is a device's free and total bytes. For a CPU device, ggml may
// count all RAM as free; the host's MemAvailable and cgroup limit are used
// instead, so "free" means what could really be allocated.
func (w *Worker) memory(d int) (free, total uint64) {
	b := w.backends[d]
	free, total = b.Memory()
	if b.Device.Type == "cpu" {
		if h, err := hostmem.Read("/"); err == nil {
			total, free = hostmem.CPU(total, free, h)
		}
	}
	return free, total
}

func (w *Worker) deviceMemory(d int) (free, total uint64) {
	free, total = w.memory(d)
	if w.cfg.MaxMemory > 0 {
		// A quota is the device as far as clients are concerned: report it,
		// so a head sizes its split to what it may actually allocate.
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

func (c *conn) allocBuffer(cmd rpc.Cmd, size uint64) error {
	req, err := readFixed(c, cmd, size, 12, rpc.DecodeAllocBuffer)
	if err != nil {
		return err
	}
	d, err := c.device(cmd, req.Device)
	if err != nil {
		return err
	}
	w := c.w
	devName := w.backends[d].Device.Name
	if limit, ok := w.reserve(c, d, req.Size); !ok {
		w.met.quotaRefusals.WithLabelValues(limit).Inc()
		w.events.add(Event{Kind: "quota", Conn: c.id, Peer: c.peer, Bytes: req.Size, Detail: limit})
		w.log.Warn("allocation refused by quota", "conn", c.id, "device", devName, "bytes", req.Size, "limit", limit)
		return c.reply(u64(0), u64(0))
	}
	buf, err := w.backends[d].Alloc(req.Size)
	if err != nil {
		w.unreserve(c, d, req.Size)
		w.met.allocFailures.WithLabelValues(devName).Inc()
		w.log.Warn("allocation failed", "conn", c.id, "device", devName, "bytes", req.Size)
		return c.reply(u64(0), u64(0))
	}
	// Account what the device really gave (it may round up).
	if real := buf.Size(); real != req.Size {
		w.unreserve(c, d, req.Size)
		if _, ok := w.reserve(c, d, real); !ok {
			buf.Free()
			w.met.quotaRefusals.WithLabelValues("max-memory").Inc()
			return c.reply(u64(0), u64(0))
		}
	}
	h, vbase := c.assign(buf.Size(), w.backends[d].Alignment())
	b := &binding{handle: h, dev: d, buf: buf, vbase: vbase, size: buf.Size(), created: time.Now()}
	c.mu.Lock()
	c.buffers[h] = b
	c.mu.Unlock()
	w.met.allocs.WithLabelValues(devName).Inc()
	return c.reply(u64(h), u64(b.size))
}

// dataRange checks that [data+off, data+off+n) lies inside both the tensor
// and its buffer, and returns the buffer offset.
func (c *conn) dataRange(cmd rpc.Cmd, t *rpc.Tensor, tbytes, off, n uint64) (*binding, uint64, error) {
	spec, b, _, err := c.resolveTensor(cmd, t, true)
	if err != nil {
		return nil, 0, err
	}
	if off > tbytes || n > tbytes-off {
		return nil, 0, violation(cmd, "range", "%d bytes at offset %d run past tensor %q (%d bytes)", n, off, t.NameString(), tbytes)
	}
	start := spec.Offset + off
	if start > b.size || n > b.size-start {
		return nil, 0, violation(cmd, "range", "%d bytes at offset %d run past the buffer", n, off)
	}
	return b, start, nil
}

func tensorBytes(t *rpc.Tensor) uint64 {
	n, ok := t.Nbytes()
	if !ok {
		return 0
	}
	return n
}

func (c *conn) setTensor(cmd rpc.Cmd, size uint64) error {
	const hdr = rpc.TensorSize + 8
	if size < hdr {
		return violation(cmd, "size", "payload is %d bytes, want at least %d", size, hdr)
	}
	p := make([]byte, hdr)
	if _, err := io.ReadFull(c.br, p); err != nil {
		return err
	}
	h, err := rpc.DecodeSetTensorHeader(p)
	if err != nil {
		return err
	}
	n := size - hdr
	b, start, err := c.dataRange(cmd, &h.Tensor, tensorBytes(&h.Tensor), h.Offset, n)
	if err != nil {
		return err
	}
	if b.buf.IsHost() {
		// Straight from the socket into device memory: no copy.
		if _, err := io.ReadFull(c.br, b.buf.HostBytes(start, n)); err != nil {
			return err
		}
		if c.w.cache != nil && n > rpc.BoxCacheThreshold {
			c.w.cache.put(b.buf.HostBytes(start, n))
		}
		return nil
	}
	chunk := make([]byte, min(n, 8<<20))
	var all []byte
	if c.w.cache != nil && n > rpc.BoxCacheThreshold {
		all = make([]byte, 0, n)
	}
	for done := uint64(0); done < n; {
		k := min(uint64(len(chunk)), n-done)
		if _, err := io.ReadFull(c.br, chunk[:k]); err != nil {
			return err
		}
		b.buf.Write(start+done, chunk[:k])
		if all != nil {
			all = append(all, chunk[:k]...)
		}
		done += k
	}
	if all != nil {
		c.w.cache.put(all)
	}
	return nil
}

func (c *conn) setTensorHash(cmd rpc.Cmd, size uint64) error {
	req, err := readFixed(c, cmd, size, rpc.TensorSize+16, rpc.DecodeSetTensorHash)
	if err != nil {
		return err
	}
	// Validate the tensor whether or not the data is cached: a bad tensor is
	// a bad client either way.
	if _, _, _, err := c.resolveTensor(cmd, &req.Tensor, true); err != nil {
		return err
	}
	if c.w.cache == nil {
		return c.reply([]byte{0})
	}
	// The cached data goes straight into the tensor (host buffers) and is
	// verified there; if it turns out corrupt the client is told to send it,
	// which overwrites it.
	var rangeErr error
	ok := c.w.cache.readInto(req.Hash, func(n uint64) []byte {
		b, start, err := c.dataRange(cmd, &req.Tensor, tensorBytes(&req.Tensor), req.Offset, n)
		if err != nil {
			rangeErr = err
			return nil
		}
		if b.buf.IsHost() {
			return b.buf.HostBytes(start, n)
		}
		return nil
	}, func(n uint64, data []byte) {
		b, start, _ := c.dataRange(cmd, &req.Tensor, tensorBytes(&req.Tensor), req.Offset, n)
		b.buf.Write(start, data)
	})
	if rangeErr != nil {
		return rangeErr
	}
	if !ok {
		return c.reply([]byte{0})
	}
	c.w.met.cacheHits.Inc()
	return c.reply([]byte{1})
}

func (c *conn) getTensor(cmd rpc.Cmd, size uint64) error {
	req, err := readFixed(c, cmd, size, rpc.TensorSize+16, rpc.DecodeGetTensor)
	if err != nil {
		return err
	}
	b, start, err := c.dataRange(cmd, &req.Tensor, tensorBytes(&req.Tensor), req.Offset, req.Size)
	if err != nil {
		return err
	}
	if b.buf.IsHost() {
		return c.reply(b.buf.HostBytes(start, req.Size))
	}
	out := make([]byte, req.Size)
	b.buf.Read(start, out)
	return c.reply(out)
}

func (c *conn) copyTensor(cmd rpc.Cmd, size uint64) error {
	req, err := readFixed(c, cmd, size, 2*rpc.TensorSize, rpc.DecodeCopyTensor)
	if err != nil {
		return err
	}
	src, _, srcN, err := c.resolveTensor(cmd, &req.Src, true)
	if err != nil {
		return err
	}
	dst, db, _, err := c.resolveTensor(cmd, &req.Dst, true)
	if err != nil {
		return err
	}
	if dst.Offset+srcN > db.size || dst.Offset+srcN < dst.Offset {
		return violation(cmd, "range", "copy of %d bytes runs past the destination buffer", srcN)
	}
	// ggml copies only between identical layouts (it asserts); anything else
	// is answered "not supported" and the client falls back.
	if src.Type != dst.Type || src.NE != dst.NE || src.NB != dst.NB {
		return c.reply([]byte{0})
	}
	if err := ggml.Copy(src, dst); err != nil {
		return c.reply([]byte{0})
	}
	return c.reply([]byte{1})
}

func (c *conn) getAllocSize(cmd rpc.Cmd, size uint64) error {
	req, err := readFixed(c, cmd, size, 4+rpc.TensorSize*(1+rpc.MaxSrc), rpc.DecodeGetAllocSize)
	if err != nil {
		return err
	}
	d, err := c.device(cmd, req.Device)
	if err != nil {
		return err
	}
	t, _, n, err := c.resolveTensor(cmd, &req.Tensor, false)
	if err != nil {
		return err
	}
	var srcs []ggml.TensorSpec
	for i := range req.Srcs {
		if req.Srcs[i].ID == 0 {
			continue
		}
		s, _, _, err := c.resolveTensor(cmd, &req.Srcs[i], false)
		if err != nil {
			return err
		}
		t.Src[i] = int32(len(srcs) + 1)
		srcs = append(srcs, s)
	}
	alloc := c.w.backends[d].AllocSize(t, srcs)
	return c.reply(u64(max(alloc, n)))
}

// dropGraphsUsing forgets stored graphs that point into b, so a RECOMPUTE
// can never touch freed memory.
func (c *conn) dropGraphsUsing(b *binding) {
	for i, g := range c.graphs {
		if g == nil {
			continue
		}
		if _, ok := g.g.Buffers[b.buf]; ok {
			g.g.Free()
			c.graphs[i] = nil
		}
	}
}
