package worker

import (
	"context"
	"encoding/binary"
	"io"
	"testing"
	"time"

	"github.com/boxproj/box/rpc"
)

func (rc *rawConn) alloc(t *testing.T, size uint64) (handle, base uint64) {
	t.Helper()
	rc.send(rpc.CmdAllocBuffer, rpc.AllocBufferReq{Device: 0, Size: size}.Encode())
	var r [24]byte
	if _, err := io.ReadFull(rc.Conn, r[:]); err != nil {
		t.Fatal(err)
	}
	handle = binary.LittleEndian.Uint64(r[8:])
	rc.send(rpc.CmdBufferGetBase, rpc.BufferReq{Handle: handle}.Encode())
	var b [16]byte
	if _, err := io.ReadFull(rc.Conn, b[:]); err != nil {
		t.Fatal(err)
	}
	return handle, binary.LittleEndian.Uint64(b[8:])
}

func f32t(id, buf, data uint64, ne ...uint32) rpc.Tensor {
	t := rpc.Tensor{ID: id, Type: tF32, Buffer: buf, Data: data, NE: [4]uint32{1, 1, 1, 1}}
	copy(t.NE[:], ne)
	t.NB[0] = 4
	for i := 1; i < 4; i++ {
		t.NB[i] = t.NB[i-1] * t.NE[i-1]
	}
	return t
}

func graphMsg(nodes []uint64, ts ...rpc.Tensor) []byte {
	return rpc.GraphComputeReq{Device: 0, Nodes: nodes, Tensors: ts}.Encode()
}

// Every class of message that aborts or wedges the reference server closes
// only the offending connection here; the worker and its other clients go on.
func TestMalformedMessagesCloseOnlyTheirConnection(t *testing.T) {
	w := startWorker(t, Config{})
	bystander := dial(t, w.addr)
	ctx := context.Background()
	bh, _, err := bystander.AllocBuffer(ctx, 0, 1<<20)
	if err != nil || bh == 0 {
		t.Fatal(err)
	}

	type probe struct {
		name  string
		hello bool
		kind  string // expected violation kind, "" for a plain close
		run   func(t *testing.T, rc *rawConn)
	}
	sendGraph := func(rc *rawConn, p []byte) { rc.send(rpc.CmdGraphCompute, p) }
	probes := []probe{
		{"first command is not HELLO", false, "hello", func(t *testing.T, rc *rawConn) { rc.send(rpc.CmdDeviceCount, nil) }},
		{"HELLO with a payload of neither 0 nor 24 bytes", false, "hello", func(t *testing.T, rc *rawConn) { rc.send(rpc.CmdHello, make([]byte, 5)) }},
		{"second HELLO", true, "hello", func(t *testing.T, rc *rawConn) { rc.send(rpc.CmdHello, nil) }},
		{"unknown command 17", true, "command", func(t *testing.T, rc *rawConn) { rc.send(17, nil) }},
		{"device out of range", true, "device", func(t *testing.T, rc *rawConn) { rc.send(rpc.CmdGetAlignment, rpc.DeviceReq{Device: 5}.Encode()) }},
		{"wrong payload size", true, "size", func(t *testing.T, rc *rawConn) { rc.send(rpc.CmdGetAlignment, make([]byte, 8)) }},
		{"unknown buffer", true, "buffer", func(t *testing.T, rc *rawConn) {
			rc.send(rpc.CmdGetTensor, rpc.GetTensorReq{Tensor: f32t(1, 0xdead, 0x1000, 4), Size: 16}.Encode())
		}},
		{"another connection's buffer", true, "buffer", func(t *testing.T, rc *rawConn) {
			rc.send(rpc.CmdBufferClear, rpc.BufferClearReq{Handle: bh}.Encode())
		}},
		{"double free", true, "buffer", func(t *testing.T, rc *rawConn) {
			h, _ := rc.alloc(t, 64)
			rc.send(rpc.CmdFreeBuffer, rpc.BufferReq{Handle: h}.Encode())
			rc.send(rpc.CmdFreeBuffer, rpc.BufferReq{Handle: h}.Encode())
		}},
		{"write past the buffer end", true, "range", func(t *testing.T, rc *rawConn) {
			h, base := rc.alloc(t, 64)
			rc.send(rpc.CmdSetTensor, rpc.SetTensorReq{SetTensorHeader: rpc.SetTensorHeader{Tensor: f32t(1, h, base+48, 4), Offset: 8}, Data: make([]byte, 16)}.Encode())
		}},
		{"read past the tensor inside the buffer", true, "range", func(t *testing.T, rc *rawConn) {
			h, base := rc.alloc(t, 256)
			rc.send(rpc.CmdGetTensor, rpc.GetTensorReq{Tensor: f32t(1, h, base, 4), Size: 32}.Encode())
		}},
		{"tensor extends past its buffer", true, "range", func(t *testing.T, rc *rawConn) {
			h, base := rc.alloc(t, 64)
			rc.send(rpc.CmdInitTensor, rpc.InitTensorReq{Tensor: f32t(1, h, base, 32)}.Encode())
		}},
		{"removed type number 4", true, "type", func(t *testing.T, rc *rawConn) {
			h, base := rc.alloc(t, 64)
			tt := f32t(1, h, base, 4)
			tt.Type = 4
			rc.send(rpc.CmdInitTensor, rpc.InitTensorReq{Tensor: tt}.Encode())
		}},
		{"type 40", true, "type", func(t *testing.T, rc *rawConn) {
			tt := f32t(1, 0, 0, 4)
			tt.Type = 40
			rc.send(rpc.CmdInitTensor, rpc.InitTensorReq{Tensor: tt}.Encode())
		}},
		{"quantized row not a multiple of the block", true, "shape", func(t *testing.T, rc *rawConn) {
			h, base := rc.alloc(t, 1024)
			tt := f32t(1, h, base, 33)
			tt.Type, tt.NB[0] = tQ8_0, 34
			rc.send(rpc.CmdInitTensor, rpc.InitTensorReq{Tensor: tt}.Encode())
		}},
		{"short SET_TENSOR", true, "size", func(t *testing.T, rc *rawConn) { rc.send(rpc.CmdSetTensor, make([]byte, 100)) }},
		{"graph node id 0", true, "graph", func(t *testing.T, rc *rawConn) {
			h, base := rc.alloc(t, 64)
			sendGraph(rc, graphMsg([]uint64{1, 0}, f32t(1, h, base, 4)))
		}},
		{"graph tensor with an address but no buffer", true, "buffer", func(t *testing.T, rc *rawConn) {
			h, base := rc.alloc(t, 64)
			sum := f32t(3, h, base, 4)
			sum.Op, sum.Src[0], sum.Src[1] = rpc.OpAdd, 1, 2
			sendGraph(rc, graphMsg([]uint64{3}, f32t(1, 0, 0x7f0000001000, 4), f32t(2, h, base+16, 4), sum))
		}},
		{"graph tensor with no buffer at all", true, "buffer", func(t *testing.T, rc *rawConn) {
			h, base := rc.alloc(t, 64)
			sum := f32t(3, h, base, 4)
			sum.Op, sum.Src[0], sum.Src[1] = rpc.OpAdd, 1, 2
			sendGraph(rc, graphMsg([]uint64{3}, f32t(1, 0, 0, 4), f32t(2, h, base+16, 4), sum))
		}},
		{"graph source not sent", true, "graph", func(t *testing.T, rc *rawConn) {
			h, base := rc.alloc(t, 64)
			sum := f32t(3, h, base, 4)
			sum.Op, sum.Src[0], sum.Src[1] = rpc.OpAdd, 1, 2
			sendGraph(rc, graphMsg([]uint64{3}, f32t(1, h, base+16, 4), sum))
		}},
		{"graph with a cycle", true, "graph", func(t *testing.T, rc *rawConn) {
			h, base := rc.alloc(t, 64)
			a, b := f32t(1, h, base, 4), f32t(2, h, base+16, 4)
			a.Op, a.Src[0] = rpc.OpCont, 2
			b.Op, b.Src[0] = rpc.OpCont, 1
			sendGraph(rc, graphMsg([]uint64{1, 2}, a, b))
		}},
		{"recompute before compute", true, "graph", func(t *testing.T, rc *rawConn) {
			rc.send(rpc.CmdGraphRecompute, rpc.DeviceReq{}.Encode())
		}},
		{"custom op with a function pointer", true, "op", func(t *testing.T, rc *rawConn) {
			h, base := rc.alloc(t, 64)
			n := f32t(2, h, base+16, 4)
			n.Op, n.Src[0] = rpc.OpCustom, 1
			binary.LittleEndian.PutUint64(n.OpParams[:], 0x4141414141414141)
			sendGraph(rc, graphMsg([]uint64{2}, f32t(1, h, base, 4), n))
		}},
		{"op number out of range", true, "op", func(t *testing.T, rc *rawConn) {
			h, base := rc.alloc(t, 64)
			n := f32t(1, h, base, 4)
			n.Op = 200
			sendGraph(rc, graphMsg([]uint64{1}, n))
		}},
		{"mul_mat with mismatched shapes", true, "op", func(t *testing.T, rc *rawConn) {
			h, base := rc.alloc(t, 4096)
			a, b := f32t(1, h, base, 8, 4), f32t(2, h, base+256, 6, 2)
			d := f32t(3, h, base+512, 4, 2)
			d.Op, d.Src[0], d.Src[1] = rpc.OpMulMat, 1, 2
			sendGraph(rc, graphMsg([]uint64{3}, a, b, d))
		}},
		{"get_rows index out of range", true, "index", func(t *testing.T, rc *rawConn) {
			h, base := rc.alloc(t, 4096)
			src, ids := f32t(1, h, base, 4, 3), f32t(2, h, base+256, 2)
			ids.Type = tI32
			rc.send(rpc.CmdSetTensor, rpc.SetTensorReq{SetTensorHeader: rpc.SetTensorHeader{Tensor: ids}, Data: i32bytes(1, 7)}.Encode())
			d := f32t(3, h, base+512, 4, 2)
			d.Op, d.Src[0], d.Src[1] = rpc.OpGetRows, 1, 2
			sendGraph(rc, graphMsg([]uint64{3}, src, ids, d))
		}},
		{"graph larger than the limit", true, "size", func(t *testing.T, rc *rawConn) {
			rpc.WriteRequest(rc.Conn, rpc.CmdGraphCompute) // header only: size 0
			hdr := rpc.AppendRequestHeader(nil, rpc.CmdGraphCompute, 1<<40)
			rc.Write(hdr)
		}},
		{"graph counts larger than the payload", true, "graph", func(t *testing.T, rc *rawConn) {
			p := make([]byte, 20)
			binary.LittleEndian.PutUint32(p[4:], 0xffffffff)
			sendGraph(rc, p)
		}},
	}
	for _, p := range probes {
		t.Run(p.name, func(t *testing.T) {
			rc := rawDial(t, w.addr, p.hello)
			p.run(t, rc)
			if !rc.closedByPeer(3 * time.Second) {
				t.Fatal("connection not closed")
			}
			// Only the bystander's megabyte stays bound.
			waitBound(t, w, 1<<20, 2*time.Second)
			waitConns(t, w, 1, 2*time.Second)
			if p.kind != "" {
				evs := w.events.since(0)
				last := evs[len(evs)-1]
				if last.Kind != "disconnect" || last.Reason != "violation" {
					t.Fatalf("last event %+v, want a violation disconnect", last)
				}
				if last.Violation != p.kind {
					t.Fatalf("violation %q is of kind %q, want %q", last.Detail, last.Violation, p.kind)
				}
			}
			if err := bystander.Ping(ctx); err != nil {
				t.Fatalf("bystander broken: %v", err)
			}
		})
	}
}

// The reference server dies of SIGPIPE when a client closes during a large
// reply; here the writer just fails and the connection is cleaned up.
func TestPeerClosesDuringReply(t *testing.T) {
	w := startWorker(t, Config{})
	rc := rawDial(t, w.addr, true)
	const size = 256 << 20
	h, base := rc.alloc(t, size)
	rc.send(rpc.CmdGetTensor, rpc.GetTensorReq{Tensor: f32t(1, h, base, size/4), Size: size}.Encode())
	var first [64]byte
	io.ReadFull(rc.Conn, first[:])
	rc.Close()
	waitBound(t, w, 0, 5*time.Second)
	c := dial(t, w.addr)
	if err := c.Ping(context.Background()); err != nil {
		t.Fatalf("worker unusable after a peer closed mid-reply: %v", err)
	}
}

// An index tensor listed as a node but computed by nothing is still
// checked: its values are whatever the client uploaded.
func TestIndexListedAsNodeIsStillChecked(t *testing.T) {
	w := startWorker(t, Config{})
	rc := rawDial(t, w.addr, true)
	h, base := rc.alloc(t, 4096)
	src, ids := f32t(1, h, base, 4, 3), f32t(2, h, base+256, 2)
	ids.Type = tI32
	rc.send(rpc.CmdSetTensor, rpc.SetTensorReq{SetTensorHeader: rpc.SetTensorHeader{Tensor: ids}, Data: i32bytes(1, 7)}.Encode())
	d := f32t(3, h, base+512, 4, 2)
	d.Op, d.Src[0], d.Src[1] = rpc.OpGetRows, 1, 2
	rc.send(rpc.CmdGraphCompute, graphMsg([]uint64{2, 3}, src, ids, d))
	if !rc.closedByPeer(3 * time.Second) {
		t.Fatal("connection not closed")
	}
	waitConns(t, w, 0, 2*time.Second)
	evs := w.events.since(0)
	if last := evs[len(evs)-1]; last.Violation != "index" {
		t.Fatalf("ended with %+v, want an index violation", last)
	}
}
