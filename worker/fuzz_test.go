package worker

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"

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

// FuzzConnStream feeds arbitrary bytes to a real worker over a real socket.
// Whatever arrives, the worker must not crash, and once the connection ends
// everything it allocated must be freed.
func FuzzConnStream(f *testing.F) {
	f.Add(seedStream())
	full := seedStream()
	f.Add(full[:len(full)/2])
	f.Add(append(seedStream()[:9], 0x11, 0, 0, 0, 0, 0, 0, 0, 0))
	fuzzOnce.Do(func() {
		fuzzWorker = startWorker(f, Config{MaxMemory: 64 << 20, MaxGraphBytes: 1 << 20, Threads: 1})
	})
	w := fuzzWorker
	f.Fuzz(func(t *testing.T, stream []byte) {
		nc, err := net.Dial("tcp", w.addr)
		if err != nil {
			t.Fatal(err)
		}
		nc.SetDeadline(time.Now().Add(5 * time.Second))
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
	})
}
