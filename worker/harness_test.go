package worker

import (
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/boxproj/box/ggml"
	"github.com/boxproj/box/gguf"
	"github.com/boxproj/box/rpc"
	"github.com/boxproj/box/worker/compute/computetest"
)

var testLog = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))

// testWorker is a real worker on a loopback port.
type testWorker struct {
	*Worker
	addr  string
	admin string
	stop  func()
}

func startWorker(t testing.TB, cfg Config) *testWorker { return startWorkerFault(t, cfg, "") }

// startWorkerFault starts a worker whose compute processes are this test
// binary, with a test fault ("" for none; see package computetest).
func startWorkerFault(t testing.TB, cfg Config, fault string) *testWorker {
	t.Helper()
	return startWorkerAt(t, cfg, fault, "127.0.0.1:0")
}

func startWorkerAt(t testing.TB, cfg Config, fault, addr string) *testWorker {
	t.Helper()
	if cfg.Threads == 0 {
		cfg.Threads = 2
	}
	cfg.Compute = Command{Path: computetest.Executable(), Env: computetest.Env(fault)}
	w, err := New(cfg, testLog)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := w.Listen(context.Background(), addr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.Serve(ctx, ln)
	}()
	adm := httptest.NewServer(w.AdminHandler("test"))
	tw := &testWorker{Worker: w, addr: ln.Addr().String(), admin: adm.URL}
	var stopped bool
	tw.stop = func() {
		if stopped {
			return
		}
		stopped = true
		adm.Close()
		cancel()
		<-done
	}
	t.Cleanup(tw.stop)
	return tw
}

func dial(t testing.TB, addr string) *rpc.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// The tests number ops as box's ggml does: they speak 3.6.0
	// (interop_test.go covers the newer versions).
	c, err := rpc.Dial(ctx, addr, rpc.WithHello(false))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// waitBound waits until the worker holds exactly want bytes.
func waitBound(t testing.TB, w *testWorker, want uint64, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		got := w.BoundBytes()
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("bound bytes %d, want %d after %v", got, want, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func waitConns(t testing.TB, w *testWorker, want int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		if got := len(w.Connections()); got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d connections, want %d after %v", len(w.Connections()), want, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A graph described once and run two ways: over RPC on a worker, and
// directly on the local CPU backend, so results can be compared exactly.

type tdesc struct {
	name   string
	typ    uint32
	ne     [4]uint32
	nb     [4]uint32 // zero: contiguous
	op     uint32
	params [16]int32
	src    []int // indexes into the graph's tensors
	view   int   // index+1 of view source, 0 = none
	voffs  uint64
	off    uint64 // byte offset in the single buffer
	data   []byte // uploaded before compute (leafs)
}

func (d *tdesc) strides() [4]uint32 {
	if d.nb != [4]uint32{} {
		return d.nb
	}
	blck, ts, _ := rpc.TypeInfo(d.typ)
	var nb [4]uint32
	nb[0] = uint32(ts)
	nb[1] = uint32(uint64(ts) * uint64(d.ne[0]) / uint64(blck))
	nb[2] = nb[1] * d.ne[1]
	nb[3] = nb[2] * d.ne[2]
	return nb
}

func (d *tdesc) nbytes() uint64 {
	nb := d.strides()
	return uint64(nb[3]) * uint64(d.ne[3])
}

type testGraph struct {
	ts    []*tdesc
	nodes []int
	size  uint64
}

// layout places every non-view tensor in one buffer, 32-byte aligned.
func (g *testGraph) layout() {
	var off uint64
	for _, d := range g.ts {
		if d.view > 0 {
			d.off = g.ts[d.view-1].off + d.voffs
			continue
		}
		d.off = off
		off += (d.nbytes() + 31) &^ 31
	}
	g.size = off
}

func (g *testGraph) wire(handle, base uint64) []rpc.Tensor {
	out := make([]rpc.Tensor, len(g.ts))
	for i, d := range g.ts {
		t := rpc.Tensor{ID: uint64(0x1000 * (i + 1)), Type: d.typ, Buffer: handle, NE: d.ne, NB: d.strides(), Op: d.op, Data: base + d.off, ViewOffs: d.voffs}
		for j, p := range d.params {
			binary.LittleEndian.PutUint32(t.OpParams[4*j:], uint32(p))
		}
		for j, s := range d.src {
			t.Src[j] = uint64(0x1000 * (s + 1))
		}
		if d.view > 0 {
			t.ViewSrc = uint64(0x1000 * d.view)
		}
		t.SetName(d.name)
		out[i] = t
	}
	return out
}

// runRemote uploads, computes over RPC and returns each node's bytes.
func (g *testGraph) runRemote(t testing.TB, c *rpc.Client) [][]byte {
	t.Helper()
	ctx := context.Background()
	h, size, err := c.AllocBuffer(ctx, 0, g.size)
	if err != nil || h == 0 || size < g.size {
		t.Fatalf("alloc %d: handle %d size %d err %v", g.size, h, size, err)
	}
	defer c.FreeBuffer(ctx, h)
	base, err := c.BufferGetBase(ctx, h)
	if err != nil {
		t.Fatal(err)
	}
	wire := g.wire(h, base)
	for i, d := range g.ts {
		if d.data != nil {
			if err := c.SetTensor(ctx, wire[i], 0, d.data); err != nil {
				t.Fatal(err)
			}
		}
	}
	var nodes []uint64
	for _, n := range g.nodes {
		nodes = append(nodes, wire[n].ID)
	}
	if err := c.GraphCompute(ctx, 0, nodes, wire); err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for _, n := range g.nodes {
		b, err := c.GetTensor(ctx, wire[n], 0, g.ts[n].nbytes())
		if err != nil {
			t.Fatalf("get %s: %v", g.ts[n].name, err)
		}
		out = append(out, b)
	}
	return out
}

// runLocal computes the same graph on a local CPU backend.
func (g *testGraph) runLocal(t testing.TB) [][]byte {
	t.Helper()
	be, err := ggml.Open(ggml.Devices()[0], 2)
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	buf, err := be.Alloc(g.size)
	if err != nil {
		t.Fatal(err)
	}
	defer buf.Free()
	specs := make([]ggml.TensorSpec, len(g.ts))
	wire := g.wire(0, 0)
	for i, d := range g.ts {
		if d.data != nil {
			buf.Write(d.off, d.data)
		}
		s := ggml.TensorSpec{Type: d.typ, Op: d.op, OpParams: wire[i].OpParams, Buffer: buf, Offset: d.off, ViewSrc: -1, ViewOffs: d.voffs, Name: wire[i].Name}
		for k := 0; k < 4; k++ {
			s.NE[k] = int64(d.ne[k])
			s.NB[k] = uint64(d.strides()[k])
		}
		for j := range s.Src {
			s.Src[j] = -1
		}
		for j, sx := range d.src {
			s.Src[j] = int32(sx)
		}
		if d.view > 0 {
			s.ViewSrc = int32(d.view - 1)
		}
		specs[i] = s
	}
	var nodes []int32
	for _, n := range g.nodes {
		nodes = append(nodes, int32(n))
	}
	gr, err := be.BuildGraph(specs, nodes)
	if err != nil {
		t.Fatal(err)
	}
	defer gr.Free()
	if err := be.Compute(gr); err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for _, n := range g.nodes {
		b := make([]byte, g.ts[n].nbytes())
		buf.Read(g.ts[n].off, b)
		out = append(out, b)
	}
	return out
}

func f32bytes(xs []float32) []byte {
	b := make([]byte, 4*len(xs))
	for i, x := range xs {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}

func bytesF32(b []byte) []float32 {
	out := make([]float32, len(b)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return out
}

func f16bytes(xs []float32) []byte {
	b := make([]byte, 2*len(xs))
	for i, x := range xs {
		binary.LittleEndian.PutUint16(b[2*i:], gguf.F32ToF16(x))
	}
	return b
}

func q8bytes(xs []float32) []byte {
	b := make([]byte, len(xs)/32*34)
	gguf.QuantizeQ8_0(b, xs)
	return b
}

func ramp(n int, seed float32) []float32 {
	out := make([]float32, n)
	for i := range out {
		out[i] = float32(math.Sin(float64(seed)+float64(i)*0.37)) * 0.5
	}
	return out
}

func f32param(x float32) int32 { return int32(math.Float32bits(x)) }

// rawConn is a bare TCP connection for sending malformed traffic.
type rawConn struct {
	net.Conn
}

func rawDial(t testing.TB, addr string, hello bool) *rawConn {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	rc := &rawConn{nc}
	if hello {
		rc.send(rpc.CmdHello, nil)
		var resp [11]byte
		if _, err := io.ReadFull(nc, resp[:]); err != nil {
			t.Fatal(err)
		}
	}
	return rc
}

func (rc *rawConn) send(cmd rpc.Cmd, payload []byte) error {
	return rpc.WriteRequest(rc.Conn, cmd, payload)
}

// closedByPeer reports whether the worker closed the connection (EOF or
// reset) within d, discarding any bytes it sent first.
func (rc *rawConn) closedByPeer(d time.Duration) bool {
	rc.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, rc.Conn)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return false
	}
	return true
}
