package worker

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/boxproj/box/rpc"
)

const (
	tF32  = 0
	tF16  = 1
	tQ8_0 = 8
	tI32  = 26
)

func i32bytes(xs ...int32) []byte {
	b := make([]byte, 4*len(xs))
	for i, x := range xs {
		b[4*i], b[4*i+1], b[4*i+2], b[4*i+3] = byte(x), byte(x>>8), byte(x>>16), byte(x>>24)
	}
	return b
}

// llamaLikeGraph uses the ops a llama layer sends: get_rows, mul_mat on
// F32/F16/Q8_0 weights, add, mul, rms_norm, silu, a view and cont, soft_max.
func llamaLikeGraph(wtype uint32, seed float32) *testGraph {
	const k, rows, cols = 64, 32, 4
	var w []byte
	switch wtype {
	case tF16:
		w = f16bytes(ramp(k*rows, seed))
	case tQ8_0:
		w = q8bytes(ramp(k*rows, seed))
	default:
		w = f32bytes(ramp(k*rows, seed))
	}
	g := &testGraph{ts: []*tdesc{
		/* 0 */ {name: "embd", typ: tF32, ne: [4]uint32{k, 10, 1, 1}, data: f32bytes(ramp(k*10, seed+1))},
		/* 1 */ {name: "ids", typ: tI32, ne: [4]uint32{cols, 1, 1, 1}, data: i32bytes(3, 0, 9, 3)},
		/* 2 */ {name: "x", typ: tF32, ne: [4]uint32{k, cols, 1, 1}, op: rpc.OpGetRows, src: []int{0, 1}},
		/* 3 */ {name: "W", typ: wtype, ne: [4]uint32{k, rows, 1, 1}, data: w},
		/* 4 */ {name: "y", typ: tF32, ne: [4]uint32{rows, cols, 1, 1}, op: rpc.OpMulMat, src: []int{3, 2}},
		/* 5 */ {name: "b", typ: tF32, ne: [4]uint32{rows, 1, 1, 1}, data: f32bytes(ramp(rows, seed+2))},
		/* 6 */ {name: "z", typ: tF32, ne: [4]uint32{rows, cols, 1, 1}, op: rpc.OpAdd, src: []int{4, 5}},
		/* 7 */ {name: "n", typ: tF32, ne: [4]uint32{rows, cols, 1, 1}, op: rpc.OpRmsNorm, params: [16]int32{f32param(1e-5)}, src: []int{6}},
		/* 8 */ {name: "s", typ: tF32, ne: [4]uint32{rows, cols, 1, 1}, op: rpc.OpUnary, params: [16]int32{10}, src: []int{7}},
		/* 9 */ {name: "m", typ: tF32, ne: [4]uint32{rows, cols, 1, 1}, op: rpc.OpMul, src: []int{8, 6}},
		/* 10 */ {name: "v", typ: tF32, ne: [4]uint32{rows, 2, 1, 1}, nb: [4]uint32{4, 4 * rows, 4 * rows * 2, 4 * rows * 2}, op: rpc.OpView, src: []int{9}, view: 10, voffs: 4 * rows},
		/* 11 */ {name: "c", typ: tF32, ne: [4]uint32{rows, 2, 1, 1}, op: rpc.OpCont, src: []int{10}},
		/* 12 */ {name: "p", typ: tF32, ne: [4]uint32{rows, 2, 1, 1}, op: rpc.OpSoftMax, params: [16]int32{f32param(1), f32param(0)}, src: []int{11}},
	}, nodes: []int{2, 4, 6, 7, 8, 9, 10, 11, 12}}
	g.layout()
	return g
}

func TestGraphComputeMatchesLocalCPU(t *testing.T) {
	w := startWorker(t, Config{})
	c := dial(t, w.addr)
	for _, tc := range []struct {
		name string
		typ  uint32
	}{{"f32", tF32}, {"f16", tF16}, {"q8_0", tQ8_0}} {
		t.Run(tc.name, func(t *testing.T) {
			g := llamaLikeGraph(tc.typ, 0.5)
			remote := g.runRemote(t, c)
			local := g.runLocal(t)
			for i, n := range g.nodes {
				if !bytes.Equal(remote[i], local[i]) {
					t.Fatalf("node %s: remote %v\nlocal %v", g.ts[n].name, bytesF32(remote[i])[:8], bytesF32(local[i])[:8])
				}
			}
			// The result is not trivially zero.
			p := bytesF32(remote[len(remote)-1])
			var sum float32
			for _, x := range p {
				sum += x
			}
			if sum < 1.99 || sum > 2.01 { // two soft_max rows
				t.Fatalf("soft_max rows sum to %v, want 2", sum)
			}
		})
	}
	waitBound(t, w, 0, time.Second)
}

func TestRecomputeSeesNewInputs(t *testing.T) {
	w := startWorker(t, Config{})
	c := dial(t, w.addr)
	ctx := context.Background()
	// c = a + b, as in the protocol's test vector.
	h, _, err := c.AllocBuffer(ctx, 0, 1024)
	if err != nil {
		t.Fatal(err)
	}
	base, _ := c.BufferGetBase(ctx, h)
	mk := func(id uint64, off uint64, op uint32, srcs ...uint64) rpc.Tensor {
		t := rpc.Tensor{ID: id, Type: tF32, Buffer: h, NE: [4]uint32{4, 1, 1, 1}, NB: [4]uint32{4, 16, 16, 16}, Op: op, Data: base + off}
		copy(t.Src[:], srcs)
		return t
	}
	a, b, sum := mk(0x1000, 0, 0), mk(0x2000, 16, 0), mk(0x3000, 32, rpc.OpAdd, 0x1000, 0x2000)
	c.SetTensor(ctx, a, 0, f32bytes([]float32{1, 2, 3, 4}))
	c.SetTensor(ctx, b, 0, f32bytes([]float32{10, 20, 30, 40}))
	if err := c.GraphCompute(ctx, 0, []uint64{sum.ID}, []rpc.Tensor{a, b, sum}); err != nil {
		t.Fatal(err)
	}
	got, err := c.GetTensor(ctx, sum, 0, 16)
	if err != nil || fmt.Sprint(bytesF32(got)) != "[11 22 33 44]" {
		t.Fatalf("a+b = %v (%v)", bytesF32(got), err)
	}
	c.SetTensor(ctx, a, 0, f32bytes([]float32{100, 200, 300, 400}))
	if err := c.GraphRecompute(ctx, 0); err != nil {
		t.Fatal(err)
	}
	got, err = c.GetTensor(ctx, sum, 0, 16)
	if err != nil || fmt.Sprint(bytesF32(got)) != "[110 220 330 440]" {
		t.Fatalf("recompute = %v (%v)", bytesF32(got), err)
	}
	// COPY_TENSOR between same-layout tensors works on the worker.
	if ok, err := c.CopyTensor(ctx, sum, a); err != nil || !ok {
		t.Fatalf("copy: %v %v", ok, err)
	}
	got, _ = c.GetTensor(ctx, a, 0, 16)
	if fmt.Sprint(bytesF32(got)) != "[110 220 330 440]" {
		t.Fatalf("after copy a = %v", bytesF32(got))
	}
	// A freed buffer takes its stored graph with it: recompute is refused,
	// not run on freed memory.
	if err := c.FreeBuffer(ctx, h); err != nil {
		t.Fatal(err)
	}
	c.GraphRecompute(ctx, 0)
	if _, err := c.DeviceCount(ctx); err == nil {
		t.Fatal("recompute after free was accepted")
	}
	waitConns(t, w, 0, 2*time.Second)
}

func TestTwoClientsIsolated(t *testing.T) {
	w := startWorker(t, Config{})
	a, b := dial(t, w.addr), dial(t, w.addr)
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for i, c := range []*rpc.Client{a, b} {
		wg.Add(1)
		go func(seed float32, c *rpc.Client) {
			defer wg.Done()
			g := llamaLikeGraph(tQ8_0, seed)
			want := g.runLocal(t)
			for iter := 0; iter < 20; iter++ {
				got := g.runRemote(t, c)
				for k := range got {
					if !bytes.Equal(got[k], want[k]) {
						errs <- fmt.Errorf("client %v iteration %d node %d differs", seed, iter, k)
						return
					}
				}
			}
		}(float32(i)+0.25, c)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	// b may not name a's buffer: its connection is closed, a keeps going.
	ctx := context.Background()
	ha, _, _ := a.AllocBuffer(ctx, 0, 4096)
	basea, _ := a.BufferGetBase(ctx, ha)
	ta := rpc.Tensor{ID: 1, Type: tF32, Buffer: ha, NE: [4]uint32{4, 1, 1, 1}, NB: [4]uint32{4, 16, 16, 16}, Data: basea}
	a.SetTensor(ctx, ta, 0, f32bytes([]float32{1, 2, 3, 4}))
	if _, err := b.GetTensor(ctx, ta, 0, 16); err == nil {
		t.Fatal("b read a's buffer")
	}
	if err := b.FreeBuffer(ctx, ha); err == nil {
		t.Fatal("b freed a's buffer")
	}
	got, err := a.GetTensor(ctx, ta, 0, 16)
	if err != nil || fmt.Sprint(bytesF32(got)) != "[1 2 3 4]" {
		t.Fatalf("a after b's attempt: %v %v", bytesF32(got), err)
	}
	waitConns(t, w, 1, 2*time.Second)
	if w.BoundBytes() != 4096 {
		t.Fatalf("bound %d, want a's 4096", w.BoundBytes())
	}
}

// The valid nodes of a few ops, run on a real worker, match local compute.
func TestAllowedOpsMatchLocal(t *testing.T) {
	w := startWorker(t, Config{})
	c := dial(t, w.addr)
	const d, toks, kv, hd, heads = 64, 3, 8, 16, 4
	fpos := i32bytes(0, 5, 9)
	f16mask := f16bytes([]float32{0, 0, 0, 0, 0, -65504, -65504, -65504, 0, 0, 0, 0, 0, 0, -65504, -65504, 0, 0, 0, 0, 0, 0, 0, 0})
	for _, tc := range []struct {
		name string
		g    *testGraph
	}{
		{"add", &testGraph{ts: []*tdesc{
			{name: "a", typ: tF32, ne: [4]uint32{d, toks, 1, 1}, data: f32bytes(ramp(d*toks, 1))},
			{name: "b", typ: tF32, ne: [4]uint32{d, 1, 1, 1}, data: f32bytes(ramp(d, 2))},
			{name: "c", typ: tF32, ne: [4]uint32{d, toks, 1, 1}, op: rpc.OpAdd, src: []int{0, 1}},
		}, nodes: []int{2}}},
		{"mul_mat_q8_0", &testGraph{ts: []*tdesc{
			{name: "w", typ: tQ8_0, ne: [4]uint32{d, 32, 1, 1}, data: q8bytes(ramp(d*32, 3))},
			{name: "x", typ: tF32, ne: [4]uint32{d, toks, 1, 1}, data: f32bytes(ramp(d*toks, 4))},
			{name: "y", typ: tF32, ne: [4]uint32{32, toks, 1, 1}, op: rpc.OpMulMat, src: []int{0, 1}},
		}, nodes: []int{2}}},
		{"rms_norm", &testGraph{ts: []*tdesc{
			{name: "x", typ: tF32, ne: [4]uint32{d, toks, 1, 1}, data: f32bytes(ramp(d*toks, 5))},
			{name: "n", typ: tF32, ne: [4]uint32{d, toks, 1, 1}, op: rpc.OpRmsNorm, params: [16]int32{f32param(1e-6)}, src: []int{0}},
		}, nodes: []int{1}}},
		{"rope", &testGraph{ts: []*tdesc{
			{name: "q", typ: tF32, ne: [4]uint32{hd, heads, toks, 1}, data: f32bytes(ramp(hd*heads*toks, 6))},
			{name: "pos", typ: tI32, ne: [4]uint32{toks, 1, 1, 1}, data: fpos},
			{name: "r", typ: tF32, ne: [4]uint32{hd, heads, toks, 1}, op: rpc.OpRope, params: [16]int32{0, hd, 0, 0, 4096, f32param(10000), f32param(1), f32param(0), f32param(1), f32param(32), f32param(1)}, src: []int{0, 1}},
		}, nodes: []int{2}}},
		{"soft_max", &testGraph{ts: []*tdesc{
			{name: "kq", typ: tF32, ne: [4]uint32{kv, toks, heads, 1}, data: f32bytes(ramp(kv*toks*heads, 7))},
			{name: "mask", typ: tF16, ne: [4]uint32{kv, toks, 1, 1}, data: f16mask},
			{name: "p", typ: tF32, ne: [4]uint32{kv, toks, heads, 1}, op: rpc.OpSoftMax, params: [16]int32{f32param(0.25), 0}, src: []int{0, 1}},
		}, nodes: []int{2}}},
		{"get_rows", &testGraph{ts: []*tdesc{
			{name: "emb", typ: tQ8_0, ne: [4]uint32{d, 10, 1, 1}, data: q8bytes(ramp(d*10, 8))},
			{name: "ids", typ: tI32, ne: [4]uint32{toks, 1, 1, 1}, data: i32bytes(9, 0, 4)},
			{name: "x", typ: tF32, ne: [4]uint32{d, toks, 1, 1}, op: rpc.OpGetRows, src: []int{0, 1}},
		}, nodes: []int{2}}},
		{"cpy_f32_f16", &testGraph{ts: []*tdesc{
			{name: "a", typ: tF32, ne: [4]uint32{hd, 2, toks, 1}, data: f32bytes(ramp(hd*2*toks, 9))},
			{name: "dst", typ: tF16, ne: [4]uint32{hd * 2, toks, 1, 1}},
			{name: "cpy", typ: tF16, ne: [4]uint32{hd * 2, toks, 1, 1}, op: rpc.OpCpy, src: []int{0, 1}, view: 2},
		}, nodes: []int{2}}},
		{"glu_swiglu", &testGraph{ts: []*tdesc{
			{name: "gate", typ: tF32, ne: [4]uint32{d, toks, 1, 1}, data: f32bytes(ramp(d*toks, 10))},
			{name: "up", typ: tF32, ne: [4]uint32{d, toks, 1, 1}, data: f32bytes(ramp(d*toks, 11))},
			{name: "g", typ: tF32, ne: [4]uint32{d, toks, 1, 1}, op: rpc.OpGlu, params: [16]int32{2, 0}, src: []int{0, 1}},
		}, nodes: []int{2}}},
		{"flash_attn_ext", &testGraph{ts: []*tdesc{
			{name: "q", typ: tF32, ne: [4]uint32{hd, toks, heads, 1}, data: f32bytes(ramp(hd*toks*heads, 12))},
			{name: "k", typ: tF16, ne: [4]uint32{hd, kv, 2, 1}, data: f16bytes(ramp(hd*kv*2, 13))},
			{name: "v", typ: tF16, ne: [4]uint32{hd, kv, 2, 1}, data: f16bytes(ramp(hd*kv*2, 14))},
			{name: "mask", typ: tF16, ne: [4]uint32{kv, toks, 1, 1}, data: f16mask},
			{name: "o", typ: tF32, ne: [4]uint32{hd, heads, toks, 1}, op: rpc.OpFlashAttn, params: [16]int32{f32param(0.25), 0, 0, 0}, src: []int{0, 1, 2, 3}},
		}, nodes: []int{4}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := tc.g
			g.layout()
			// The worker refuses a node its op rules do not allow, so
			// getting results means the node passed them as sent.
			remote := g.runRemote(t, c)
			local := g.runLocal(t)
			for i := range g.nodes {
				if !bytes.Equal(remote[i], local[i]) {
					t.Fatalf("node %d differs", i)
				}
				if bytes.Equal(remote[i], make([]byte, len(remote[i]))) {
					t.Fatalf("node %d is all zero", i)
				}
			}
		})
	}
}
