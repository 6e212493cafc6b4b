package compute

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"time"

	"github.com/boxproj/box/api"
	"github.com/boxproj/box/ggml"
	"github.com/boxproj/box/rpc"
	"github.com/boxproj/box/worker/cache"
	"github.com/boxproj/box/worker/ctl"
)

// binding is one buffer of the connection.
type binding struct {
	handle uint64
	dev    int
	buf    *ggml.Buffer
	vbase  uint64
	size   uint64
	named  bool // the supervisor has been told a tensor name for it
}

type storedGraph struct {
	g       *ggml.Graph
	indexes []indexCheck
	release func() // gives back the host memory it is counted for
}

// setGraph stores g as device d's graph (nil forgets it), freeing the one
// it replaces.
func (c *conn) setGraph(d int, g *storedGraph) {
	if old := c.graphs[d]; old != nil {
		old.g.Free()
		old.release()
	}
	c.graphs[d] = g
}

// conn is the one client connection this process serves, and everything it
// holds. Nothing here is freed on the way out: the process exits, and the
// kernel and the device driver take back all of it.
type conn struct {
	ini   ctl.Init
	sup   *supervisor
	page  *ctl.Page
	nc    net.Conn
	cache *cache.Cache
	// mapOffers counts the cache hits offered as mappings (maxMapOffers).
	mapOffers int

	devs    []*ggml.Backend // opened on first use
	buffers map[uint64]*binding
	graphs  []*storedGraph

	proto rpc.Version // what the supervisor negotiated
	ops   *rpc.OpMap  // the client's op ids to this ggml's

	shutdown      atomic.Bool // SIGTERM: the worker is stopping
	violationKind string
	nextBuf       uint64
	nextVA        uint64

	br        *bufio.Reader
	bw        *bufio.Writer
	scratch   []byte
	allowance uint64 // transient host memory used within ctl.TransientAllowance
	in        uint64 // payload bytes of the current command, for the page
	out       uint64
}

func newConn(ini ctl.Init, sup *supervisor, page *ctl.Page, nc net.Conn) *conn {
	c := &conn{ini: ini, sup: sup, page: page, nc: nc, buffers: map[uint64]*binding{},
		devs: make([]*ggml.Backend, len(ini.Devices)), graphs: make([]*storedGraph, len(ini.Devices)),
		br: bufio.NewReaderSize(io.MultiReader(bytes.NewReader(ini.Prefix), nc), 1<<20), bw: bufio.NewWriterSize(nc, 1<<20)}
	c.nextVA = 1 << 40
	c.proto = rpc.V3_6
	if v, err := rpc.ParseVersion(ini.Protocol); err == nil && ini.Protocol != "" {
		c.proto = v
	}
	tab, _ := rpc.OpTableFor(c.proto)
	c.ops = rpc.NewOpMap(tab, rpc.EmbeddedOps)
	return c
}

// backend opens device d on first use: a process opens only the devices
// its client uses (a GPU context costs time and memory).
func (c *conn) backend(d int) (*ggml.Backend, error) {
	if b := c.devs[d]; b != nil {
		return b, nil
	}
	name := c.ini.Devices[d].Name
	for attempt := 0; attempt < 2; attempt++ {
		for _, dev := range ggml.Devices() {
			if dev.Name == name {
				b, err := ggml.Open(dev, c.ini.Threads)
				if err != nil {
					return nil, err
				}
				c.devs[d] = b
				return b, nil
			}
		}
		// Not built in: load the backend libraries, as describe did.
		ggml.LoadBackends(ggml.BackendsDir())
	}
	return nil, fmt.Errorf("device %s is gone", name)
}

// loop serves commands until the connection ends, and says why. Between
// messages the idle timeout runs; from a message's first byte, the
// message deadline (it must arrive whole in time, whatever its sender's
// pace).
func (c *conn) loop() (api.Reason, string) {
	for {
		var idle time.Time
		if c.ini.IdleTimeout > 0 {
			idle = time.Now().Add(c.ini.IdleTimeout)
		}
		c.nc.SetReadDeadline(idle)
		if _, err := c.br.Peek(1); err != nil {
			return c.classify(err, false)
		}
		c.messageDeadline(rpc.RequestHeaderSize)
		cmd, size, err := rpc.ReadRequestHeader(c.br)
		if err != nil {
			return c.classify(err, true)
		}
		c.messageDeadline(size)
		t0 := time.Now()
		c.page.Begin(uint8(cmd), t0)
		c.in, c.out = size, 0
		err = c.dispatch(cmd, size)
		if err == nil && c.bw.Buffered() > 0 {
			err = c.bw.Flush()
		}
		now := time.Now()
		c.page.End(uint8(cmd), now.Sub(t0), c.in, c.out, now)
		if err != nil {
			var pe *rpc.ProtocolError
			var qe *quotaError
			var ue *unsupportedError
			switch {
			case errors.As(err, &ue):
				return api.ReasonUnsupportedOp, ue.Error()
			case errors.As(err, &pe):
				c.violationKind = pe.Kind
				return api.ReasonViolation, pe.Error()
			case errors.As(err, &qe):
				return api.ReasonQuota, qe.Error()
			}
			return c.classify(err, true)
		}
	}
}

// messageDeadline bounds the arrival of a message of size bytes.
func (c *conn) messageDeadline(size uint64) {
	if c.ini.MessageTimeout > 0 {
		c.nc.SetReadDeadline(time.Now().Add(ctl.MessageDeadline(c.ini.MessageTimeout, c.ini.MinRate, size)))
	}
}

func (c *conn) classify(err error, inMessage bool) (api.Reason, string) {
	if c.shutdown.Load() {
		return api.ReasonShutdown, ""
	}
	r, d := ctl.Classify(err)
	if r == api.ReasonIdle && inMessage {
		return api.ReasonMessageTimeout, fmt.Sprintf("a message did not arrive within --message-timeout %v (plus 1 s per %d bytes)",
			c.ini.MessageTimeout, c.ini.MinRate)
	}
	return r, d
}

// quotaError ends a connection that needs more memory than its quotas
// allow where the protocol has no way to say "no".
type quotaError struct{ what, limit string }

func (e *quotaError) Error() string { return e.what + " refused by " + e.limit }

// hold reserves n bytes of host memory for what, or fails with a quota
// error; release gives them back. What fits in the process's allowance
// (counted in its overhead) is not asked for.
func (c *conn) hold(what string, n uint64) (release func(), err error) {
	if n == 0 {
		return func() {}, nil
	}
	if c.allowance+n <= ctl.TransientAllowance {
		c.allowance += n
		return func() { c.allowance -= n }, nil
	}
	r, err := c.sup.ask(ctl.Msg{Op: ctl.OpReserve, Host: true, Size: n})
	if err != nil {
		return nil, err
	}
	if !r.OK {
		return nil, &quotaError{what: fmt.Sprintf("%s (%d bytes)", what, n), limit: r.Limit}
	}
	return func() { c.sup.tell(ctl.Msg{Op: ctl.OpUnreserve, Host: true, Size: n}) }, nil
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
	if int(d) >= len(c.ini.Devices) || d > 1<<20 {
		return 0, violation(cmd, "device", "device %d out of range (worker has %d)", d, len(c.ini.Devices))
	}
	return int(d), nil
}

// openDevice checks device d and opens it.
func (c *conn) openDevice(cmd rpc.Cmd, d uint32) (int, *ggml.Backend, error) {
	i, err := c.device(cmd, d)
	if err != nil {
		return 0, nil, err
	}
	be, err := c.backend(i)
	if err != nil {
		return 0, nil, fmt.Errorf("open device: %w", err)
	}
	return i, be, nil
}

// ack answers a command whose empty answer exists only before 6.0.
func (c *conn) ack(cmd rpc.Cmd) error {
	if c.proto.Replies(cmd) {
		return c.reply()
	}
	return nil
}

func (c *conn) reply(payload ...[]byte) error {
	for _, p := range payload {
		c.out += uint64(len(p))
	}
	return rpc.WriteResponse(c.bw, payload...)
}

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
	switch cmd {
	case rpc.CmdHello:
		return violation(cmd, "hello", "second HELLO")
	case rpc.CmdDeviceCount:
		if size != 0 {
			return violation(cmd, "size", "payload is %d bytes, want 0", size)
		}
		return c.reply(binary.LittleEndian.AppendUint32(nil, uint32(len(c.ini.Devices))))
	case rpc.CmdAllocBuffer:
		return c.allocBuffer(cmd, size)
	case rpc.CmdGetAlignment, rpc.CmdGetMaxSize, rpc.CmdGetDeviceMemory:
		d, err := c.deviceArg(cmd, size)
		if err != nil {
			return err
		}
		desc := c.ini.Devices[d]
		switch cmd {
		case rpc.CmdGetAlignment:
			return c.reply(u64(desc.Alignment))
		case rpc.CmdGetMaxSize:
			return c.reply(u64(desc.MaxSize))
		default:
			// Free memory depends on every connection and the quotas: the
			// supervisor knows it.
			r, err := c.sup.ask(ctl.Msg{Op: ctl.OpMemory, Dev: d})
			if err != nil {
				return err
			}
			return c.reply(u64(r.Free), u64(r.Total))
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
		delete(c.buffers, b.handle)
		if b.buf != nil {
			b.buf.Free()
		}
		// Asked, not told: once the client has its answer, the worker's
		// figures no longer count the buffer.
		if _, err := c.sup.ask(ctl.Msg{Op: ctl.OpFree, Handle: b.handle}); err != nil {
			return err
		}
		return c.ack(cmd)
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
		return c.ack(cmd)
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
		if b != nil && b.buf != nil && !b.buf.IsHost() {
			if err := ggml.InitTensor(spec); err != nil {
				return violation(cmd, "tensor", "%v", err)
			}
		}
		return c.ack(cmd)
	case rpc.CmdMemsetTensor:
		if !c.proto.HasMemset() {
			return violation(cmd, "command", "unknown command %d at protocol %s", uint8(cmd), c.proto)
		}
		return c.memsetTensor(cmd, size)
	case rpc.CmdGetAllocSize:
		return c.getAllocSize(cmd, size)
	default:
		return violation(cmd, "command", "unknown command %d", uint8(cmd))
	}
}

func (c *conn) allocBuffer(cmd rpc.Cmd, size uint64) error {
	req, err := readFixed(c, cmd, size, 12, rpc.DecodeAllocBuffer)
	if err != nil {
		return err
	}
	d, be, err := c.openDevice(cmd, req.Device)
	if err != nil {
		return err
	}
	// The supervisor grants the bytes (and the buffer's overhead) against
	// the quotas before the device is asked: a refusal costs nothing. The
	// grant names the handle the buffer will have, so the supervisor lists
	// it from then on, before the client hears of it.
	h := c.nextBuf + 1
	r, err := c.sup.ask(ctl.Msg{Op: ctl.OpReserve, Dev: d, Size: req.Size, Buffer: true, Handle: h})
	if err != nil {
		return err
	}
	if !r.OK {
		return c.reply(u64(0), u64(0))
	}
	if req.Size == 0 {
		// ggml's zero-size "dummy" buffer is never deleted by
		// ggml_backend_buffer_free: a zero-size buffer is box's alone.
		_, vbase := c.assign(0, c.ini.Devices[d].Alignment)
		c.buffers[h] = &binding{handle: h, dev: d, vbase: vbase}
		return c.reply(u64(h), u64(0))
	}
	reserved := req.Size
	buf, err := be.Alloc(req.Size)
	if err != nil {
		c.sup.tell(ctl.Msg{Op: ctl.OpUnreserve, Dev: d, Size: reserved, Buffer: true, Handle: h})
		c.sup.tell(ctl.Msg{Op: ctl.OpAllocFail, Dev: d, Size: req.Size})
		return c.reply(u64(0), u64(0))
	}
	// Account what the device really gave (it may round up).
	if real := buf.Size(); real > reserved {
		r, err := c.sup.ask(ctl.Msg{Op: ctl.OpReserve, Dev: d, Size: real - reserved, Handle: h})
		if err != nil {
			return err
		}
		if !r.OK {
			buf.Free()
			c.sup.tell(ctl.Msg{Op: ctl.OpUnreserve, Dev: d, Size: reserved, Buffer: true, Handle: h})
			return c.reply(u64(0), u64(0))
		}
	} else if real < reserved {
		c.sup.tell(ctl.Msg{Op: ctl.OpUnreserve, Dev: d, Size: reserved - real, Handle: h})
	}
	// Fresh memory holds no earlier tenant's bytes, on any device.
	buf.Zero()
	buf.Prefault() // uploads into it follow
	_, vbase := c.assign(buf.Size(), c.ini.Devices[d].Alignment)
	c.buffers[h] = &binding{handle: h, dev: d, buf: buf, vbase: vbase, size: buf.Size()}
	return c.reply(u64(h), u64(buf.Size()))
}

// assign hands out an opaque handle and a virtual base address range for a
// new buffer: clients never see real addresses. Both are per connection
// (they only mean something on the connection that got them), which also
// makes a client's traffic reproducible.
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

// noteName tells the supervisor the first tensor name written into b, so
// operators can see what a buffer holds.
func (c *conn) noteName(b *binding, t *rpc.Tensor) {
	if b.named {
		return
	}
	b.named = true
	if name := t.NameString(); name != "" {
		c.sup.tell(ctl.Msg{Op: ctl.OpName, Handle: b.handle, Name: name})
	}
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
	if b.buf == nil {
		return nil, 0, violation(cmd, "buffer", "buffer %#x has size 0: it holds no tensor data", b.handle)
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
	hdr := uint64(c.proto.SetTensorHeaderSize())
	if size < hdr {
		return violation(cmd, "size", "payload is %d bytes, want at least %d", size, hdr)
	}
	p := make([]byte, hdr)
	if _, err := io.ReadFull(c.br, p); err != nil {
		return err
	}
	h, flag, err := rpc.DecodeSetTensorHeaderAt(p, c.proto)
	if err != nil {
		return err
	}
	// From 7.0 the client says which uploads are worth keeping (weights);
	// before, box keeps every large one.
	keep := flag || !c.proto.CacheFlag()
	n := size - hdr
	b, start, err := c.dataRange(cmd, &h.Tensor, tensorBytes(&h.Tensor), h.Offset, n)
	if err != nil {
		return err
	}
	c.noteName(b, &h.Tensor)
	if b.buf.IsHost() {
		// Straight from the socket into device memory: no copy.
		if _, err := io.ReadFull(c.br, b.buf.HostBytes(start, n)); err != nil {
			return err
		}
		if keep && c.cache != nil && n > rpc.BoxCacheThreshold {
			c.cache.Put(b.buf.HostBytes(start, n))
		}
		return nil
	}
	staging := min(n, 8<<20)
	caching := keep && c.cache != nil && n > rpc.BoxCacheThreshold
	if caching {
		staging += n
	}
	release, err := c.hold("SET_TENSOR staging", staging)
	if err != nil {
		return err
	}
	defer release()
	chunk := make([]byte, min(n, 8<<20))
	var all []byte
	if caching {
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
		c.cache.Put(all)
	}
	return nil
}

// memsetTensor fills part of a tensor with one byte (5.0 and later).
func (c *conn) memsetTensor(cmd rpc.Cmd, size uint64) error {
	req, err := readFixed(c, cmd, size, rpc.MemsetTensorReqSize, rpc.DecodeMemsetTensor)
	if err != nil {
		return err
	}
	b, start, err := c.dataRange(cmd, &req.Tensor, tensorBytes(&req.Tensor), req.Offset, req.Size)
	if err != nil {
		return err
	}
	if b.buf.IsHost() {
		dst := b.buf.HostBytes(start, req.Size)
		for i := range dst {
			dst[i] = req.Value
		}
		return c.ack(cmd)
	}
	chunk := make([]byte, min(req.Size, 1<<20))
	for i := range chunk {
		chunk[i] = req.Value
	}
	for done := uint64(0); done < req.Size; {
		k := min(uint64(len(chunk)), req.Size-done)
		b.buf.Write(start+done, chunk[:k])
		done += k
	}
	return c.ack(cmd)
}

// maxMapOffers bounds the cache entries one connection maps: each one
// splits its buffer's mapping in up to three, and the kernel allows a
// process about 65,000 mappings (vm.max_map_count), which the Go runtime
// and the C library also need. Hits past it are read.
const maxMapOffers = 16384

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
	if c.cache == nil {
		return c.reply([]byte{0})
	}
	// The entry's length is known only once it is opened; the range is
	// checked then, once, and a failed check ends the read before any byte
	// is written. The cached data goes straight into the tensor (host
	// buffers) and is verified there; if it turns out corrupt the client is
	// told to send it, which overwrites it.
	var (
		target   *binding
		start    uint64
		rangeErr error
		release  = func() {}
	)
	defer func() { release() }()
	ok := c.cache.ReadInto(req.Hash, func(n uint64) ([]byte, bool, bool) {
		target, start, rangeErr = c.dataRange(cmd, &req.Tensor, tensorBytes(&req.Tensor), req.Offset, n)
		if rangeErr != nil {
			return nil, false, false
		}
		if target.buf.IsHost() {
			// A buffer that is a mapping of its own gets the entry's
			// pages mapped in: no copy, no fresh pages to clear, and one
			// copy of the weights in memory with the page cache. Its
			// prefault would turn them into private copies, so it stops.
			mappable := c.mapOffers < maxMapOffers && target.buf.OwnMapping()
			if mappable {
				c.mapOffers++
				target.buf.StopPrefault()
			}
			return target.buf.HostBytes(start, n), mappable, true
		}
		release, rangeErr = c.hold("SET_TENSOR_HASH staging", n)
		return nil, false, rangeErr == nil
	}, func(data []byte) {
		target.buf.Write(start, data)
	})
	if rangeErr != nil {
		return rangeErr
	}
	if !ok {
		return c.reply([]byte{0})
	}
	c.noteName(target, &req.Tensor)
	c.page.CacheHit()
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
	release, err := c.hold("GET_TENSOR staging", req.Size)
	if err != nil {
		return err
	}
	defer release()
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
	_, be, err := c.openDevice(cmd, req.Device)
	if err != nil {
		return err
	}
	// What the reference server accepts here, and only here: a tensor with
	// a data address but no buffer (the client asks during graph reserve,
	// e.g. for FLASH_ATTN_EXT over a KV-cache view not yet placed) means the
	// device's default buffer type. Only shapes matter; the address is
	// dropped, so its data is never read.
	unplaced(&req.Tensor)
	for i := range req.Srcs {
		unplaced(&req.Srcs[i])
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
	alloc := be.AllocSize(t, srcs)
	return c.reply(u64(max(alloc, n)))
}

// unplaced drops the data address of a tensor that names no buffer.
func unplaced(t *rpc.Tensor) {
	if t.Buffer == 0 {
		t.Data = 0
	}
}

// dropGraphsUsing forgets stored graphs that point into b, so a RECOMPUTE
// can never touch freed memory.
func (c *conn) dropGraphsUsing(b *binding) {
	for i, g := range c.graphs {
		if g == nil {
			continue
		}
		if _, ok := g.g.Buffers[b.buf]; ok {
			c.setGraph(i, nil)
		}
	}
}
