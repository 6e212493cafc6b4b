package worker

import (
	"context"
	"encoding/binary"
	"io"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/boxproj/box/rpc"
)

// upstreamFlashAttnAllocSize is the GET_ALLOC_SIZE that llama.cpp's 3.6.0
// client (ec98e2002) sends while it reserves a graph with flash attention
// on: a FLASH_ATTN_EXT node whose K and V sources are permuted views of the
// KV cache. ggml gives a view its data address when it is made but its
// buffer only when the graph is allocated, so those sources carry data and
// buffer 0; the reference server answers with the default buffer type.
func upstreamFlashAttnAllocSize(kvData uint64) rpc.GetAllocSizeReq {
	const (
		nEmbdHead = 64
		nHead     = 4
		nHeadKV   = 2
		nKV       = 256
		nTokens   = 32
	)
	f16 := func(id uint64, name string, ne [4]uint32, nb [4]uint32) rpc.Tensor {
		t := rpc.Tensor{ID: id, Type: rpc.TypeF16, NE: ne, NB: nb}
		t.SetName(name)
		return t
	}
	q := rpc.Tensor{ID: 0x7f00_0000_1000, Type: rpc.TypeF32, NE: [4]uint32{nEmbdHead, nHead, nTokens, 1}}
	q.NB = [4]uint32{4, 4 * nEmbdHead * nTokens, 4 * nEmbdHead, 4 * nEmbdHead * nTokens * nHead}
	q.Op = rpc.OpPermute
	q.SetName("q-0 (permuted)")
	rowK := uint32(2 * nEmbdHead * nHeadKV)
	k := f16(0x7f00_0000_2000, "cache_k_l0 (view) (permuted)", [4]uint32{nEmbdHead, nKV, nHeadKV, 1},
		[4]uint32{2, rowK, 2 * nEmbdHead, rowK * nKV})
	k.Op, k.Data, k.ViewSrc = rpc.OpPermute, kvData, 0x7f00_0000_0100
	v := f16(0x7f00_0000_3000, "cache_v_l0 (view) (permuted)", k.NE, k.NB)
	v.Op, v.Data, v.ViewSrc = rpc.OpPermute, kvData+uint64(rowK)*nKV, 0x7f00_0000_0200
	mask := f16(0x7f00_0000_4000, "kq_mask (cast)", [4]uint32{nKV, nTokens, 1, 1}, [4]uint32{2, 2 * nKV, 2 * nKV * nTokens, 2 * nKV * nTokens})
	mask.Op = rpc.OpCpy
	out := rpc.Tensor{ID: 0x7f00_0000_5000, Type: rpc.TypeF32, Op: rpc.OpFlashAttn,
		NE: [4]uint32{nEmbdHead, nHead, nTokens, 1}}
	out.NB = [4]uint32{4, 4 * nEmbdHead, 4 * nEmbdHead * nHead, 4 * nEmbdHead * nHead * nTokens}
	binary.LittleEndian.PutUint32(out.OpParams[0:], math.Float32bits(0.125)) // scale
	out.Src[0], out.Src[1], out.Src[2], out.Src[3] = q.ID, k.ID, v.ID, mask.ID
	out.SetName("__fattn__-0")
	req := rpc.GetAllocSizeReq{Device: 0, Tensor: out}
	req.Srcs[0], req.Srcs[1], req.Srcs[2], req.Srcs[3] = q, k, v, mask
	return req
}

// An upstream head with flash attention on (its default) asks GET_ALLOC_SIZE
// for a node whose sources have a data address and no buffer: the worker
// answers, as the reference server does, instead of closing the connection.
func TestGetAllocSizeOfUnplacedViewSource(t *testing.T) {
	w := startWorker(t, Config{})
	rc := rawDial(t, w.addr, true)
	_, base := rc.alloc(t, 1<<20) // the KV cache, allocated before the reserve
	req := upstreamFlashAttnAllocSize(base)
	if err := rc.send(rpc.CmdGetAllocSize, req.Encode()); err != nil {
		t.Fatal(err)
	}
	rc.SetReadDeadline(time.Now().Add(10 * time.Second))
	var r [16]byte
	if _, err := io.ReadFull(rc.Conn, r[:]); err != nil {
		t.Fatalf("no answer to GET_ALLOC_SIZE (the worker closed the connection?): %v", err)
	}
	size, n := binary.LittleEndian.Uint64(r[:8]), binary.LittleEndian.Uint64(r[8:])
	want := uint64(64 * 4 * 32 * 4)
	if size != 8 || n < want {
		t.Fatalf("answer: size %d, alloc size %d; want 8 and at least %d", size, n, want)
	}
	// The connection is still good.
	rc.send(rpc.CmdDeviceCount, nil)
	if _, err := io.ReadFull(rc.Conn, r[:12]); err != nil {
		t.Fatalf("connection unusable after GET_ALLOC_SIZE: %v", err)
	}
}

// Everywhere else the rule stays strict: a tensor with a data address and
// no buffer is a violation.
func TestDataWithoutBufferStaysAViolationElsewhere(t *testing.T) {
	w := startWorker(t, Config{})
	for _, tc := range []struct {
		cmd     rpc.Cmd
		payload func(base uint64) []byte
	}{
		{rpc.CmdGetTensor, func(base uint64) []byte {
			return rpc.GetTensorReq{Tensor: f32t(1, 0, base, 16), Size: 4}.Encode()
		}},
		{rpc.CmdInitTensor, func(base uint64) []byte { return rpc.InitTensorReq{Tensor: f32t(1, 0, base, 16)}.Encode() }},
		{rpc.CmdGraphCompute, func(base uint64) []byte {
			x := f32t(1, 0, base, 16)
			y := f32t(2, 0, 0, 16)
			y.Op, y.Src[0] = rpc.OpSqr, 1
			return graphMsg([]uint64{2}, x, y)
		}},
	} {
		rc := rawDial(t, w.addr, true)
		_, base := rc.alloc(t, 1<<16)
		rc.send(tc.cmd, tc.payload(base))
		if !rc.closedByPeer(5 * time.Second) {
			t.Errorf("%s with data but no buffer: the connection stays open", tc.cmd)
		}
	}
}

// negGraph is x -> UNARY(NEG) -> y over 16 floats in buffer h, with the op
// numbered as the peer at v numbers it.
func negGraph(t *testing.T, v rpc.Version, h, base uint64) (x, y rpc.Tensor, payload []byte) {
	tab, _ := rpc.OpTableFor(v)
	unary, ok := tab.ID("UNARY")
	if !ok {
		t.Fatalf("%s has no UNARY", v)
	}
	x = f32t(1, h, base, 16)
	y = f32t(2, h, base+64, 16)
	y.Op, y.Src[0], y.Flags = unary, 1, rpc.FlagCompute
	binary.LittleEndian.PutUint32(y.OpParams[:], 2) // GGML_UNARY_OP_NEG
	return x, y, graphMsg([]uint64{2}, x, y)
}

// A Go client speaking each version the worker serves: the answer to every
// command, the layouts that changed (HELLO, MEMSET_TENSOR, the SET_TENSOR
// cache flag, commands without answers from 6.0) and op ids translated by
// name, on one port for 3.6 and newer clients alike.
func TestEveryProtocolVersion(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		worker rpc.Version // Config.Protocol (zero: the default, 7.0.0)
		caps   bool
		want   rpc.Version
	}{
		{rpc.Version{}, false, rpc.V3_6},
		{rpc.Version{}, true, rpc.V7_0},
		{pv(6, 0, 0), true, pv(6, 0, 0)},
		{pv(5, 1, 0), true, pv(5, 1, 0)},
		{pv(5, 0, 0), true, pv(5, 0, 0)},
		{pv(4, 0, 3), true, pv(4, 0, 3)},
		{pv(4, 0, 0), true, pv(4, 0, 0)},
	}
	workers := map[rpc.Version]*testWorker{}
	parent := t
	for _, tc := range cases {
		t.Run(tc.want.String(), func(t *testing.T) {
			w := workers[tc.worker]
			if w == nil {
				w = startWorker(parent, Config{Protocol: tc.worker})
				workers[tc.worker] = w
			}
			c, err := rpc.Dial(ctx, w.addr, rpc.WithHello(tc.caps))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if c.Protocol() != tc.want {
				t.Fatalf("protocol %s, want %s", c.Protocol(), tc.want)
			}
			v := tc.want
			n, err := c.DeviceCount(ctx)
			if err != nil || n == 0 {
				t.Fatal(n, err)
			}
			h, _, err := c.AllocBuffer(ctx, 0, 4096)
			if err != nil || h == 0 {
				t.Fatal(h, err)
			}
			base, err := c.BufferGetBase(ctx, h)
			if err != nil {
				t.Fatal(err)
			}
			if err := c.BufferClear(ctx, h, 0); err != nil {
				t.Fatal(err)
			}
			x, y, payload := negGraph(t, v, h, base)
			if err := c.InitTensor(ctx, x); err != nil {
				t.Fatal(err)
			}
			if err := c.SetTensorCache(ctx, x, 0, f32bytes(ramp(16, 1)), true); err != nil {
				t.Fatal(err)
			}
			if v.HasMemset() {
				if err := c.MemsetTensor(ctx, x, 0, 8, 0); err != nil { // x[0], x[1] = 0
					t.Fatal(err)
				}
			}
			if err := c.GraphComputeEncoded(ctx, payload); err != nil {
				t.Fatal(err)
			}
			out, err := c.GetTensor(ctx, y, 0, 64)
			if err != nil {
				t.Fatalf("after the graph: %v", err)
			}
			got, in := bytesF32(out), ramp(16, 1)
			if v.HasMemset() {
				in[0], in[1] = 0, 0
			}
			for i := range got {
				if got[i] != -in[i] {
					t.Fatalf("y[%d] = %v, want %v (op ids not translated?)", i, got[i], -in[i])
				}
			}
			if err := c.GraphRecompute(ctx, 0); err != nil {
				t.Fatal(err)
			}
			if ok, err := c.CopyTensor(ctx, y, x); err != nil || !ok {
				t.Fatal(ok, err)
			}
			if _, err := c.GetAllocSize(ctx, 0, y, []rpc.Tensor{x}); err != nil {
				t.Fatal(err)
			}
			if err := c.FreeBuffer(ctx, h); err != nil {
				t.Fatal(err)
			}
			// After commands without answers (6.0 and later), the stream
			// is still in step.
			if free, total, err := c.GetDeviceMemory(ctx, 0); err != nil || free > total {
				t.Fatal(free, total, err)
			}
			waitBound(t, w, 0, 5*time.Second)
		})
	}
}

// An op the client's protocol has and this worker's ggml lacks ends the
// connection as unsupported-op, naming the op; it is never run as whatever
// op has that number here.
func TestUnsupportedOpNamed(t *testing.T) {
	ctx := context.Background()
	w := startWorker(t, Config{})
	c, err := rpc.Dial(ctx, w.addr, rpc.WithHello(true))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	h, _, _ := c.AllocBuffer(ctx, 0, 4096)
	base, _ := c.BufferGetBase(ctx, h)
	x, y, _ := negGraph(t, rpc.V7_0, h, base)
	tab, _ := rpc.OpTableFor(rpc.V7_0)
	y.Op, _ = tab.ID("GATED_DELTA_NET") // 86 at 7.0; 86 is MAP_CUSTOM1 here
	if err := c.GraphCompute(ctx, 0, []uint64{2}, []rpc.Tensor{x, y}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.DeviceCount(ctx); err == nil {
		t.Fatal("the connection survived")
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		for _, e := range w.events.since(0) {
			if e.Reason == "unsupported-op" && strings.Contains(e.Detail, "GATED_DELTA_NET") {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no unsupported-op event naming GATED_DELTA_NET: %+v", w.events.since(0))
}

func pv(major, minor, patch uint8) rpc.Version {
	return rpc.Version{Major: major, Minor: minor, Patch: patch}
}

// The 6.0/7.0 client sends commands without answers back to back and reads
// only the answers that exist: this replays such a stream in one write.
func TestPipelinedCommandsAt7(t *testing.T) {
	w := startWorker(t, Config{})
	rc := rawDial(t, w.addr, false)
	rc.send(rpc.CmdHello, make([]byte, rpc.ConnCapsSize))
	var hello [8 + 28]byte
	if _, err := io.ReadFull(rc.Conn, hello[:]); err != nil || hello[8] != 7 {
		t.Fatalf("HELLO answer %v %v", hello, err)
	}
	rc.send(rpc.CmdAllocBuffer, rpc.AllocBufferReq{Device: 0, Size: 4096}.Encode())
	var r [24]byte
	io.ReadFull(rc.Conn, r[:])
	h := binary.LittleEndian.Uint64(r[8:])
	rc.send(rpc.CmdBufferGetBase, rpc.BufferReq{Handle: h}.Encode())
	io.ReadFull(rc.Conn, r[:16])
	base := binary.LittleEndian.Uint64(r[8:])
	x, y, graph := negGraph(t, rpc.V7_0, h, base)
	var stream []byte
	add := func(cmd rpc.Cmd, p []byte) {
		stream = rpc.AppendRequestHeader(stream, cmd, uint64(len(p)))
		stream = append(stream, p...)
	}
	add(rpc.CmdBufferClear, rpc.BufferClearReq{Handle: h}.Encode())
	add(rpc.CmdInitTensor, rpc.InitTensorReq{Tensor: x}.Encode())
	add(rpc.CmdSetTensor, append(rpc.AppendSetTensorHeader(nil, rpc.V7_0, &x, false, 0), f32bytes(ramp(16, 1))...))
	add(rpc.CmdMemsetTensor, rpc.MemsetTensorReq{Tensor: x, Offset: 0, Size: 4, Value: 0}.Encode())
	add(rpc.CmdGraphCompute, graph)
	add(rpc.CmdGraphRecompute, rpc.DeviceReq{}.Encode())
	add(rpc.CmdGetTensor, rpc.GetTensorReq{Tensor: y, Offset: 4, Size: 4}.Encode())
	add(rpc.CmdFreeBuffer, rpc.BufferReq{Handle: h}.Encode())
	add(rpc.CmdDeviceCount, nil)
	if _, err := rc.Write(stream); err != nil {
		t.Fatal(err)
	}
	rc.SetReadDeadline(time.Now().Add(10 * time.Second))
	var ans [8 + 4 + 8 + 4]byte
	if _, err := io.ReadFull(rc.Conn, ans[:]); err != nil {
		t.Fatal(err)
	}
	if n := binary.LittleEndian.Uint64(ans[:]); n != 4 {
		t.Fatalf("first answer is %d bytes, want GET_TENSOR's 4 (an answer to a command that has none?)", n)
	}
	if got := math.Float32frombits(binary.LittleEndian.Uint32(ans[8:])); got != -ramp(16, 1)[1] {
		t.Fatalf("y[1] = %v", got)
	}
	if n := binary.LittleEndian.Uint64(ans[12:]); n != 4 {
		t.Fatalf("second answer is %d bytes, want DEVICE_COUNT's 4", n)
	}
	if rc.closedByPeer(200 * time.Millisecond) {
		t.Fatal("connection closed")
	}
	waitBound(t, w, 0, 5*time.Second)
}
