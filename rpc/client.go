package rpc

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// ErrClosed is returned (possibly wrapped) by calls on a Client that was
// closed, either by Close or after a fatal error.
var ErrClosed = errors.New("rpc: client closed")

// VersionError is returned by Dial when the worker answers HELLO with a
// protocol version box does not speak (see Version.Supported).
type VersionError struct {
	Addr                string
	Major, Minor, Patch uint8
}

func (e *VersionError) Error() string {
	return fmt.Sprintf("rpc: the worker at %s speaks ggml RPC protocol %d.%d.%d, which box does not speak "+
		"(box speaks 3.6.0, 3.6.1, 4.0.0-4.0.4, 5.0.0, 5.0.1, 5.1, 6.0 and 7.0); "+
		"run a box worker, or a llama.cpp rpc-server of one of those versions, at that address",
		e.Addr, e.Major, e.Minor, e.Patch)
}

// Compatible reports whether a worker version is one this package speaks
// (Version.Supported): 3.6.0 and 3.6.1, 4.0.0 to 4.0.4, 5.0.0, 5.0.1, 5.1,
// 6.0 and 7.0. (A 3.5.0 server expects a shorter GET_ALLOC_SIZE; the op
// enum moves with the patch in 3.6 and 4.0. See docs/protocol.md.)
func Compatible(major, minor, patch uint8) bool {
	return Version{major, minor, patch}.Supported()
}

type dialConfig struct {
	keepAlive        net.KeepAliveConfig
	bufSize          int
	handshakeTimeout time.Duration
	hello            int // 0: probe (4.0-style first), 3: 3.6-style only, 4: 4.0-style only
}

// WithHello fixes the HELLO Dial sends: an empty one (a 3.6 peer) when caps
// is false, one with transport caps (4.0 and later) when true. By default
// Dial sends the 4.0 HELLO and, when the peer closes the connection without
// an answer (a 3.6 server does), dials again with the empty one.
func WithHello(caps bool) DialOption {
	return func(c *dialConfig) {
		c.hello = 3
		if caps {
			c.hello = 4
		}
	}
}

// DialOption configures Dial.
type DialOption func(*dialConfig)

// WithKeepAlive sets the TCP keepalive configuration (default: enabled, idle
// 10s, interval 5s, count 3, i.e. a dead peer is noticed after about 25s).
// Set Enable to false to disable keepalive.
func WithKeepAlive(cfg net.KeepAliveConfig) DialOption {
	return func(c *dialConfig) { c.keepAlive = cfg }
}

// WithBufferSize sets the size of the connection's read and write buffers
// (default 256 KiB). Large SET_TENSOR and GET_TENSOR data bypass the buffers.
func WithBufferSize(n int) DialOption {
	return func(c *dialConfig) {
		if n > 0 {
			c.bufSize = n
		}
	}
}

// WithHandshakeTimeout bounds the connect + HELLO exchange when the context
// given to Dial has no earlier deadline (default 30s; 0 means no bound). A
// reference rpc-server serving another client accepts the TCP connection but
// never answers HELLO, so an unbounded Dial could wait forever.
func WithHandshakeTimeout(d time.Duration) DialOption {
	return func(c *dialConfig) { c.handshakeTimeout = d }
}

// DefaultKeepAlive is the keepalive configuration Dial uses by default.
var DefaultKeepAlive = net.KeepAliveConfig{Enable: true, Idle: 10 * time.Second, Interval: 5 * time.Second, Count: 3}

const defaultBufSize = 256 << 10

// directWrite is the data size from which SET_TENSOR data is written with
// writev straight from the caller's slice instead of through the buffer.
const directWrite = 32 << 10

// Client is a connection to one ggml RPC 3.6.0 worker.
//
// Every method takes a context. Its deadline becomes the connection deadline
// for the call; if the context is cancelled or its deadline passes while a
// request or response is in flight, the call fails with an error wrapping
// ctx.Err() and the Client is closed, because the byte stream is then out of
// sync (a context that is already done when a method is called fails the call
// without touching the connection).
//
// Any I/O error or unexpected response (a *ProtocolError, e.g. a response
// size that differs from what the command expects) likewise closes the
// Client; later calls return an error wrapping ErrClosed. Note that a worker
// that rejects a fire-and-forget command (SET_TENSOR, GRAPH_COMPUTE,
// GRAPH_RECOMPUTE) closes the connection, which the Client only notices at
// the next call that expects a response.
//
// A Client is safe for concurrent use; calls are serialized (one request and
// its response at a time).
type Client struct {
	addr    string
	conn    net.Conn
	version HelloResp
	proto   Version
	ops     *OpMap

	closed    atomic.Bool
	closeOnce sync.Once

	mu      sync.Mutex // serializes calls; guards everything below
	br      *bufio.Reader
	bw      *bufio.Writer
	broken  error // first fatal error
	scratch []byte
}

// Dial connects to the worker at addr ("host:port") over TCP with
// TCP_NODELAY and keepalive, sends HELLO and checks the version. A worker
// that is not exactly 3.6.0 yields a *VersionError; a worker that closes the
// connection or answers HELLO with the wrong size yields a *ProtocolError of
// kind "hello".
func Dial(ctx context.Context, addr string, opts ...DialOption) (*Client, error) {
	cfg := dialConfig{keepAlive: DefaultKeepAlive, bufSize: defaultBufSize, handshakeTimeout: 30 * time.Second}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.handshakeTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.handshakeTimeout)
		defer cancel()
	}
	caps := cfg.hello != 3
	c, err := dialOnce(ctx, addr, cfg, caps)
	if err != nil && cfg.hello == 0 && closedDuringHello(err) && ctx.Err() == nil {
		// A 3.6 peer closes on a HELLO with a payload: ask again its way.
		c, err = dialOnce(ctx, addr, cfg, false)
	}
	return c, err
}

// closedDuringHello reports whether the peer closed the connection instead
// of answering HELLO.
func closedDuringHello(err error) bool {
	pe, ok := IsProtocolError(err)
	return ok && pe.Kind == KindHello && pe.Err != nil && !errors.Is(pe.Err, os.ErrDeadlineExceeded)
}

func dialOnce(ctx context.Context, addr string, cfg dialConfig, caps bool) (*Client, error) {
	d := net.Dialer{KeepAliveConfig: cfg.keepAlive}
	if !cfg.keepAlive.Enable {
		d.KeepAlive = -1
	}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("rpc: connect to worker %s: %w", addr, err)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		if err := tc.SetNoDelay(true); err != nil {
			abandon(conn)
			return nil, fmt.Errorf("rpc: worker %s: set TCP_NODELAY: %w", addr, err)
		}
	}
	// Until HELLO is answered, a close is a reset (SO_LINGER 0): the HELLO
	// may still sit unread in the worker's queue (a reference rpc-server
	// serving another client accepts but does not read), and a server that
	// gets to it later must read an error, not write an answer into a
	// closed socket (which kills it with SIGPIPE).
	tc, _ := conn.(*net.TCPConn)
	if tc != nil {
		tc.SetLinger(0)
	}
	c := newClient(conn, addr, cfg.bufSize)
	if err := c.hello(ctx, caps); err != nil {
		c.Close()
		return nil, err
	}
	if tc != nil {
		tc.SetLinger(-1)
	}
	return c, nil
}

// abandon closes conn with a reset (SO_LINGER 0) rather than a FIN.
func abandon(conn net.Conn) {
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	conn.Close()
}

func newClient(conn net.Conn, addr string, bufSize int) *Client {
	return &Client{
		addr:    addr,
		conn:    conn,
		br:      bufio.NewReaderSize(conn, bufSize),
		bw:      bufio.NewWriterSize(conn, bufSize),
		scratch: make([]byte, 0, RequestHeaderSize+GetAllocSizeReqSize),
	}
}

func (c *Client) hello(ctx context.Context, caps bool) error {
	var n3 bool // the answer was the 3 bytes of a 3.x HELLO
	err := c.call(ctx, CmdHello, func() error {
		var req []byte
		if caps {
			req = make([]byte, ConnCapsSize) // TCP only
		}
		if err := c.send(CmdHello, req); err != nil {
			return err
		}
		n, err := ReadResponseHeader(c.br)
		if err != nil {
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				return &ProtocolError{Cmd: CmdHello, Kind: KindHello,
					Msg: "the worker closed the connection during HELLO (does it speak another protocol version, e.g. 4.x?)", Err: err}
			}
			return err
		}
		want := uint64(3)
		if caps {
			want = 4 + ConnCapsSize
		}
		// A 3.x server that ignores the caps answers with its 3 bytes:
		// that is its version, and the check below names it.
		if n != want && n != 3 {
			return &ProtocolError{Cmd: CmdHello, Kind: KindHello,
				Msg: fmt.Sprintf("HELLO response is %d bytes, want %d (not a ggml RPC worker?)", n, want)}
		}
		v := make([]byte, n)
		if _, err := io.ReadFull(c.br, v); err != nil {
			return err
		}
		n3 = n == 3
		c.version = HelloResp{v[0], v[1], v[2]}
		// The caps of the answer name a faster transport (RDMA); box speaks
		// TCP only and sent none, so a server keeps to TCP too.
		return nil
	})
	if err != nil {
		return err
	}
	v := Version{c.version.Major, c.version.Minor, c.version.Patch}
	// A 3-byte answer to a caps HELLO is only a 3.x server's; one that
	// claims a newer version in it is not a server box can trust.
	if v.Caps() != caps || !v.Supported() || caps && n3 && v.Caps() {
		return &VersionError{Addr: c.addr, Major: c.version.Major, Minor: c.version.Minor, Patch: c.version.Patch}
	}
	c.proto = v
	tab, _ := OpTableFor(v)
	c.ops = NewOpMap(tab, EmbeddedOps)
	return nil
}

// Protocol is the version spoken on this connection (the worker's HELLO
// answer).
func (c *Client) Protocol() Version { return c.proto }

// Ops translates op ids between the worker's op table and box's.
func (c *Client) Ops() *OpMap { return c.ops }

// Addr returns the address the client was dialed with.
func (c *Client) Addr() string { return c.addr }

// Version returns the protocol version the worker reported in HELLO.
func (c *Client) Version() (major, minor, patch uint8) {
	return c.version.Major, c.version.Minor, c.version.Patch
}

// Close closes the connection. It interrupts a call in flight. It is safe to
// call more than once.
func (c *Client) Close() error {
	var err error
	c.closeOnce.Do(func() {
		c.closed.Store(true)
		err = c.conn.Close()
	})
	return err
}

// aLongTimeAgo is a deadline in the past, used to abort blocked I/O.
var aLongTimeAgo = time.Unix(1, 0)

// call runs f with exclusive use of the connection, with ctx mapped onto the
// connection deadline. Any error from f closes the client.
func (c *Client) call(ctx context.Context, cmd Cmd, f func() error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("rpc: %s %s: %w", c.addr, cmd, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed.Load() {
		return fmt.Errorf("rpc: %s %s: %w", c.addr, cmd, ErrClosed)
	}
	if c.broken != nil {
		return fmt.Errorf("rpc: %s %s: %w (after an earlier error: %v)", c.addr, cmd, ErrClosed, c.broken)
	}
	dl, _ := ctx.Deadline()
	if err := c.conn.SetDeadline(dl); err != nil {
		return c.fail(cmd, err)
	}
	var stop func() bool
	var fired chan struct{}
	if ctx.Done() != nil {
		fired = make(chan struct{})
		stop = context.AfterFunc(ctx, func() {
			c.conn.SetDeadline(aLongTimeAgo)
			close(fired)
		})
	}
	err := f()
	if stop != nil && !stop() {
		<-fired // the deadline is reset at the start of the next call
	}
	if err == nil {
		return nil
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		if cerr := ctx.Err(); cerr != nil {
			err = fmt.Errorf("%w (%v)", cerr, err)
		} else {
			err = fmt.Errorf("%w (%v)", context.DeadlineExceeded, err)
		}
	}
	return c.fail(cmd, err)
}

// fail records a fatal error, closes the connection and returns the error
// annotated with the address and command. Called with c.mu held.
func (c *Client) fail(cmd Cmd, err error) error {
	if c.closed.Load() && c.broken == nil {
		// Close was called while the call was in flight.
		err = fmt.Errorf("%w (%v)", ErrClosed, err)
	}
	if c.broken == nil {
		c.broken = err
	}
	c.Close()
	if pe, ok := err.(*ProtocolError); ok && pe.Cmd == CmdNone {
		pe.Cmd = cmd
	}
	return fmt.Errorf("rpc: %s %s: %w", c.addr, cmd, err)
}

// send writes a request frame whose payload is in c.scratch[RequestHeaderSize:]
// (when p is nil) or p, and flushes.
func (c *Client) send(cmd Cmd, p []byte) error {
	var hdr [RequestHeaderSize]byte
	hdr[0] = byte(cmd)
	le.PutUint64(hdr[1:], uint64(len(p)))
	if _, err := c.bw.Write(hdr[:]); err != nil {
		return err
	}
	if _, err := c.bw.Write(p); err != nil {
		return err
	}
	return c.bw.Flush()
}

// recv reads a response and checks its size, reading the payload into dst
// (len(dst) is the expected size).
func (c *Client) recv(cmd Cmd, dst []byte) error {
	n, err := ReadResponseHeader(c.br)
	if err != nil {
		return err
	}
	if n != uint64(len(dst)) {
		return &ProtocolError{Cmd: cmd, Kind: KindSize, Msg: fmt.Sprintf("response is %d bytes, want %d", n, len(dst))}
	}
	_, err = io.ReadFull(c.br, dst)
	return err
}

// roundTrip sends msg's payload and reads a response of exactly len(resp)
// bytes into resp.
func (c *Client) roundTrip(ctx context.Context, cmd Cmd, msg Message, resp []byte) error {
	return c.call(ctx, cmd, func() error {
		c.scratch = msg.AppendTo(c.scratch[:0])
		if err := c.send(cmd, c.scratch); err != nil {
			return err
		}
		return c.recv(cmd, resp)
	})
}

// sendOnly sends msg's payload; the command has no response.
func (c *Client) sendOnly(ctx context.Context, cmd Cmd, msg Message) error {
	return c.call(ctx, cmd, func() error {
		c.scratch = msg.AppendTo(c.scratch[:0])
		return c.send(cmd, c.scratch)
	})
}

// DeviceCount returns the number of devices the worker exposes.
func (c *Client) DeviceCount(ctx context.Context) (uint32, error) {
	var r [4]byte
	if err := c.roundTrip(ctx, CmdDeviceCount, DeviceCountReq{}, r[:]); err != nil {
		return 0, err
	}
	return le.Uint32(r[:]), nil
}

// Ping checks that the worker is alive and the connection in sync, with one
// DEVICE_COUNT round trip. Use a context with a deadline for a heartbeat.
func (c *Client) Ping(ctx context.Context) error {
	_, err := c.DeviceCount(ctx)
	return err
}

// AllocBuffer allocates a buffer of size bytes on device dev. The worker
// reports the size it really allocated. Handle 0 (with size 0) means the
// allocation failed; that is not an error at the protocol level.
func (c *Client) AllocBuffer(ctx context.Context, dev uint32, size uint64) (handle, allocated uint64, err error) {
	var r [16]byte
	if err := c.roundTrip(ctx, CmdAllocBuffer, AllocBufferReq{Device: dev, Size: size}, r[:]); err != nil {
		return 0, 0, err
	}
	return le.Uint64(r[:]), le.Uint64(r[8:]), nil
}

func (c *Client) u64(ctx context.Context, cmd Cmd, msg Message) (uint64, error) {
	var r [8]byte
	if err := c.roundTrip(ctx, cmd, msg, r[:]); err != nil {
		return 0, err
	}
	return le.Uint64(r[:]), nil
}

// GetAlignment returns the tensor alignment of device dev's buffer type.
func (c *Client) GetAlignment(ctx context.Context, dev uint32) (uint64, error) {
	return c.u64(ctx, CmdGetAlignment, DeviceReq{dev})
}

// GetMaxSize returns the largest buffer device dev can allocate at once.
func (c *Client) GetMaxSize(ctx context.Context, dev uint32) (uint64, error) {
	return c.u64(ctx, CmdGetMaxSize, DeviceReq{dev})
}

// BufferGetBase returns the base address of a buffer; tensor Data values
// are base + offset.
func (c *Client) BufferGetBase(ctx context.Context, handle uint64) (uint64, error) {
	return c.u64(ctx, CmdBufferGetBase, BufferReq{handle})
}

// FreeBuffer frees a buffer.
func (c *Client) FreeBuffer(ctx context.Context, handle uint64) error {
	return c.maybeReply(ctx, CmdFreeBuffer, BufferReq{handle})
}

// maybeReply sends a command whose empty answer exists only before 6.0.
func (c *Client) maybeReply(ctx context.Context, cmd Cmd, msg Message) error {
	if c.proto.Replies(cmd) {
		return c.roundTrip(ctx, cmd, msg, nil)
	}
	return c.sendOnly(ctx, cmd, msg)
}

// MemsetTensor fills size bytes at offset off of t with value (5.0 and
// later; before, send the bytes with SetTensor).
func (c *Client) MemsetTensor(ctx context.Context, t Tensor, off, size uint64, value uint8) error {
	if !c.proto.HasMemset() {
		return fmt.Errorf("rpc: %s MEMSET_TENSOR: protocol %s has no such command", c.addr, c.proto)
	}
	return c.maybeReply(ctx, CmdMemsetTensor, MemsetTensorReq{Tensor: t, Offset: off, Size: size, Value: value})
}

// BufferClear fills the whole buffer with value.
func (c *Client) BufferClear(ctx context.Context, handle uint64, value uint8) error {
	return c.maybeReply(ctx, CmdBufferClear, BufferClearReq{Handle: handle, Value: value})
}

// SetTensor writes data at byte offset off of tensor t. There is no
// response: a worker that rejects the write closes the connection, and the
// next call that expects a response fails. Large data is written straight
// from the caller's slice (one writev with the header), without copying.
func (c *Client) SetTensor(ctx context.Context, t Tensor, off uint64, data []byte) error {
	return c.SetTensorCache(ctx, t, off, data, false)
}

// SetTensorCache is SetTensor with the 7.0 cache flag: cache asks the
// worker to keep the data for a later SET_TENSOR_HASH (before 7.0 the flag
// does not exist and is not sent).
func (c *Client) SetTensorCache(ctx context.Context, t Tensor, off uint64, data []byte, cache bool) error {
	return c.call(ctx, CmdSetTensor, func() error {
		b := AppendRequestHeader(c.scratch[:0], CmdSetTensor, uint64(c.proto.SetTensorHeaderSize()+len(data)))
		b = AppendSetTensorHeader(b, c.proto, &t, cache, off)
		c.scratch = b
		if len(data) < directWrite {
			if _, err := c.bw.Write(b); err != nil {
				return err
			}
			if _, err := c.bw.Write(data); err != nil {
				return err
			}
			return c.bw.Flush()
		}
		if err := c.bw.Flush(); err != nil {
			return err
		}
		bufs := net.Buffers{b, data}
		_, err := bufs.WriteTo(c.conn)
		return err
	})
}

// SetTensorHash asks the worker to write the cached data whose FNV-1a hash
// is hash at offset off of t. It reports whether the worker had the data; if
// not, send it with SetTensor.
func (c *Client) SetTensorHash(ctx context.Context, t Tensor, off, hash uint64) (bool, error) {
	var r [1]byte
	if err := c.roundTrip(ctx, CmdSetTensorHash, SetTensorHashReq{Tensor: t, Offset: off, Hash: hash}, r[:]); err != nil {
		return false, err
	}
	return r[0] != 0, nil
}

// SetTensorCached writes data like the reference client does: if
// len(data) > HashThreshold it first offers the FNV-1a hash with
// SET_TENSOR_HASH and sends the data only if the worker does not have it.
// It reports whether the data was actually sent.
func (c *Client) SetTensorCached(ctx context.Context, t Tensor, off uint64, data []byte) (sent bool, err error) {
	return c.SetTensorCachedAbove(ctx, t, off, data, HashThreshold)
}

// SetTensorCachedAbove is SetTensorCached with another size threshold (see
// BoxCacheThreshold).
func (c *Client) SetTensorCachedAbove(ctx context.Context, t Tensor, off uint64, data []byte, threshold int) (sent bool, err error) {
	if len(data) > threshold {
		ok, err := c.SetTensorHash(ctx, t, off, FNV1a64(data))
		if err != nil || ok {
			return false, err
		}
		return true, c.SetTensorCache(ctx, t, off, data, true)
	}
	return true, c.SetTensor(ctx, t, off, data)
}

// GetTensor reads size bytes at byte offset off of tensor t.
func (c *Client) GetTensor(ctx context.Context, t Tensor, off, size uint64) ([]byte, error) {
	if size > math.MaxInt {
		return nil, fmt.Errorf("rpc: %s GET_TENSOR: size %d too large", c.addr, size)
	}
	dst := make([]byte, size)
	if err := c.GetTensorInto(ctx, dst, t, off); err != nil {
		return nil, err
	}
	return dst, nil
}

// GetTensorInto reads len(dst) bytes at byte offset off of tensor t into
// dst.
func (c *Client) GetTensorInto(ctx context.Context, dst []byte, t Tensor, off uint64) error {
	return c.roundTrip(ctx, CmdGetTensor, GetTensorReq{Tensor: t, Offset: off, Size: uint64(len(dst))}, dst)
}

// CopyTensor copies src into dst on the worker. It reports false if the
// worker's backend cannot copy between these buffers; then copy through the
// client with GetTensor and SetTensor.
func (c *Client) CopyTensor(ctx context.Context, src, dst Tensor) (bool, error) {
	var r [1]byte
	if err := c.roundTrip(ctx, CmdCopyTensor, CopyTensorReq{Src: src, Dst: dst}, r[:]); err != nil {
		return false, err
	}
	return r[0] != 0, nil
}

// GraphCompute sends a graph for device dev: the node ids in execution order
// and every tensor reachable from them (see §4 of the spec). There is no
// response; the next call that expects one waits until the worker has
// finished computing. Callers should set FlagCompute on every node tensor
// (harmless to a December 2025 3.6.0 worker, required by later builds).
func (c *Client) GraphCompute(ctx context.Context, dev uint32, nodes []uint64, tensors []Tensor) error {
	if len(nodes) > math.MaxUint32 || len(tensors) > math.MaxUint32 {
		return fmt.Errorf("rpc: %s GRAPH_COMPUTE: too many nodes (%d) or tensors (%d)", c.addr, len(nodes), len(tensors))
	}
	return c.sendOnly(ctx, CmdGraphCompute, GraphComputeReq{Device: dev, Nodes: nodes, Tensors: tensors})
}

// rawPayload is an already encoded message.
type rawPayload []byte

func (r rawPayload) AppendTo(b []byte) []byte { return append(b, r...) }

// GraphComputeEncoded sends a GRAPH_COMPUTE whose payload was encoded with
// GraphComputeReq.Encode (callers that compare graphs encode them anyway).
func (c *Client) GraphComputeEncoded(ctx context.Context, payload []byte) error {
	return c.sendOnly(ctx, CmdGraphCompute, rawPayload(payload))
}

// GraphRecompute recomputes the graph most recently sent with GraphCompute
// for device dev on this connection. There is no response.
func (c *Client) GraphRecompute(ctx context.Context, dev uint32) error {
	return c.sendOnly(ctx, CmdGraphRecompute, DeviceReq{dev})
}

// GetDeviceMemory returns the live free and total memory of device dev.
func (c *Client) GetDeviceMemory(ctx context.Context, dev uint32) (free, total uint64, err error) {
	var r [16]byte
	if err := c.roundTrip(ctx, CmdGetDeviceMemory, DeviceReq{dev}, r[:]); err != nil {
		return 0, 0, err
	}
	return le.Uint64(r[:]), le.Uint64(r[8:]), nil
}

// InitTensor lets the worker's backend initialise a tensor (e.g. zero the
// row padding of quantized tensors on CUDA).
func (c *Client) InitTensor(ctx context.Context, t Tensor) error {
	return c.maybeReply(ctx, CmdInitTensor, InitTensorReq{t})
}

// GetAllocSize returns how many bytes device dev's buffer type needs to
// allocate for t, given its sources (at most MaxSrc; missing ones are sent
// as all-zero tensors).
func (c *Client) GetAllocSize(ctx context.Context, dev uint32, t Tensor, srcs []Tensor) (uint64, error) {
	if len(srcs) > MaxSrc {
		return 0, fmt.Errorf("rpc: %s GET_ALLOC_SIZE: %d sources, at most %d", c.addr, len(srcs), MaxSrc)
	}
	req := GetAllocSizeReq{Device: dev, Tensor: t}
	copy(req.Srcs[:], srcs)
	return c.u64(ctx, CmdGetAllocSize, req)
}
