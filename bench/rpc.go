package bench

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/boxproj/box/rpc"
	"golang.org/x/sys/unix"
)

// Sink serves raw loopback transfers: it reads each n-byte transfer whole
// into one buffer (as the worker does) and acknowledges it with one byte. It
// runs in its own process (box bench --sink), so the raw figure crosses a
// process boundary exactly as head-to-worker traffic does.
//
// With fresh set, every transfer lands in memory newly mapped for it and
// kept until the connection ends, as a worker keeps the weights it
// receives: the floor of any upload, which must also fault in the pages it
// fills (on a virtual machine that returns freed memory to its host, the
// dearest part of a load).
func Sink(ln net.Listener, n int, fresh bool) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			if fresh {
				sinkFresh(c, n)
				return
			}
			sink := make([]byte, n)
			for {
				if _, err := io.ReadFull(c, sink); err != nil {
					return
				}
				c.Write(sink[:1])
			}
		}()
	}
}

// sinkFresh is Sink's fresh mode for one connection. Each transfer is a
// little-endian u64 length (at most n) and that many bytes; everything
// received is unmapped when the connection ends.
func sinkFresh(c net.Conn, n int) {
	var held [][]byte
	defer func() {
		for _, b := range held {
			unix.Munmap(b)
		}
	}()
	var hdr [8]byte
	for {
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return
		}
		k := binary.LittleEndian.Uint64(hdr[:])
		if k == 0 || k > uint64(n) {
			return
		}
		b, err := unix.Mmap(-1, 0, int(k), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
		if err != nil {
			return
		}
		held = append(held, b)
		if _, err := io.ReadFull(c, b); err != nil {
			return
		}
		c.Write(b[:1])
	}
}

// loopback sends raw transfers to a Sink.
type loopback struct {
	c   net.Conn
	buf []byte
	ack []byte
}

func newLoopback(sinkAddr string, n int) (*loopback, error) {
	c, err := net.Dial("tcp", sinkAddr)
	if err != nil {
		return nil, err
	}
	return &loopback{c: c, buf: make([]byte, n), ack: make([]byte, 1)}, nil
}

// once sends one transfer and returns its rate in bytes/s.
func (l *loopback) once() (float64, error) {
	t0 := time.Now()
	if _, err := l.c.Write(l.buf); err != nil {
		return 0, err
	}
	if _, err := io.ReadFull(l.c, l.ack); err != nil {
		return 0, err
	}
	return float64(len(l.buf)) / time.Since(t0).Seconds(), nil
}

// sendFresh sends one transfer of n bytes (at most the buffer's size) to a
// Sink in fresh mode.
func (l *loopback) sendFresh(n int) error {
	var hdr [8]byte
	binary.LittleEndian.PutUint64(hdr[:], uint64(n))
	bufs := net.Buffers{hdr[:], l.buf[:n]}
	if _, err := bufs.WriteTo(l.c); err != nil {
		return err
	}
	_, err := io.ReadFull(l.c, l.ack)
	return err
}

func (l *loopback) close() { l.c.Close() }

// LoopbackRTT is the best round trip of a 1-byte ping-pong over loopback.
func LoopbackRTT(ctx context.Context, reps int) (time.Duration, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		b := make([]byte, 1)
		for {
			if _, err := io.ReadFull(c, b); err != nil {
				return
			}
			c.Write(b)
		}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		return 0, err
	}
	defer c.Close()
	b := make([]byte, 1)
	var total time.Duration
	for i := 0; i < reps; i++ {
		t0 := time.Now()
		c.Write(b)
		if _, err := io.ReadFull(c, b); err != nil {
			return 0, err
		}
		total += time.Since(t0)
	}
	return total / time.Duration(reps), nil
}

// RPCResult is the transport benchmark of one worker.
type RPCResult struct {
	TensorBytes      int     `json:"tensor_bytes"`
	LoopbackBps      float64 `json:"loopback_bytes_per_s"`
	SetTensorBps     float64 `json:"set_tensor_bytes_per_s"`
	GetTensorBps     float64 `json:"get_tensor_bytes_per_s"`
	SetRatio         float64 `json:"set_ratio_to_loopback"`
	GetRatio         float64 `json:"get_ratio_to_loopback"`
	LoopbackRTTus    float64 `json:"loopback_rtt_us"`
	GraphRTTus       float64 `json:"graph_compute_rtt_us"`
	Cycles           int     `json:"cycles"`
	RSSStartBytes    uint64  `json:"rss_start_bytes"`
	RSSEndBytes      uint64  `json:"rss_end_bytes"`
	RSSChangePercent float64 `json:"rss_change_percent"`
}

// RPC measures a worker at addr: SET_TENSOR and GET_TENSOR of size bytes
// beside raw transfers to a Sink at sinkAddr, GRAPH_COMPUTE round trips of a
// tiny graph, and the worker's RSS (pid) over cycles alloc/set/free cycles.
func RPC(ctx context.Context, addr, sinkAddr string, pid int, size, reps, cycles int) (RPCResult, error) {
	res := RPCResult{TensorBytes: size, Cycles: cycles}
	lb, err := newLoopback(sinkAddr, size)
	if err != nil {
		return res, err
	}
	defer lb.close()
	rtt, err := LoopbackRTT(ctx, 2000)
	if err != nil {
		return res, err
	}
	res.LoopbackRTTus = float64(rtt.Nanoseconds()) / 1e3

	c, err := rpc.Dial(ctx, addr)
	if err != nil {
		return res, err
	}
	defer c.Close()
	h, got, err := c.AllocBuffer(ctx, 0, uint64(size))
	if err != nil || h == 0 || got < uint64(size) {
		return res, fmt.Errorf("alloc %d: %v", size, err)
	}
	base, err := c.BufferGetBase(ctx, h)
	if err != nil {
		return res, err
	}
	t := rpc.Tensor{ID: 1, Type: rpc.TypeI8, Buffer: h, NE: [4]uint32{uint32(size), 1, 1, 1}, NB: [4]uint32{1, uint32(size), uint32(size), uint32(size)}, Data: base}
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i * 7)
	}
	// Raw, SET and GET interleaved, best of each: a busy moment on the
	// machine then hits all three alike.
	for r := 0; r < reps; r++ {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		raw, err := lb.once()
		if err != nil {
			return res, err
		}
		res.LoopbackBps = math.Max(res.LoopbackBps, raw)
		t0 := time.Now()
		if err := c.SetTensor(ctx, t, 0, data); err != nil {
			return res, err
		}
		if _, err := c.DeviceCount(ctx); err != nil { // the upload has been applied
			return res, err
		}
		res.SetTensorBps = math.Max(res.SetTensorBps, float64(size)/time.Since(t0).Seconds())
		t0 = time.Now()
		if err := c.GetTensorInto(ctx, data, t, 0); err != nil {
			return res, err
		}
		res.GetTensorBps = math.Max(res.GetTensorBps, float64(size)/time.Since(t0).Seconds())
	}
	if err := c.FreeBuffer(ctx, h); err != nil {
		return res, err
	}
	res.SetRatio = res.SetTensorBps / res.LoopbackBps
	res.GetRatio = res.GetTensorBps / res.LoopbackBps

	// c = a + b on four floats: compute, then read the result back.
	h, _, err = c.AllocBuffer(ctx, 0, 1024)
	if err != nil {
		return res, err
	}
	base, _ = c.BufferGetBase(ctx, h)
	mk := func(id, off uint64, op uint32, srcs ...uint64) rpc.Tensor {
		t := rpc.Tensor{ID: id, Type: rpc.TypeF32, Buffer: h, NE: [4]uint32{4, 1, 1, 1}, NB: [4]uint32{4, 16, 16, 16}, Op: op, Data: base + off}
		copy(t.Src[:], srcs)
		return t
	}
	a, b, sum := mk(1, 0, 0), mk(2, 16, 0), mk(3, 32, 2, 1, 2)
	ones := make([]byte, 16)
	for i := 0; i < 4; i++ {
		binary.LittleEndian.PutUint32(ones[4*i:], math.Float32bits(1))
	}
	c.SetTensor(ctx, a, 0, ones)
	c.SetTensor(ctx, b, 0, ones)
	const graphs = 1000
	t0 := time.Now()
	for i := 0; i < graphs; i++ {
		if err := c.GraphCompute(ctx, 0, []uint64{3}, []rpc.Tensor{a, b, sum}); err != nil {
			return res, err
		}
		if _, err := c.GetTensor(ctx, sum, 0, 16); err != nil {
			return res, err
		}
	}
	res.GraphRTTus = float64(time.Since(t0).Microseconds()) / graphs
	c.FreeBuffer(ctx, h)

	// RSS over many alloc/set/free cycles: measured after a warm-up tenth.
	chunk := data[:1<<20]
	for i := 0; i < cycles; i++ {
		if i == cycles/10 {
			res.RSSStartBytes = rss(pid)
		}
		h, _, err := c.AllocBuffer(ctx, 0, 1<<20)
		if err != nil || h == 0 {
			return res, fmt.Errorf("cycle %d: alloc: %v", i, err)
		}
		base, _ := c.BufferGetBase(ctx, h)
		t := rpc.Tensor{ID: 1, Type: rpc.TypeI8, Buffer: h, NE: [4]uint32{1 << 20, 1, 1, 1}, NB: [4]uint32{1, 1 << 20, 1 << 20, 1 << 20}, Data: base}
		if err := c.SetTensor(ctx, t, 0, chunk); err != nil {
			return res, err
		}
		if err := c.FreeBuffer(ctx, h); err != nil {
			return res, err
		}
	}
	res.RSSEndBytes = rss(pid)
	res.RSSChangePercent = 100 * (float64(res.RSSEndBytes) - float64(res.RSSStartBytes)) / float64(res.RSSStartBytes)
	return res, nil
}

// rss reads a process's resident set size from /proc.
func rss(pid int) uint64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}
