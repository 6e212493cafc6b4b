package worker

import (
	"context"
	"testing"

	"github.com/boxproj/box/rpc"
)

// What a connection costs to open: answered by the supervisor alone (the
// device questions llama.cpp's client asks on its many short connections),
// and with a compute process started for its first allocation.
func BenchmarkConnection(b *testing.B) {
	w := startWorker(b, Config{})
	ctx := context.Background()
	b.Run("device-questions", func(b *testing.B) {
		for b.Loop() {
			c, err := rpc.Dial(ctx, w.addr)
			if err != nil {
				b.Fatal(err)
			}
			if _, _, err := c.GetDeviceMemory(ctx, 0); err != nil {
				b.Fatal(err)
			}
			c.Close()
		}
	})
	b.Run("first-alloc", func(b *testing.B) {
		for b.Loop() {
			c, err := rpc.Dial(ctx, w.addr)
			if err != nil {
				b.Fatal(err)
			}
			if h, _, err := c.AllocBuffer(ctx, 0, 4096); err != nil || h == 0 {
				b.Fatal(err)
			}
			c.Close()
		}
	})
	b.Run("alloc-free-in-process", func(b *testing.B) {
		c, err := rpc.Dial(ctx, w.addr)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		for b.Loop() {
			h, _, err := c.AllocBuffer(ctx, 0, 4096)
			if err != nil || h == 0 {
				b.Fatal(err)
			}
			c.FreeBuffer(ctx, h)
		}
	})
}
