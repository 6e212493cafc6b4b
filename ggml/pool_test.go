package ggml

import (
	"os"
	"testing"
	"time"
)

func cpuDevice(t *testing.T) Device {
	t.Helper()
	for _, d := range Devices() {
		if d.Name == "CPU" {
			return d
		}
	}
	t.Fatal("no CPU device")
	return Device{}
}

func threadIDs(t *testing.T) map[string]bool {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, e := range ents {
		out[e.Name()] = true
	}
	return out
}

// A CPU backend keeps one pool of threads from its first graph across
// every graph, and Close ends them.
func TestCPUBackendOwnsItsThreads(t *testing.T) {
	before := threadIDs(t)
	be, err := Open(cpuDevice(t), 6)
	if err != nil {
		t.Fatal(err)
	}
	buf, err := be.Alloc(3 * 4096)
	if err != nil {
		t.Fatal(err)
	}
	defer buf.Free()
	const f32, opAdd = 0, 2 // GGML_TYPE_F32, GGML_OP_ADD
	spec := func(i int) TensorSpec {
		s := TensorSpec{Type: f32, NE: [4]int64{1024, 1, 1, 1}, NB: [4]uint64{4, 4096, 4096, 4096}, Src: [10]int32{-1, -1, -1, -1, -1, -1, -1, -1, -1, -1}, ViewSrc: -1, Buffer: buf, Offset: uint64(i) * 4096}
		return s
	}
	sum := spec(2)
	sum.Op, sum.Src[0], sum.Src[1] = opAdd, 0, 1
	g, err := be.BuildGraph([]TensorSpec{spec(0), spec(1), sum}, []int32{2})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Free()
	if err := be.Compute(g); err != nil {
		t.Fatal(err)
	}
	var pool []string
	for id := range threadIDs(t) {
		if !before[id] {
			pool = append(pool, id)
		}
	}
	if len(pool) < 5 {
		t.Fatalf("%d new threads after the first graph, want the pool's 5", len(pool))
	}
	for i := 0; i < 10; i++ {
		if err := be.Compute(g); err != nil {
			t.Fatal(err)
		}
	}
	now := threadIDs(t)
	for _, id := range pool {
		if !now[id] {
			t.Fatalf("thread %s is gone after ten more graphs: threads made per graph", id)
		}
	}
	g.Free()
	buf.Free()
	be.Close()
	left := 0
	now = threadIDs(t)
	for _, id := range pool {
		if now[id] {
			left++
		}
	}
	if left > len(pool)-5 {
		t.Fatalf("%d of the backend's %d threads outlived Close", left, len(pool))
	}
}

// Prefault keeps what the buffer holds, while it runs and after.
func TestPrefaultKeepsContents(t *testing.T) {
	be, err := Open(cpuDevice(t), 1)
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	buf, err := be.Alloc(64 << 20)
	if err != nil {
		t.Fatal(err)
	}
	defer buf.Free()
	buf.Zero()
	buf.Prefault()
	b := buf.HostBytes(0, buf.Size())
	for i := 0; i < len(b); i += 4096 {
		b[i] = byte(i >> 12)
	}
	time.Sleep(200 * time.Millisecond)
	for i := 0; i < len(b); i += 4096 {
		if b[i] != byte(i>>12) {
			t.Fatalf("byte %d is %#x, was written %#x", i, b[i], byte(i>>12))
		}
	}
}
