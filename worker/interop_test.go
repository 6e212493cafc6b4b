package worker

import (
	"encoding/binary"
	"io"
	"math"
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
