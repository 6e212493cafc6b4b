package ggml

import (
	"os"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
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

// Prefault faults in every page of the buffer, in all its steps, the last
// partial one included, without anyone touching it.
func TestPrefaultFaultsInEveryPage(t *testing.T) {
	be, err := Open(cpuDevice(t), 1)
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	const size = 37<<20 + 12345 // not a multiple of the step or of a page
	buf, err := be.Alloc(size)
	if err != nil {
		t.Fatal(err)
	}
	defer buf.Free()
	buf.Zero()
	b := buf.HostBytes(0, buf.Size())
	page := uintptr(os.Getpagesize())
	base := uintptr(unsafe.Pointer(&b[0]))
	lo := (base + page - 1) &^ (page - 1)
	hi := (base + uintptr(len(b))) &^ (page - 1)
	resident := func() int {
		vec := make([]byte, int((hi-lo)/page))
		_, _, e := unix.Syscall(unix.SYS_MINCORE, lo, hi-lo, uintptr(unsafe.Pointer(&vec[0])))
		if e != 0 {
			t.Fatal(e)
		}
		n := 0
		for _, v := range vec {
			n += int(v & 1)
		}
		return n
	}
	pages := int((hi - lo) / page)
	if r := resident(); r == pages {
		t.Fatalf("all %d pages resident before Prefault: the test shows nothing", pages)
	}
	buf.Prefault()
	deadline := time.Now().Add(20 * time.Second)
	for resident() < pages {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d pages resident 20 s after Prefault", resident(), pages)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
