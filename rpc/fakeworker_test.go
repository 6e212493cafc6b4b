package rpc

import (
	"bufio"
	"io"
	"math"
	"net"
	"sync"
	"testing"
)

// A small in-test worker built only from this package's framing functions
// and decoders. It keeps buffers in memory, computes F32 ADD graphs and can
// be told to misbehave.

type action int

const (
	pass   action = iota // handle normally
	reply                // send the given response payload
	hangup               // close the connection without replying
	stall                // never answer; wait until the client goes away
)

type fakeWorker struct {
	t       testing.TB
	ln      net.Listener
	version HelloResp
	devices uint32
	// hook, if set, runs for every request after HELLO.
	hook func(cmd Cmd, payload []byte) (action, []byte)

	mu    sync.Mutex
	conns map[net.Conn]bool
	cmds  []Cmd // every command received, in order
	wg    sync.WaitGroup
}

func startWorker(t testing.TB, version HelloResp) *fakeWorker {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	w := &fakeWorker{t: t, ln: ln, version: version, devices: 1, conns: map[net.Conn]bool{}}
	w.wg.Add(1)
	go w.accept()
	t.Cleanup(w.stop)
	return w
}

func (w *fakeWorker) addr() string { return w.ln.Addr().String() }

func (w *fakeWorker) stop() {
	w.ln.Close()
	w.mu.Lock()
	for c := range w.conns {
		c.Close()
	}
	w.mu.Unlock()
	w.wg.Wait()
}

func (w *fakeWorker) received() []Cmd {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]Cmd(nil), w.cmds...)
}

func (w *fakeWorker) accept() {
	defer w.wg.Done()
	for {
		c, err := w.ln.Accept()
		if err != nil {
			return
		}
		w.mu.Lock()
		w.conns[c] = true
		w.mu.Unlock()
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			defer func() {
				c.Close()
				w.mu.Lock()
				delete(w.conns, c)
				w.mu.Unlock()
			}()
			w.serve(c)
		}()
	}
}

type fakeBuffer struct {
	base uint64
	mem  []byte
}

type connState struct {
	buffers map[uint64]*fakeBuffer
	next    uint64
	graphs  map[uint32]GraphComputeReq
}

func (w *fakeWorker) serve(c net.Conn) {
	br := bufio.NewReaderSize(c, 1<<16)
	bw := bufio.NewWriterSize(c, 1<<16)
	st := &connState{buffers: map[uint64]*fakeBuffer{}, graphs: map[uint32]GraphComputeReq{}}
	respond := func(parts ...[]byte) bool {
		return WriteResponse(bw, parts...) == nil && bw.Flush() == nil
	}
	first := true
	for {
		cmd, size, err := ReadRequestHeader(br)
		if err != nil {
			return
		}
		if size > 1<<30 {
			return
		}
		payload := make([]byte, size)
		if _, err := io.ReadFull(br, payload); err != nil {
			return
		}
		w.mu.Lock()
		w.cmds = append(w.cmds, cmd)
		w.mu.Unlock()
		if first {
			first = false
			if _, err := DecodeRequest(cmd, payload, GraphLimits{}); err != nil || cmd != CmdHello {
				return
			}
			if !respond(w.version.Encode()) {
				return
			}
			continue
		}
		if w.hook != nil {
			act, resp := w.hook(cmd, payload)
			switch act {
			case reply:
				if !respond(resp) {
					return
				}
				continue
			case hangup:
				return
			case stall:
				io.Copy(io.Discard, br) // until the client closes
				return
			}
		}
		msg, err := DecodeRequest(cmd, payload, DefaultGraphLimits)
		if err != nil {
			return
		}
		if !w.handle(st, msg, cmd, respond) {
			return
		}
	}
}

// span returns the bytes [t.Data+off, +n) of t's buffer, or nil if out of
// range or the buffer is unknown.
func (st *connState) span(t *Tensor, off, n uint64) []byte {
	b := st.buffers[t.Buffer]
	if b == nil {
		return nil
	}
	d := t.Data + off - b.base
	if d > uint64(len(b.mem)) || n > uint64(len(b.mem))-d {
		return nil
	}
	return b.mem[d : d+n]
}

func (w *fakeWorker) handle(st *connState, msg Message, cmd Cmd, respond func(...[]byte) bool) bool {
	switch m := msg.(type) {
	case HelloReq:
		return false // second HELLO closes
	case DeviceCountReq:
		return respond(DeviceCountResp{w.devices}.Encode())
	case AllocBufferReq:
		if m.Device >= w.devices {
			return false
		}
		if m.Size > 1<<30 {
			return respond(AllocBufferResp{}.Encode())
		}
		st.next++
		h := 0x5555_0000_0000 + st.next*0x1000
		st.buffers[h] = &fakeBuffer{base: st.next << 32, mem: make([]byte, m.Size)}
		return respond(AllocBufferResp{Handle: h, Size: m.Size}.Encode())
	case DeviceReq:
		if m.Device >= w.devices {
			return false
		}
		switch cmd {
		case CmdGetAlignment:
			return respond(U64Resp{32}.Encode())
		case CmdGetMaxSize:
			return respond(U64Resp{math.MaxUint64}.Encode())
		case CmdGetDeviceMemory:
			return respond(DeviceMemoryResp{Free: 1 << 30, Total: 2 << 30}.Encode())
		case CmdGraphRecompute:
			g, ok := st.graphs[m.Device]
			return ok && st.compute(g)
		}
		return false
	case BufferReq:
		b := st.buffers[m.Handle]
		if b == nil {
			return false
		}
		if cmd == CmdBufferGetBase {
			return respond(U64Resp{b.base}.Encode())
		}
		delete(st.buffers, m.Handle)
		return respond()
	case BufferClearReq:
		b := st.buffers[m.Handle]
		if b == nil {
			return false
		}
		for i := range b.mem {
			b.mem[i] = m.Value
		}
		return respond()
	case SetTensorReq:
		dst := st.span(&m.Tensor, m.Offset, uint64(len(m.Data)))
		if dst == nil {
			return false
		}
		copy(dst, m.Data)
		return true
	case SetTensorHashReq:
		return respond(ResultResp{0}.Encode())
	case GetTensorReq:
		src := st.span(&m.Tensor, m.Offset, m.Size)
		if src == nil {
			return false
		}
		return respond(src)
	case CopyTensorReq:
		n, ok := m.Src.Nbytes()
		src, dst := st.span(&m.Src, 0, n), st.span(&m.Dst, 0, n)
		if !ok || src == nil || dst == nil {
			return false
		}
		copy(dst, src)
		return respond(ResultResp{1}.Encode())
	case GraphComputeReq:
		if m.Device >= w.devices || !st.compute(m) {
			return false
		}
		st.graphs[m.Device] = m
		return true
	case InitTensorReq:
		return respond()
	case GetAllocSizeReq:
		n, ok := m.Tensor.Nbytes()
		if !ok {
			return false
		}
		return respond(U64Resp{(n + 31) &^ 31}.Encode())
	}
	return false
}

// compute runs every node; only contiguous F32 ADD is supported.
func (st *connState) compute(g GraphComputeReq) bool {
	byID := map[uint64]*Tensor{}
	for i := range g.Tensors {
		byID[g.Tensors[i].ID] = &g.Tensors[i]
	}
	for _, id := range g.Nodes {
		n := byID[id]
		if n == nil || n.Op != 2 || n.Type != TypeF32 {
			return false
		}
		a, b := byID[n.Src[0]], byID[n.Src[1]]
		if a == nil || b == nil {
			return false
		}
		nb, _ := n.Nbytes()
		da, db, dc := st.span(a, 0, nb), st.span(b, 0, nb), st.span(n, 0, nb)
		if da == nil || db == nil || dc == nil {
			return false
		}
		for i := 0; i+4 <= len(dc); i += 4 {
			x := math.Float32frombits(le.Uint32(da[i:]))
			y := math.Float32frombits(le.Uint32(db[i:]))
			le.PutUint32(dc[i:], math.Float32bits(x+y))
		}
	}
	return true
}

func f32bytes(v ...float32) []byte {
	b := make([]byte, 0, 4*len(v))
	for _, x := range v {
		b = le.AppendUint32(b, math.Float32bits(x))
	}
	return b
}

func bytesF32(b []byte) []float32 {
	v := make([]float32, len(b)/4)
	for i := range v {
		v[i] = math.Float32frombits(le.Uint32(b[4*i:]))
	}
	return v
}
