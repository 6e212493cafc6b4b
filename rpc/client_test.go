package rpc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func dialWorker(t testing.TB, w *fakeWorker, opts ...DialOption) *Client {
	t.Helper()
	c, err := Dial(testCtx(t), w.addr(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestClientHelloAndSmallCommands(t *testing.T) {
	w := startWorker(t, HelloResp{3, 6, 0})
	w.devices = 2
	c := dialWorker(t, w)
	ctx := testCtx(t)

	if c.Addr() != w.addr() {
		t.Errorf("Addr %q", c.Addr())
	}
	if ma, mi, pa := c.Version(); ma != 3 || mi != 6 || pa != 0 {
		t.Errorf("Version %d.%d.%d", ma, mi, pa)
	}
	if n, err := c.DeviceCount(ctx); err != nil || n != 2 {
		t.Fatalf("DeviceCount %d %v", n, err)
	}
	if err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	if a, err := c.GetAlignment(ctx, 1); err != nil || a != 32 {
		t.Errorf("GetAlignment %d %v", a, err)
	}
	if m, err := c.GetMaxSize(ctx, 0); err != nil || m != math.MaxUint64 {
		t.Errorf("GetMaxSize %d %v", m, err)
	}
	if f, tot, err := c.GetDeviceMemory(ctx, 0); err != nil || f != 1<<30 || tot != 2<<30 {
		t.Errorf("GetDeviceMemory %d %d %v", f, tot, err)
	}
	h, size, err := c.AllocBuffer(ctx, 0, 1024)
	if err != nil || h == 0 || size != 1024 {
		t.Fatalf("AllocBuffer %x %d %v", h, size, err)
	}
	if h0, s0, err := c.AllocBuffer(ctx, 0, 1<<62); err != nil || h0 != 0 || s0 != 0 {
		t.Errorf("failed allocation: %x %d %v", h0, s0, err)
	}
	base, err := c.BufferGetBase(ctx, h)
	if err != nil || base == 0 {
		t.Fatalf("BufferGetBase %x %v", base, err)
	}
	if err := c.BufferClear(ctx, h, 0x7f); err != nil {
		t.Fatal(err)
	}
	tn := Tensor{ID: 1, Type: TypeF32, Buffer: h, NE: [4]uint32{256, 1, 1, 1}, NB: [4]uint32{4, 1024, 1024, 1024}, Data: base}
	got, err := c.GetTensor(ctx, tn, 1000, 24)
	if err != nil || !bytes.Equal(got, bytes.Repeat([]byte{0x7f}, 24)) {
		t.Fatalf("GetTensor after clear: %x %v", got, err)
	}
	if err := c.InitTensor(ctx, tn); err != nil {
		t.Fatal(err)
	}
	q := Tensor{ID: 2, Type: TypeQ4_0, NE: [4]uint32{100, 1, 1, 1}, NB: [4]uint32{18, 54, 54, 54}}
	if n, err := c.GetAllocSize(ctx, 0, q, []Tensor{tn}); err != nil || n != 64 {
		t.Errorf("GetAllocSize %d %v", n, err)
	}
	if _, err := c.GetAllocSize(ctx, 0, q, make([]Tensor, 11)); err == nil {
		t.Error("11 sources accepted")
	}
	if ok, err := c.SetTensorHash(ctx, tn, 0, 1234); err != nil || ok {
		t.Errorf("SetTensorHash %v %v", ok, err)
	}
	// Copy the first half of the buffer onto the second half.
	if err := c.SetTensor(ctx, tn, 0, bytes.Repeat([]byte{1}, 512)); err != nil {
		t.Fatal(err)
	}
	src := tn
	src.NE[0] = 128
	dst := src
	dst.Data = base + 512
	if ok, err := c.CopyTensor(ctx, src, dst); err != nil || !ok {
		t.Fatalf("CopyTensor %v %v", ok, err)
	}
	into := make([]byte, 16)
	if err := c.GetTensorInto(ctx, into, tn, 1008); err != nil || !bytes.Equal(into, bytes.Repeat([]byte{1}, 16)) {
		t.Fatalf("GetTensorInto %x %v", into, err)
	}
	if err := c.FreeBuffer(ctx, h); err != nil {
		t.Fatal(err)
	}
	if err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	// The first HELLO is the 4.0 one, which this 3.6.0 worker refuses by
	// closing; Dial then asks the 3.6 way.
	want := []Cmd{CmdHello, CmdHello, CmdDeviceCount, CmdDeviceCount, CmdGetAlignment, CmdGetMaxSize, CmdGetDeviceMemory,
		CmdAllocBuffer, CmdAllocBuffer, CmdBufferGetBase, CmdBufferClear, CmdGetTensor, CmdInitTensor,
		CmdGetAllocSize, CmdSetTensorHash, CmdSetTensor, CmdCopyTensor, CmdGetTensor, CmdFreeBuffer, CmdDeviceCount}
	if got := w.received(); !reflect.DeepEqual(got, want) {
		t.Errorf("worker saw %v\nwant %v", got, want)
	}
}

// TestClientSpecSequence runs the §12 sequence: c = a + b, then recompute.
func TestClientSpecSequence(t *testing.T) {
	w := startWorker(t, HelloResp{3, 6, 0})
	c := dialWorker(t, w)
	ctx := testCtx(t)

	h, _, err := c.AllocBuffer(ctx, 0, 1024)
	if err != nil {
		t.Fatal(err)
	}
	base, err := c.BufferGetBase(ctx, h)
	if err != nil {
		t.Fatal(err)
	}
	g := specGraph(base)
	for i := range g.Tensors {
		g.Tensors[i].Buffer = h
	}
	a, b, ct := g.Tensors[0], g.Tensors[1], g.Tensors[2]
	if err := c.SetTensor(ctx, a, 0, f32bytes(1, 2, 3, 4)); err != nil {
		t.Fatal(err)
	}
	if err := c.SetTensor(ctx, b, 0, f32bytes(10, 20, 30, 40)); err != nil {
		t.Fatal(err)
	}
	if err := c.GraphCompute(ctx, 0, g.Nodes, g.Tensors); err != nil {
		t.Fatal(err)
	}
	out, err := c.GetTensor(ctx, ct, 0, 16)
	if err != nil {
		t.Fatal(err)
	}
	if got := bytesF32(out); !reflect.DeepEqual(got, []float32{11, 22, 33, 44}) {
		t.Fatalf("c = %v", got)
	}
	if err := c.SetTensor(ctx, a, 0, f32bytes(100, 200, 300, 400)); err != nil {
		t.Fatal(err)
	}
	if err := c.GraphRecompute(ctx, 0); err != nil {
		t.Fatal(err)
	}
	out, err = c.GetTensor(ctx, ct, 0, 16)
	if err != nil {
		t.Fatal(err)
	}
	if got := bytesF32(out); !reflect.DeepEqual(got, []float32{110, 220, 330, 440}) {
		t.Fatalf("after recompute c = %v", got)
	}
}

func TestClientVersionRefused(t *testing.T) {
	// 4.0.0 answering an empty HELLO in 3 bytes is no real server either.
	for _, v := range []HelloResp{{4, 0, 0}, {3, 5, 0}, {3, 6, 9}, {2, 0, 0}} {
		t.Run(fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Patch), func(t *testing.T) {
			w := startWorker(t, v)
			c, err := Dial(testCtx(t), w.addr())
			if err == nil {
				c.Close()
				t.Fatal("accepted")
			}
			var ve *VersionError
			if !errors.As(err, &ve) {
				t.Fatalf("err %T %v, want *VersionError", err, err)
			}
			if ve.Addr != w.addr() || ve.Major != v.Major || ve.Minor != v.Minor || ve.Patch != v.Patch {
				t.Errorf("VersionError %+v", ve)
			}
			msg := err.Error()
			for _, want := range []string{w.addr(), fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Patch), "3.6.0", "box worker", "rpc-server"} {
				if !strings.Contains(msg, want) {
					t.Errorf("message %q lacks %q", msg, want)
				}
			}
		})
	}
}

// A server that drops the connection at HELLO (what a 4.x server does with
// a 3.x HELLO) or answers with the wrong size.
func TestClientHelloFailures(t *testing.T) {
	tests := []struct {
		name  string
		serve func(net.Conn)
	}{
		{"closes", func(c net.Conn) { ReadRequestHeader(c) }},
		{"reply size", func(c net.Conn) {
			ReadRequestHeader(c)
			WriteResponse(c, append([]byte{4, 0, 0, 0}, make([]byte, 6)...))
		}},
		{"garbage", func(c net.Conn) { c.Write([]byte("HTTP/1.1 400 Bad Request\r\n\r\n")) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					tc.serve(c)
					c.Close()
				}
			}()
			_, err = Dial(testCtx(t), ln.Addr().String())
			pe, ok := IsProtocolError(err)
			if !ok || pe.Kind != KindHello || pe.Cmd != CmdHello {
				t.Fatalf("err %v, want hello ProtocolError", err)
			}
		})
	}
}

func TestClientHelloTimeout(t *testing.T) {
	// Like a reference rpc-server busy with another client: the connection
	// is accepted (by the kernel) but HELLO is never answered.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	start := time.Now()
	_, err = Dial(context.Background(), ln.Addr().String(), WithHandshakeTimeout(200*time.Millisecond))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v, want deadline exceeded", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("took %v", time.Since(start))
	}
}

func TestClientWrongResponseSize(t *testing.T) {
	tests := []struct {
		name string
		call func(ctx context.Context, c *Client) error
		cmd  Cmd
	}{
		{"GET_ALIGNMENT 4 bytes", func(ctx context.Context, c *Client) error { _, err := c.GetAlignment(ctx, 0); return err }, CmdGetAlignment},
		{"FREE_BUFFER non-empty", func(ctx context.Context, c *Client) error { return c.FreeBuffer(ctx, 1) }, CmdFreeBuffer},
		{"GET_TENSOR short", func(ctx context.Context, c *Client) error {
			_, err := c.GetTensor(ctx, Tensor{}, 0, 8)
			return err
		}, CmdGetTensor},
		{"DEVICE_COUNT 8 bytes", func(ctx context.Context, c *Client) error { _, err := c.DeviceCount(ctx); return err }, CmdDeviceCount},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := startWorker(t, HelloResp{3, 6, 0})
			w.hook = func(cmd Cmd, p []byte) (action, []byte) {
				if cmd == CmdDeviceCount {
					return reply, make([]byte, 8)
				}
				return reply, make([]byte, 4)
			}
			c := dialWorker(t, w)
			ctx := testCtx(t)
			err := tc.call(ctx, c)
			pe, ok := IsProtocolError(err)
			if !ok || pe.Kind != KindSize || pe.Cmd != tc.cmd {
				t.Fatalf("err %v, want size ProtocolError for %v", err, tc.cmd)
			}
			if !strings.Contains(err.Error(), w.addr()) {
				t.Errorf("error %q lacks the address", err)
			}
			// The client is now closed.
			if err := c.Ping(ctx); !errors.Is(err, ErrClosed) {
				t.Errorf("after protocol error: %v, want ErrClosed", err)
			}
		})
	}
}

func TestClientServerHangup(t *testing.T) {
	w := startWorker(t, HelloResp{3, 6, 0})
	w.hook = func(cmd Cmd, p []byte) (action, []byte) {
		if cmd == CmdGraphRecompute {
			return hangup, nil // like a reference server with no stored graph
		}
		return pass, nil
	}
	c := dialWorker(t, w)
	ctx := testCtx(t)
	// Fire-and-forget: the failure shows only at the next call with a reply.
	if err := c.GraphRecompute(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if err := c.Ping(ctx); err == nil {
		t.Fatal("ping after hangup succeeded")
	}
	if err := c.Ping(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("second ping: %v", err)
	}
}

func TestClientContext(t *testing.T) {
	stallOn := func(w *fakeWorker) {
		w.hook = func(cmd Cmd, p []byte) (action, []byte) {
			if cmd == CmdGetDeviceMemory {
				return stall, nil
			}
			return pass, nil
		}
	}

	t.Run("cancel mid-call closes", func(t *testing.T) {
		w := startWorker(t, HelloResp{3, 6, 0})
		stallOn(w)
		c := dialWorker(t, w)
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(50*time.Millisecond, cancel)
		start := time.Now()
		_, _, err := c.GetDeviceMemory(ctx, 0)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err %v, want context.Canceled", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("cancel took %v", d)
		}
		if err := c.Ping(testCtx(t)); !errors.Is(err, ErrClosed) {
			t.Errorf("after cancel: %v, want ErrClosed", err)
		}
	})

	t.Run("deadline mid-call closes", func(t *testing.T) {
		w := startWorker(t, HelloResp{3, 6, 0})
		stallOn(w)
		c := dialWorker(t, w)
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		_, _, err := c.GetDeviceMemory(ctx, 0)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err %v, want DeadlineExceeded", err)
		}
		if err := c.Ping(testCtx(t)); !errors.Is(err, ErrClosed) {
			t.Errorf("after deadline: %v, want ErrClosed", err)
		}
	})

	t.Run("already cancelled leaves the client usable", func(t *testing.T) {
		w := startWorker(t, HelloResp{3, 6, 0})
		c := dialWorker(t, w)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := c.Ping(ctx); !errors.Is(err, context.Canceled) {
			t.Fatalf("err %v", err)
		}
		if err := c.Ping(testCtx(t)); err != nil {
			t.Fatalf("client unusable: %v", err)
		}
	})

	t.Run("deadline not reached, later calls fine", func(t *testing.T) {
		w := startWorker(t, HelloResp{3, 6, 0})
		c := dialWorker(t, w)
		for i := 0; i < 50; i++ {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err := c.Ping(ctx)
			cancel() // cancel right after: must not poison the next call
			if err != nil {
				t.Fatal(err)
			}
		}
		// A call without a deadline after calls with one.
		if err := c.Ping(context.Background()); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("Close interrupts a call", func(t *testing.T) {
		w := startWorker(t, HelloResp{3, 6, 0})
		stallOn(w)
		c := dialWorker(t, w)
		time.AfterFunc(50*time.Millisecond, func() { c.Close() })
		_, _, err := c.GetDeviceMemory(context.Background(), 0)
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("err %v, want ErrClosed", err)
		}
		if err := c.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
	})
}

func TestClientConcurrent(t *testing.T) {
	w := startWorker(t, HelloResp{3, 6, 0})
	c := dialWorker(t, w)
	ctx := testCtx(t)
	const n, size = 8, 64 << 10
	h, _, err := c.AllocBuffer(ctx, 0, n*size)
	if err != nil {
		t.Fatal(err)
	}
	base, _ := c.BufferGetBase(ctx, h)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for g := 0; g < n; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tn := Tensor{Type: TypeI8, Buffer: h, NE: [4]uint32{size, 1, 1, 1}, NB: [4]uint32{1, size, size, size}, Data: base + uint64(g*size)}
			for i := 0; i < 20; i++ {
				data := bytes.Repeat([]byte{byte(g*31 + i)}, size)
				if err := c.SetTensor(ctx, tn, 0, data); err != nil {
					errs <- err
					return
				}
				got, err := c.GetTensor(ctx, tn, 0, size)
				if err != nil {
					errs <- err
					return
				}
				if !bytes.Equal(got, data) {
					errs <- fmt.Errorf("goroutine %d round %d: data mismatch", g, i)
					return
				}
				if err := c.Ping(ctx); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestClientLargeTensor(t *testing.T) {
	w := startWorker(t, HelloResp{3, 6, 0})
	c := dialWorker(t, w)
	ctx := testCtx(t)
	const size = 64 << 20
	h, _, err := c.AllocBuffer(ctx, 0, size)
	if err != nil {
		t.Fatal(err)
	}
	base, _ := c.BufferGetBase(ctx, h)
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i * 7)
	}
	tn := Tensor{Type: TypeI8, Buffer: h, NE: [4]uint32{size, 1, 1, 1}, NB: [4]uint32{1, size, size, size}, Data: base}
	// SetTensorCached: over the threshold it offers the hash first (the fake
	// worker has no cache and says 0), then sends the data.
	sent, err := c.SetTensorCached(ctx, tn, 0, data)
	if err != nil || !sent {
		t.Fatalf("SetTensorCached %v %v", sent, err)
	}
	got := make([]byte, size)
	if err := c.GetTensorInto(ctx, got, tn, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("64 MiB round trip differs")
	}
	// Small data goes without the hash.
	if sent, err := c.SetTensorCached(ctx, tn, 0, data[:100]); err != nil || !sent {
		t.Fatal(sent, err)
	}
	if err := c.Ping(ctx); err != nil { // the worker has now read everything
		t.Fatal(err)
	}
	cmds := w.received()
	want := []Cmd{CmdSetTensorHash, CmdSetTensor, CmdGetTensor, CmdSetTensor, CmdDeviceCount}
	if got := cmds[len(cmds)-5:]; !reflect.DeepEqual(got, want) {
		t.Errorf("commands %v, want %v", got, want)
	}
}

func TestClientSetTensorCachedHit(t *testing.T) {
	w := startWorker(t, HelloResp{3, 6, 0})
	data := make([]byte, HashThreshold+1)
	w.hook = func(cmd Cmd, p []byte) (action, []byte) {
		if cmd == CmdSetTensorHash {
			r, err := DecodeSetTensorHash(p)
			if err == nil && r.Hash == FNV1a64(data) && r.Offset == 5 {
				return reply, []byte{1}
			}
		}
		return pass, nil
	}
	c := dialWorker(t, w)
	sent, err := c.SetTensorCached(testCtx(t), Tensor{}, 5, data)
	if err != nil || sent {
		t.Fatalf("sent=%v err=%v, want cache hit", sent, err)
	}
	if cmds := w.received(); cmds[len(cmds)-1] != CmdSetTensorHash {
		t.Errorf("commands %v", cmds)
	}
}

func TestDialRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, err = Dial(testCtx(t), addr)
	if err == nil || !strings.Contains(err.Error(), addr) {
		t.Fatalf("err %v", err)
	}
}
