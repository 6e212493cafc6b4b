// Package remote makes the devices of box workers (or any ggml RPC 3.6.0
// server) ggml devices of this process, so llama.cpp can place layers on
// them. The wire protocol is package rpc's; this package is the ggml
// backend glue. A transport failure never aborts the process: the node is
// marked failed, its operations turn into no-ops, and the error surfaces
// through Err (checked by the engine after every decode) and /health.
package remote

/*
#include <stdlib.h>
#include "glue.h"
*/
import "C"

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/cgo"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/boxproj/box/rpc"
	_ "github.com/ollama/ollama/ml/backend/ggml/ggml/src" // links ggml for glue.c
)

// Node is one worker endpoint: its connection and its devices.
type Node struct {
	Addr  string
	log   *slog.Logger
	dopts []rpc.DialOption

	// mu serialises commands on the main connection (ggml's calls, from
	// every context, and the in-band heartbeat). Nothing that must be quick
	// waits for it: failing or closing the node closes the socket instead,
	// which ends a call in flight at once.
	mu      sync.Mutex
	cur     atomic.Pointer[rpc.Client] // the main connection
	devices []*Device
	lastUse time.Time // guarded by mu
	timeout time.Duration
	compute computeTimes // guarded by mu

	// probe is a second, idle connection used only for liveness, so a
	// stalled worker is noticed while a call holds mu (nil when the worker
	// serves one connection at a time, like llama.cpp's rpc-server).
	probeMu sync.Mutex
	probe   *rpc.Client

	failed atomic.Pointer[error]
	// upload is the queue of the Upload this node is in, if any.
	upload atomic.Pointer[uploadQueue]
	// What this connection's worker answered to SET_TENSOR_HASH (see
	// setCached): whether it missed one, whether it ever had one, and the
	// misses since it last had one.
	probeMissed   atomic.Bool
	probeHit      atomic.Bool
	missStreak    atomic.Int32
	probeDeferred atomic.Int32 // tensors sent before the first probe
	bytes         atomic.Int64 // bytes in live buffers on this node
	buffers       atomic.Int64
	uploaded      atomic.Int64 // tensor bytes sent on this connection
	// graphGen changes whenever the worker may have dropped its stored
	// graphs: a new connection, or a freed buffer.
	graphGen atomic.Uint64
	stats    callStats // where its commands spent the head's time
	// gen numbers the main connection; every buffer remembers the one it
	// was allocated on, and a handle is never sent on another (after a
	// reconnect the worker knows nothing of it, or has another buffer by
	// that number).
	gen atomic.Uint64

	reg   C.ggml_backend_reg_t
	proto rpc.Version // of the main connection; guarded by mu
	ops   *rpc.OpMap  // guarded by mu
}

// setConn adopts c as the main connection's protocol: its op table, and
// which of box's ops its devices may be given. Called with mu held, or
// before the node is shared.
func (n *Node) setConn(c *rpc.Client) {
	n.proto, n.ops = c.Protocol(), c.Ops()
	for i := range n.devices {
		for op := 0; op < rpc.EmbeddedOps.Count(); op++ {
			_, ok := n.ops.ToPeer(uint32(op))
			missing := C.int(0)
			if !ok {
				missing = 1
			}
			C.box_rdev_set_op_missing(n.reg, C.int(i), C.int(op), missing)
		}
	}
}

// Protocol is the version spoken with the node now.
func (n *Node) Protocol() rpc.Version {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.proto
}

// stale reports whether t lies in a buffer of an earlier connection.
func (n *Node) stale(t *C.struct_ggml_tensor) bool {
	if t == nil || t.buffer == nil {
		return false
	}
	if _, ours := ourBufts.Load(t.buffer.buft); !ours {
		return false
	}
	return uint64(C.box_rbuf_gen(t)) != n.gen.Load()
}

// Device is one device of a node, registered with ggml as Name.
type Device struct {
	Node   *Node
	Index  uint32
	Name   string // ggml device name: RPC[host:port]#N
	handle cgo.Handle
	align  uint64 // the checked GET_ALIGNMENT answer
	// The last memory answer, given when the node is busy.
	lastFree, lastTotal atomic.Uint64

	// The last graph sent, and the node's graph generation then: an
	// identical graph is recomputed (GRAPH_RECOMPUTE, 4 bytes) instead of
	// being sent, decoded and validated again. Guarded by Node.mu.
	lastGraph []byte
	lastGen   uint64
}

// NodeError says which node failed and how.
type NodeError struct {
	Addr string
	Err  error
	At   time.Time // when the node was failed
}

func (e *NodeError) Error() string { return fmt.Sprintf("worker %s: %v", e.Addr, e.Err) }
func (e *NodeError) Unwrap() error { return e.Err }

// ourBufts holds the buffer types of every remote device, so serializing a
// graph can tell remote tensors from others without a cgo call per tensor.
var ourBufts sync.Map // C.ggml_backend_buffer_type_t -> bool

// registry remembers the ggml devices made per endpoint: ggml cannot
// unregister them, so a reconnect reuses them.
var registry struct {
	sync.Mutex
	nodes map[string]*Node
}

// Connect dials addr, learns its devices and registers them with ggml (once
// per process and address; a later Connect to the same address reconnects
// the same Node).
func Connect(ctx context.Context, addr string, log *slog.Logger, opts ...rpc.DialOption) (*Node, error) {
	registry.Lock()
	defer registry.Unlock()
	if registry.nodes == nil {
		registry.nodes = map[string]*Node{}
	}
	if n := registry.nodes[addr]; n != nil {
		if err := n.Reconnect(ctx); err != nil {
			return nil, err
		}
		return n, nil
	}
	n := &Node{Addr: addr, log: log, dopts: opts}
	c, err := rpc.Dial(ctx, addr, opts...)
	if err != nil {
		return nil, &NodeError{Addr: addr, Err: err}
	}
	count, err := c.DeviceCount(ctx)
	if err == nil && (count == 0 || count > 64) {
		err = fmt.Errorf("worker reports %d devices", count)
	}
	if err != nil {
		c.Close()
		return nil, &NodeError{Addr: addr, Err: err}
	}
	handles := make([]C.uintptr_t, count)
	var names, descs []*C.char
	aligns := make([]C.size_t, count)
	maxes := make([]C.size_t, count)
	for i := uint32(0); i < count; i++ {
		al, err1 := c.GetAlignment(ctx, i)
		mx, err2 := c.GetMaxSize(ctx, i)
		err := errors.Join(err1, err2)
		if err == nil {
			err = checkDevice(i, al, mx)
		}
		if err != nil {
			c.Close()
			return nil, &NodeError{Addr: addr, Err: err}
		}
		d := &Device{Node: n, Index: i, Name: fmt.Sprintf("RPC[%s]#%d", addr, i), align: al}
		d.handle = cgo.NewHandle(d) // lives as long as the ggml device: the process
		n.devices = append(n.devices, d)
		handles[i] = C.uintptr_t(d.handle)
		names = append(names, C.CString(d.Name))
		descs = append(descs, C.CString("box worker "+addr))
		aligns[i], maxes[i] = C.size_t(al), C.size_t(min(mx, 1<<62))
	}
	regName := C.CString("BOXRPC[" + addr + "]")
	reg := C.box_remote_register(regName, C.int(count), &handles[0], &names[0], &descs[0], &aligns[0], &maxes[0])
	for i := 0; i < int(count); i++ {
		ourBufts.Store(C.box_rdev_buft(reg, C.int(i)), true)
	}
	C.free(unsafe.Pointer(regName))
	n.reg = reg
	n.gen.Store(1)
	n.setConn(c)
	for i := range names {
		C.free(unsafe.Pointer(names[i]))
		C.free(unsafe.Pointer(descs[i]))
	}
	n.cur.Store(c)
	n.lastUse = time.Now()
	n.openProbe(ctx)
	registry.nodes[addr] = n
	return n, nil
}

// Limits on what a worker may answer. ggml asserts on a bad alignment or
// base address and trusts sizes, so every answer is checked before ggml
// sees it; a bad one fails the node (an *AnswerError), never the process.
const (
	maxAlignment = 1 << 20 // real backends use 16 to 4096
	minMaxSize   = 1 << 20 // a smaller GET_MAX_SIZE cannot hold a layer
)

// AnswerError is a worker answer that cannot be true.
type AnswerError struct {
	Cmd rpc.Cmd
	Msg string
}

func (e *AnswerError) Error() string { return fmt.Sprintf("bad %s answer: %s", e.Cmd, e.Msg) }

func badAnswer(cmd rpc.Cmd, format string, args ...any) error {
	return &AnswerError{Cmd: cmd, Msg: fmt.Sprintf(format, args...)}
}

// checkDevice validates the alignment and maximum buffer size of a device.
func checkDevice(dev uint32, align, maxSize uint64) error {
	if align == 0 || align&(align-1) != 0 || align > maxAlignment {
		return badAnswer(rpc.CmdGetAlignment, "device %d: alignment %d is not a power of two up to %d", dev, align, maxAlignment)
	}
	if maxSize < minMaxSize {
		return badAnswer(rpc.CmdGetMaxSize, "device %d: maximum buffer size %d is below %d", dev, maxSize, minMaxSize)
	}
	return nil
}

// checkAlloc validates an ALLOC_BUFFER answer (handle, size) and the
// BUFFER_GET_BASE answer for it.
func checkAlloc(dev uint32, asked, got, base, align uint64) error {
	if got < asked {
		return badAnswer(rpc.CmdAllocBuffer, "device %d: asked for %d bytes, the worker says it allocated %d", dev, asked, got)
	}
	if base == 0 || base%align != 0 {
		return badAnswer(rpc.CmdBufferGetBase, "device %d: base address %#x is null or not a multiple of the alignment %d", dev, base, align)
	}
	if base+got < base {
		return badAnswer(rpc.CmdBufferGetBase, "device %d: buffer at %#x of %d bytes wraps the address space", dev, base, got)
	}
	return nil
}

// checkMemory validates a GET_DEVICE_MEMORY answer.
func checkMemory(dev uint32, free, total uint64) error {
	if free > total {
		return badAnswer(rpc.CmdGetDeviceMemory, "device %d: %d bytes free of %d total", dev, free, total)
	}
	return nil
}

// checkAllocSize validates a GET_ALLOC_SIZE answer for a tensor of nbytes
// bytes (0 means "its plain size"). Padding a row is all a backend does.
func checkAllocSize(dev uint32, got, nbytes uint64) error {
	if got != 0 && (got < nbytes || got > 2*nbytes+(1<<20)) {
		return badAnswer(rpc.CmdGetAllocSize, "device %d: %d bytes for a tensor of %d bytes", dev, got, nbytes)
	}
	return nil
}

// Devices returns the node's devices.
func (n *Node) Devices() []*Device { return n.devices }

// Err is the node's failure, if any.
func (n *Node) Err() error {
	if p := n.failed.Load(); p != nil {
		return *p
	}
	return nil
}

func (n *Node) fail(err error) {
	if err == nil {
		return
	}
	ne := error(&NodeError{Addr: n.Addr, Err: err, At: time.Now().UTC()})
	if n.failed.CompareAndSwap(nil, &ne) {
		n.log.Error("worker failed", "worker", n.Addr, "err", err)
		// Without the lock: a call stalled on this socket returns now.
		if c := n.cur.Load(); c != nil {
			c.Close()
		}
		n.closeProbe()
	}
}

// Close ends the connection explicitly, so the worker frees everything this
// head holds there at once. Buffers still known to ggml become dead. It
// does not wait for a call in flight: closing the socket ends that call.
func (n *Node) Close() {
	closed := error(&NodeError{Addr: n.Addr, Err: errors.New("connection closed by the head")})
	n.failed.CompareAndSwap(nil, &closed)
	if c := n.cur.Load(); c != nil {
		c.Close()
	}
	n.closeProbe()
	n.bytes.Store(0)
	n.buffers.Store(0)
}

// Reconnect dials the node again (after a failure or Close); the device
// count must not have changed.
func (n *Node) Reconnect(ctx context.Context) error {
	// The old connection is closed before the new one is dialed: a worker
	// that serves one connection at a time (llama.cpp's rpc-server) would
	// never answer the new one while it is open.
	n.closeProbe()
	if old := n.cur.Load(); old != nil {
		old.Close()
	}
	c, err := rpc.Dial(ctx, n.Addr, n.dopts...)
	if err != nil {
		return &NodeError{Addr: n.Addr, Err: err}
	}
	count, err := c.DeviceCount(ctx)
	if err == nil && int(count) != len(n.devices) {
		err = fmt.Errorf("worker now has %d devices, had %d; restart the head", count, len(n.devices))
	}
	// ggml keeps the alignment it was given at registration: a worker that
	// now says another must not be used with it.
	for i := 0; err == nil && i < len(n.devices); i++ {
		var al, mx uint64
		al, err = c.GetAlignment(ctx, uint32(i))
		if err == nil {
			mx, err = c.GetMaxSize(ctx, uint32(i))
		}
		if err == nil {
			err = checkDevice(uint32(i), al, mx)
		}
		if err == nil && al != n.devices[i].align {
			err = fmt.Errorf("device %d: alignment now %d, was %d; restart the head", i, al, n.devices[i].align)
		}
	}
	if err != nil {
		c.Close()
		return &NodeError{Addr: n.Addr, Err: err}
	}
	n.mu.Lock()
	if old := n.cur.Swap(c); old != nil {
		old.Close()
	}
	n.lastUse = time.Now()
	n.compute.reset()
	n.uploaded.Store(0)
	n.probeMissed.Store(false)
	n.probeHit.Store(false)
	n.missStreak.Store(0)
	n.probeDeferred.Store(0)
	n.bytes.Store(0)
	n.buffers.Store(0)
	n.graphGen.Add(1)
	n.gen.Add(1) // every handle of the old connection is dead from now on
	n.setConn(c)
	n.failed.Store(nil)
	n.mu.Unlock()
	n.openProbe(ctx)
	return nil
}

// Uploaded is the tensor data sent (or applied from the worker's cache)
// since the connection opened.
func (n *Node) Uploaded() int64 { return n.uploaded.Load() }

// Placed reports the bytes and buffers this head holds on the node.
func (n *Node) Placed() (bytes int64, buffers int64) { return n.bytes.Load(), n.buffers.Load() }

// Memory returns free and total bytes of device dev.
func (n *Node) Memory(ctx context.Context, dev uint32) (free, total uint64, err error) {
	err = n.call(rpc.CmdGetDeviceMemory, 0, func(cctx context.Context, c *rpc.Client) error {
		cctx, cancel := context.WithCancel(cctx)
		defer context.AfterFunc(ctx, cancel)()
		var err error
		if free, total, err = c.GetDeviceMemory(cctx, dev); err != nil {
			return err
		}
		if err := checkMemory(dev, free, total); err != nil {
			return err
		}
		if int(dev) < len(n.devices) {
			n.devices[dev].lastFree.Store(free)
			n.devices[dev].lastTotal.Store(total)
		}
		return nil
	})
	if err != nil {
		return 0, 0, n.Err()
	}
	return free, total, nil
}

func dev(h C.uintptr_t) *Device { return cgo.Handle(h).Value().(*Device) }

//export boxRemoteMemory
func boxRemoteMemory(h C.uintptr_t, free, total *C.size_t) {
	// ggml asks for device memory from anywhere, a /metrics scrape
	// included: when a command holds the node, the last answer is given
	// instead of waiting behind it.
	d := dev(h)
	if d.Node.Err() != nil {
		*free, *total = 0, 0
		return
	}
	if !d.Node.mu.TryLock() {
		*free, *total = C.size_t(d.lastFree.Load()), C.size_t(d.lastTotal.Load())
		return
	}
	d.Node.mu.Unlock()
	f, t, err := d.Node.Memory(context.Background(), d.Index)
	if err != nil {
		f, t = 0, 0
	}
	*free, *total = C.size_t(f), C.size_t(t)
}

//export boxRemoteAlloc
func boxRemoteAlloc(h C.uintptr_t, size C.size_t, remote, base *C.uint64_t, got *C.size_t, gen *C.uint64_t) C.int {
	d := dev(h)
	var handle, sz, b, g uint64
	err := d.Node.call(rpc.CmdAllocBuffer, 0, func(ctx context.Context, c *rpc.Client) error {
		var err error
		g = d.Node.gen.Load()
		handle, sz, err = c.AllocBuffer(ctx, d.Index, uint64(size))
		if err != nil || handle == 0 {
			return err
		}
		if b, err = c.BufferGetBase(ctx, handle); err != nil {
			return err
		}
		// The node fails on a bad answer: its connection closes, so the
		// worker frees the buffer too.
		return checkAlloc(d.Index, uint64(size), sz, b, d.align)
	})
	if err != nil || handle == 0 {
		if err == nil {
			d.Node.log.Warn("worker refused an allocation", "worker", d.Node.Addr, "device", d.Index, "bytes", uint64(size))
		}
		return 1
	}
	d.Node.bytes.Add(int64(sz))
	d.Node.buffers.Add(1)
	*remote, *base, *got, *gen = C.uint64_t(handle), C.uint64_t(b), C.size_t(sz), C.uint64_t(g)
	return 0
}

//export boxRemoteFree
func boxRemoteFree(h C.uintptr_t, remote, gen C.uint64_t, size C.size_t) {
	d := dev(h)
	if uint64(gen) != d.Node.gen.Load() {
		return // the worker freed it when that connection ended
	}
	d.Node.graphGen.Add(1)
	if d.Node.call(rpc.CmdFreeBuffer, 0, func(ctx context.Context, c *rpc.Client) error {
		return c.FreeBuffer(ctx, uint64(remote))
	}) == nil {
		d.Node.bytes.Add(-int64(size))
		d.Node.buffers.Add(-1)
	}
}

//export boxRemoteSet
func boxRemoteSet(h C.uintptr_t, t *C.struct_ggml_tensor, data unsafe.Pointer, off, n C.size_t) {
	d := dev(h)
	if d.Node.stale(t) {
		return
	}
	wt := wireTensor(t, false, nil)
	buf := unsafe.Slice((*byte)(data), int(n))
	weights := t.buffer != nil && t.buffer.usage == C.GGML_BACKEND_BUFFER_USAGE_WEIGHTS
	// Large uploads are offered by hash first: a worker with a warm
	// --cache then applies them from disk. From 7.0 only weights are
	// (activations are not worth a cache entry), and a miss asks the
	// worker to keep them. The protocol is the connection's, fixed for the
	// life of any queued job (a reconnect changes gen, and drops them).
	cached := func(p rpc.Version) bool {
		return len(buf) > rpc.BoxCacheThreshold && (weights || !p.CacheFlag())
	}
	// Weights that lie in the model file go to the node's upload queue.
	if q := d.Node.upload.Load(); q != nil && weights && len(buf) > 0 {
		if fo, ok := q.u.fileOffset(data, len(buf)); ok {
			j := uploadJob{wt: wt, off: uint64(off), fileOff: fo, n: len(buf), gen: d.Node.gen.Load(), cached: cached(d.Node.cur.Load().Protocol())}
			if q.push(j) {
				return
			}
		}
	}
	defer d.Node.uploaded.Add(int64(len(buf)))
	d.Node.call(rpc.CmdSetTensor, len(buf), func(ctx context.Context, c *rpc.Client) error {
		if cached(c.Protocol()) {
			return d.Node.setCached(ctx, c, wt, uint64(off), buf, nil)
		}
		return c.SetTensor(ctx, wt, uint64(off), buf)
	})
}

// setCached uploads a large tensor the worker may hold in its cache.
//
// The first one of a connection is offered by its FNV-1a hash
// (SET_TENSOR_HASH); so is every later one while the worker keeps having
// them. The memo gives the hash when it knows it; otherwise it is worked
// out, but FNV-1a is byte-serial (about 1 GB/s, slower than loopback), so
// the first few tensors over probeMaxHash are sent without a probe (asking
// the worker to keep them) in the hope of a smaller one to probe with.
//
// Once the worker has missed one, the rest of this connection's uploads
// are offered only where the memo already knows the hash, with no FNV-1a:
// by location for an upload from the model file (at), else by content (an
// xxhash pass at memory speed, skipped when it knows nothing of that
// length). A worker that has missed maxMissStreak in a row and never had
// one on this connection has no cache for this model (or none at all) and
// is not asked again. What is sent unhashed is hashed from the model file
// after the load (HashFileInBackground), so the next load of the same
// weights is offered by hash again.
func (n *Node) setCached(ctx context.Context, c *rpc.Client, wt rpc.Tensor, off uint64, buf []byte, at *locKey) error {
	send := func() error { return c.SetTensorCache(ctx, wt, off, buf, true) }
	offer := func(h uint64) (bool, error) {
		ok, err := c.SetTensorHash(ctx, wt, off, h)
		if err != nil {
			return false, err
		}
		if ok {
			n.probeHit.Store(true)
			n.missStreak.Store(0)
		} else {
			n.probeMissed.Store(true)
			n.missStreak.Add(1)
		}
		return ok, nil
	}
	if !n.probeMissed.Load() {
		h, ok := memo.knownAt(at, buf, true)
		if !ok {
			if len(buf) > probeMaxHash && n.probeDeferred.Add(1) <= maxProbeDeferred {
				unhashed.Store(true)
				return send()
			}
			h = memo.hash(buf)
			memo.storeAt(at, h)
		}
		if hit, err := offer(h); err != nil || hit {
			return err
		}
		return send()
	}
	if n.probeHit.Load() || n.missStreak.Load() < maxMissStreak {
		if h, ok := memo.knownAt(at, buf, at == nil); ok {
			if hit, err := offer(h); err != nil || hit {
				return err
			}
			return send()
		}
	}
	unhashed.Store(true)
	return send()
}

const (
	// maxMissStreak is how many misses in a row, with no hit before them,
	// end the offers on a connection.
	maxMissStreak = 3
	// A probe is not worth hashing more than probeMaxHash bytes (16 ms of
	// FNV-1a) for, while fewer than maxProbeDeferred tensors have been sent
	// without one.
	probeMaxHash     = 16 << 20
	maxProbeDeferred = 4
)

//export boxRemoteGet
func boxRemoteGet(h C.uintptr_t, t *C.struct_ggml_tensor, data unsafe.Pointer, off, n C.size_t) {
	d := dev(h)
	dst := unsafe.Slice((*byte)(data), int(n))
	if d.Node.stale(t) {
		clear(dst)
		return
	}
	wt := wireTensor(t, false, nil)
	if err := d.Node.call(rpc.CmdGetTensor, len(dst), func(ctx context.Context, c *rpc.Client) error {
		return c.GetTensorInto(ctx, dst, wt, uint64(off))
	}); err != nil {
		clear(dst) // garbage-free; the failure is reported through Err
	}
}

//export boxRemoteMemset
func boxRemoteMemset(h C.uintptr_t, t *C.struct_ggml_tensor, v C.uint8_t, off, n C.size_t) {
	d := dev(h)
	if d.Node.stale(t) {
		return
	}
	wt := wireTensor(t, false, nil)
	d.Node.call(rpc.CmdSetTensor, int(n), func(ctx context.Context, c *rpc.Client) error {
		if c.Protocol().HasMemset() {
			return c.MemsetTensor(ctx, wt, uint64(off), uint64(n), uint8(v))
		}
		// Before 5.0 there is no memset: send the bytes.
		buf := make([]byte, int(n))
		for i := range buf {
			buf[i] = byte(v)
		}
		return c.SetTensor(ctx, wt, uint64(off), buf)
	})
}

//export boxRemoteCopy
func boxRemoteCopy(h C.uintptr_t, src, dst *C.struct_ggml_tensor) C.int {
	// Only a copy between buffers of the same connection can stay remote.
	if C.box_is_rbuft(C.box_rbuf_type(src)) == 0 || C.box_rbuf_dev(src) == 0 || dev(C.box_rbuf_dev(src)).Node != dev(h).Node {
		return 0
	}
	d := dev(h)
	if d.Node.stale(src) || d.Node.stale(dst) {
		return 0
	}
	ws, wd := wireTensor(src, false, nil), wireTensor(dst, false, nil)
	ok := false
	d.Node.call(rpc.CmdCopyTensor, 0, func(ctx context.Context, c *rpc.Client) error {
		var err error
		ok, err = c.CopyTensor(ctx, ws, wd)
		return err
	})
	if ok {
		return 1
	}
	return 0
}

//export boxRemoteClear
func boxRemoteClear(h C.uintptr_t, remote, gen C.uint64_t, v C.uint8_t) {
	d := dev(h)
	if uint64(gen) != d.Node.gen.Load() {
		return
	}
	d.Node.call(rpc.CmdBufferClear, 0, func(ctx context.Context, c *rpc.Client) error {
		return c.BufferClear(ctx, uint64(remote), uint8(v))
	})
}

//export boxRemoteAllocSize
func boxRemoteAllocSize(h C.uintptr_t, t *C.struct_ggml_tensor) C.size_t {
	d := dev(h)
	d.Node.mu.Lock()
	m := d.Node.ops
	d.Node.mu.Unlock()
	wt := wireTensor(t, false, m)
	var srcs []rpc.Tensor
	for j := 0; j < rpc.MaxSrc; j++ {
		if s := t.src[j]; s != nil {
			srcs = append(srcs, wireTensor(s, false, m))
		}
	}
	var n uint64
	nbytes := uint64(C.ggml_nbytes(t))
	if d.Node.call(rpc.CmdGetAllocSize, 0, func(ctx context.Context, c *rpc.Client) error {
		var err error
		if n, err = c.GetAllocSize(ctx, d.Index, wt, srcs); err != nil {
			return err
		}
		return checkAllocSize(d.Index, n, nbytes)
	}) != nil {
		return 0 // the plain size; the failure is reported through Err
	}
	return C.size_t(n)
}

//export boxRemoteCompute
func boxRemoteCompute(h C.uintptr_t, g *C.struct_ggml_cgraph) C.int {
	d := dev(h)
	for i := 0; i < int(C.ggml_graph_n_nodes(g)); i++ {
		t := C.ggml_graph_node(g, C.int(i))
		stale := d.Node.stale(t)
		for j := 0; j < rpc.MaxSrc && !stale; j++ {
			stale = d.Node.stale(t.src[j])
		}
		if stale {
			// A graph over buffers of an earlier connection: never sent.
			return 1
		}
	}
	d.Node.mu.Lock()
	m, useCount := d.Node.ops, d.Node.proto.HasUseCount()
	d.Node.mu.Unlock()
	t0 := time.Now()
	nodes, tensors := serializeGraph(g, m, useCount)
	payload := rpc.GraphComputeReq{Device: d.Index, Nodes: nodes, Tensors: tensors}.Encode()
	d.Node.stats.serializeNs.Add(int64(time.Since(t0)))
	// lastGraph and lastGen are read and written under the node's lock:
	// with --parallel, several contexts compute on the same device.
	err := d.Node.call(rpc.CmdGraphCompute, len(payload), func(ctx context.Context, c *rpc.Client) error {
		gen := d.Node.graphGen.Load()
		if gen == d.lastGen && bytes.Equal(payload, d.lastGraph) {
			return c.GraphRecompute(ctx, d.Index)
		}
		d.lastGraph, d.lastGen = nil, 0
		if err := c.GraphComputeEncoded(ctx, payload); err != nil {
			return err
		}
		d.lastGraph, d.lastGen = payload, gen
		return nil
	})
	if err != nil {
		return 1
	}
	return 0
}
