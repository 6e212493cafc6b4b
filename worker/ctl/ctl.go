// Package ctl is the contract between box worker's supervisor and the
// compute process that serves one connection: the start message, the
// control messages on their socketpair, the shared activity page, and the
// typed states and close reasons both sides report. It is pure Go.
package ctl

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/boxproj/box/api"
)

// What the worker counts for memory that is not a buffer's bytes. A
// buffer costs its size on its device plus BufferOverhead of host memory
// (ggml's and box's records of it; a 1-byte buffer measured about 420
// bytes); a compute process costs ProcessOverhead of host memory (its
// private pages, measured about 3 MiB idle, plus thread stacks and ggml's
// work buffers); a GRAPH_COMPUTE costs GraphCost times its payload while
// it is read and decoded, and a stored graph StoredTensorCost per tensor
// until it is replaced or the connection ends.
//
// TransientAllowance of a process's ProcessOverhead is room for messages
// and graphs it uses without asking (a llama.cpp decode graph is 1-2 MB):
// only what goes beyond it is asked for, so the hot path of a head's
// decode never waits for the supervisor.
const (
	BufferOverhead     = 1 << 10
	ProcessOverhead    = 8 << 20
	TransientAllowance = 4 << 20
	GraphCost          = 3
	StoredTensorCost   = 512
)

// Device describes one exposed ggml device, as the describe run of a
// compute process reports it once at the worker's start.
type Device struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	Type        string `json:"type"` // cpu, gpu, igpu, accel
	Alignment   uint64 `json:"alignment"`
	MaxSize     uint64 `json:"max_size"`
	MemoryFree  uint64 `json:"memory_free"`
	MemoryTotal uint64 `json:"memory_total"`
}

// Init is the first control message: what the compute process serves.
type Init struct {
	Conn        uint64        `json:"conn"`
	Peer        string        `json:"peer"`
	Devices     []Device      `json:"devices"` // wire device index = position
	Threads     int           `json:"threads"`
	CacheDir    string        `json:"cache_dir,omitempty"`
	CacheTenant string        `json:"cache_tenant,omitempty"` // this client's folder in the cache
	IdleTimeout time.Duration `json:"idle_timeout"`
	// A message must arrive whole within MessageTimeout plus its size at
	// MinRate bytes a second, counted from its first byte.
	MessageTimeout time.Duration `json:"message_timeout"`
	MinRate        uint64        `json:"min_rate"`
	Keepalive      Keepalive     `json:"keepalive"`
	MaxGraphBytes  uint64        `json:"max_graph_bytes"`
	// Protocol is the version the supervisor answered HELLO with ("3.6.0",
	// "7.0.0", ...; empty means 3.6.0): the process serves exactly that,
	// its layouts and its op table.
	Protocol string `json:"protocol,omitempty"`
	// Prefix holds the bytes the supervisor read from the client but did
	// not serve: the start of the command that needed a compute process.
	Prefix []byte `json:"prefix"`
}

// Op names a control message from the compute process.
type Op string

const (
	OpReserve   Op = "reserve"   // ask for Size bytes on Dev (answered); with Buffer, for the buffer Handle will be
	OpUnreserve Op = "unreserve" // give back Size bytes on Dev never bound
	OpMemory    Op = "memory"    // free and total of Dev, as clients see it (answered)
	OpName      Op = "name"      // buffer Handle holds tensor Name (first one written)
	OpFree      Op = "free"      // buffer Handle is freed; its bytes are given back (answered)
	OpAllocFail Op = "alloc-fail"
	OpCacheRoom Op = "cache-room" // room for a cache entry of Size bytes (answered); Seq names it
	OpCacheDone Op = "cache-done" // the entry Seq made room for is written, or failed
	OpEnd       Op = "end"        // the connection is over; the process exits next
)

// Msg is a control message from the compute process to the supervisor.
type Msg struct {
	Op     Op     `json:"op"`
	Seq    uint64 `json:"seq,omitempty"`
	Dev    int    `json:"dev,omitempty"`
	Size   uint64 `json:"size,omitempty"`
	Handle uint64 `json:"handle,omitempty"`
	// Buffer marks a reserve or unreserve of a whole buffer (it counts
	// against --max-buffers-per-conn and costs BufferOverhead); Host marks
	// host memory held outside any buffer (messages in flight, graphs).
	Buffer    bool       `json:"buffer,omitempty"`
	Host      bool       `json:"host,omitempty"`
	Name      string     `json:"name,omitempty"`
	Reason    api.Reason `json:"reason,omitempty"`
	Detail    string     `json:"detail,omitempty"`
	Violation string     `json:"violation,omitempty"`
}

// Reply answers a Msg that asked (reserve, memory).
type Reply struct {
	Seq   uint64 `json:"seq"`
	OK    bool   `json:"ok,omitempty"`
	Limit string `json:"limit,omitempty"` // the quota that refused a reservation
	Free  uint64 `json:"free,omitempty"`
	Total uint64 `json:"total,omitempty"`
}

// Conn is one end of the control socketpair: JSON values, one per line.
// Send may be called from several goroutines.
type Conn struct {
	rw  io.ReadWriteCloser
	dec *json.Decoder
	mu  sync.Mutex
	enc *json.Encoder
}

// NewConn wraps a connected control socket.
func NewConn(rw io.ReadWriteCloser) *Conn {
	return &Conn{rw: rw, dec: json.NewDecoder(bufio.NewReader(rw)), enc: json.NewEncoder(rw)}
}

// Send writes one message.
func (c *Conn) Send(v any) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.enc.Encode(v); err != nil {
		return fmt.Errorf("control send: %w", err)
	}
	return nil
}

// Recv reads one message into v; io.EOF means the other side is gone.
func (c *Conn) Recv(v any) error { return c.dec.Decode(v) }

// Close closes the socket.
func (c *Conn) Close() error { return c.rw.Close() }

// MessageDeadline is how long a message of size payload bytes may take to
// arrive whole.
func MessageDeadline(timeout time.Duration, minRate, size uint64) time.Duration {
	d := timeout
	if minRate > 0 {
		d += time.Duration(size/minRate) * time.Second
	}
	return d
}

// Classify names the end of a connection from the error that ended it.
func Classify(err error) (api.Reason, string) {
	var ne net.Error
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return api.ReasonClosed, ""
	case errors.Is(err, syscall.ETIMEDOUT), errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		// Only keepalive probes (or unacknowledged writes) find these on an
		// otherwise quiet connection: the peer's host is gone.
		return api.ReasonDeadPeer, "keepalive: " + err.Error()
	case errors.As(err, &ne) && ne.Timeout(), errors.Is(err, os.ErrDeadlineExceeded):
		return api.ReasonIdle, "no message within --idle-timeout"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return api.ReasonClosed, "peer closed mid-message"
	default:
		return api.ReasonError, err.Error()
	}
}

// Keepalive is the TCP keepalive a worker sets on every client socket.
type Keepalive struct {
	Idle     time.Duration `json:"idle"`
	Interval time.Duration `json:"interval"`
	Count    int           `json:"count"`
}

// Apply sets keepalive, TCP_USER_TIMEOUT (their sum, so unacknowledged
// writes fail in the same window) and TCP_NODELAY on tc. A compute process
// applies it again to the socket it inherits: Go's net.FileConn resets
// keepalive to its own defaults.
func (k Keepalive) Apply(tc *net.TCPConn) {
	tc.SetNoDelay(true)
	tc.SetKeepAliveConfig(net.KeepAliveConfig{Enable: true, Idle: k.Idle, Interval: k.Interval, Count: k.Count})
	raw, err := tc.SyscallConn()
	if err != nil {
		return
	}
	d := k.Idle + time.Duration(k.Count)*k.Interval
	raw.Control(func(fd uintptr) {
		syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, tcpUserTimeout, int(d.Milliseconds()))
	})
}

// TCP_USER_TIMEOUT from linux/tcp.h (not in package syscall).
const tcpUserTimeout = 0x12
