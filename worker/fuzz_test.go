package worker

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/boxproj/box/api"
	"github.com/boxproj/box/rpc"
)

var (
	fuzzOnce   sync.Once
	fuzzWorker *testWorker
)

// seedStream is valid traffic: what a head sends to load and run a graph.
func seedStream() []byte {
	var b []byte
	frame := func(cmd rpc.Cmd, p []byte) { b = append(rpc.AppendRequestHeader(b, cmd, uint64(len(p))), p...) }
	frame(rpc.CmdHello, nil)
	frame(rpc.CmdDeviceCount, nil)
	frame(rpc.CmdGetAlignment, rpc.DeviceReq{}.Encode())
	frame(rpc.CmdGetDeviceMemory, rpc.DeviceReq{}.Encode())
	frame(rpc.CmdAllocBuffer, rpc.AllocBufferReq{Size: 1024}.Encode())
	frame(rpc.CmdBufferGetBase, rpc.BufferReq{Handle: 1}.Encode())
	// Buffers of a connection start at 1<<40 with handle 1.
	const base = 1 << 40
	a, bb := f32t(0x1000, 1, base, 4), f32t(0x2000, 1, base+16, 4)
	sum := f32t(0x3000, 1, base+32, 4)
	sum.Op, sum.Src[0], sum.Src[1] = rpc.OpAdd, 0x1000, 0x2000
	frame(rpc.CmdSetTensor, rpc.SetTensorReq{SetTensorHeader: rpc.SetTensorHeader{Tensor: a}, Data: f32bytes([]float32{1, 2, 3, 4})}.Encode())
	frame(rpc.CmdSetTensor, rpc.SetTensorReq{SetTensorHeader: rpc.SetTensorHeader{Tensor: bb}, Data: f32bytes([]float32{10, 20, 30, 40})}.Encode())
	frame(rpc.CmdGraphCompute, graphMsg([]uint64{0x3000}, a, bb, sum))
	frame(rpc.CmdGetTensor, rpc.GetTensorReq{Tensor: sum, Size: 16}.Encode())
	frame(rpc.CmdGraphRecompute, rpc.DeviceReq{}.Encode())
	frame(rpc.CmdCopyTensor, rpc.CopyTensorReq{Src: sum, Dst: a}.Encode())
	frame(rpc.CmdBufferClear, rpc.BufferClearReq{Handle: 1, Value: 7}.Encode())
	frame(rpc.CmdInitTensor, rpc.InitTensorReq{Tensor: a}.Encode())
	frame(rpc.CmdGetAllocSize, rpc.GetAllocSizeReq{Tensor: sum}.Encode())
	frame(rpc.CmdFreeBuffer, rpc.BufferReq{Handle: 1}.Encode())
	return b
}

// attackStreams are the messages that once aborted a compute process (see
// TestAttacksEndOnlyTheirConnection), kept as seeds.
func attackStreams() [][]byte {
	var out [][]byte
	start := func() []byte {
		var b []byte
		b = rpc.AppendRequestHeader(b, rpc.CmdHello, 0)
		p := rpc.AllocBufferReq{Size: 1 << 16}.Encode()
		return append(rpc.AppendRequestHeader(b, rpc.CmdAllocBuffer, uint64(len(p))), p...)
	}
	frame := func(b []byte, cmd rpc.Cmd, p []byte) []byte {
		return append(rpc.AppendRequestHeader(b, cmd, uint64(len(p))), p...)
	}
	const base = 1 << 40
	// GET_ROWS whose checked index an earlier DUP overwrites.
	emb, idx, bad := f32t(1, 1, base, 4, 2), i32t(2, 1, base+64, 1), i32t(3, 1, base+128, 1)
	over := i32t(4, 1, base+64, 1)
	over.Op, over.Src[0] = rpc.OpDup, 3
	rows := f32t(5, 1, base+256, 4, 1)
	rows.Op, rows.Src[0], rows.Src[1] = rpc.OpGetRows, 1, 2
	b := frame(start(), rpc.CmdSetTensor, rpc.SetTensorReq{SetTensorHeader: rpc.SetTensorHeader{Tensor: bad}, Data: []byte{0, 0, 16, 0}}.Encode())
	out = append(out, frame(b, rpc.CmdGraphCompute, graphMsg([]uint64{4, 5}, emb, idx, bad, over, rows)))
	// MUL_MAT with overlapping src0 rows.
	a, x, y := f32t(1, 1, base, 64, 4), f32t(2, 1, base+4096, 64, 1), f32t(3, 1, base+8192, 4, 1)
	a.NB[1] = 4
	y.Op, y.Src[0], y.Src[1] = rpc.OpMulMat, 1, 2
	out = append(out, frame(start(), rpc.CmdGraphCompute, graphMsg([]uint64{3}, a, x, y)))
	return out
}

// FuzzConnStream feeds arbitrary bytes to a real worker (a supervisor and
// its compute processes, with the cache on) over a real socket. Whatever
// arrives, no compute process may crash, and once the connection ends
// everything it allocated must be given back.
func FuzzConnStream(f *testing.F) {
	f.Add(seedStream())
	full := seedStream()
	f.Add(full[:len(full)/2])
	f.Add(append(seedStream()[:9], 0x11, 0, 0, 0, 0, 0, 0, 0, 0))
	for _, s := range attackStreams() {
		f.Add(s)
	}
	fuzzOnce.Do(func() {
		fuzzWorker = startWorker(f, Config{MaxMemory: 64 << 20, MaxGraphBytes: 1 << 20, Threads: 1, CacheDir: f.TempDir()})
	})
	w := fuzzWorker
	f.Fuzz(func(t *testing.T, stream []byte) {
		nc, err := net.Dial("tcp", w.addr)
		if err != nil {
			t.Fatal(err)
		}
		nc.SetDeadline(time.Now().Add(5 * time.Second))
		local := nc.LocalAddr().String()
		// Reset instead of FIN on close: thousands of runs a second would
		// otherwise fill the port range with TIME_WAIT sockets.
		nc.(*net.TCPConn).SetLinger(0)
		go func() {
			nc.Write(stream)
			nc.(*net.TCPConn).CloseWrite()
		}()
		io.Copy(io.Discard, nc)
		nc.Close()
		waitConns(t, w, 0, 5*time.Second)
		if b := w.BoundBytes(); b != 0 {
			t.Fatalf("%d bytes still bound after the connection ended", b)
		}
		for _, e := range w.events.since(0) {
			if e.Kind == api.EventCrashed && e.Peer == local {
				t.Fatalf("the compute process crashed: %s", e.Detail)
			}
		}
	})
}
