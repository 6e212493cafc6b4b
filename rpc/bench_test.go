package rpc

import (
	"bufio"
	"context"
	"io"
	"net"
	"testing"
)

// sinkWorker answers HELLO and DEVICE_COUNT, discards SET_TENSOR data and
// answers GET_TENSOR with zeros, reading the payload straight off the socket.
func sinkWorker(b *testing.B) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReaderSize(c, 1<<16)
				zeros := make([]byte, 1<<20)
				for {
					cmd, n, err := ReadRequestHeader(br)
					if err != nil {
						return
					}
					switch cmd {
					case CmdHello:
						WriteResponse(c, HelloResp{3, 6, 0}.Encode())
					case CmdDeviceCount:
						WriteResponse(c, DeviceCountResp{1}.Encode())
					case CmdSetTensor:
						if _, err := io.CopyN(io.Discard, br, int64(n)); err != nil {
							return
						}
					case CmdGetTensor:
						p := make([]byte, n)
						io.ReadFull(br, p)
						req, _ := DecodeGetTensor(p)
						var hdr [8]byte
						le.PutUint64(hdr[:], req.Size)
						c.Write(hdr[:])
						for left := req.Size; left > 0; {
							k := min(left, uint64(len(zeros)))
							c.Write(zeros[:k])
							left -= k
						}
					default:
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

const benchSize = 64 << 20

// BenchmarkSetTensor64MiB measures SET_TENSOR of 64 MiB followed by a
// DEVICE_COUNT round trip (so the worker has read everything).
func BenchmarkSetTensor64MiB(b *testing.B) {
	addr := sinkWorker(b)
	c, err := Dial(context.Background(), addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	data := make([]byte, benchSize)
	ctx := context.Background()
	b.SetBytes(benchSize)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := c.SetTensor(ctx, Tensor{}, 0, data); err != nil {
			b.Fatal(err)
		}
		if err := c.Ping(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGetTensor64MiB measures GET_TENSOR of 64 MiB into a reused slice.
func BenchmarkGetTensor64MiB(b *testing.B) {
	addr := sinkWorker(b)
	c, err := Dial(context.Background(), addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	dst := make([]byte, benchSize)
	ctx := context.Background()
	b.SetBytes(benchSize)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := c.GetTensorInto(ctx, dst, Tensor{}, 0); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRawLoopback64MiB is the baseline: 64 MiB written on a plain
// loopback TCP connection to a reader that discards it, then a 1-byte ack.
func BenchmarkRawLoopback64MiB(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		for {
			if _, err := io.CopyN(io.Discard, c, benchSize); err != nil {
				return
			}
			c.Write([]byte{1})
		}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	data := make([]byte, benchSize)
	var ack [1]byte
	b.SetBytes(benchSize)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.Write(data); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, ack[:]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSmallRoundTrip measures one DEVICE_COUNT round trip (latency).
func BenchmarkSmallRoundTrip(b *testing.B) {
	addr := sinkWorker(b)
	c, err := Dial(context.Background(), addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if err := c.Ping(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
