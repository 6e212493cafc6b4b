package ggml

import (
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
