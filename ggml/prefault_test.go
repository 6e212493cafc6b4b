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

// cpuBuffer allocates size bytes on the CPU backend, freed at the end of
// the test.
func cpuBuffer(t *testing.T, size uint64) *Buffer {
	t.Helper()
	be, err := Open(cpuDevice(t), 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(be.Close)
	buf, err := be.Alloc(size)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(buf.Free)
	return buf
}

// Prefault keeps what the buffer holds, while it runs and after.
func TestPrefaultKeepsContents(t *testing.T) {
	buf := cpuBuffer(t, 64<<20)
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

// residentPages counts the whole pages of buf's memory that are resident,
// and how many there are.
func residentPages(t *testing.T, buf *Buffer) (resident, pages int) {
	t.Helper()
	b := buf.HostBytes(0, buf.Size())
	page := uintptr(os.Getpagesize())
	base := uintptr(unsafe.Pointer(&b[0]))
	lo := (base + page - 1) &^ (page - 1)
	hi := (base + uintptr(len(b))) &^ (page - 1)
	vec := make([]byte, int((hi-lo)/page))
	_, _, e := unix.Syscall(unix.SYS_MINCORE, lo, hi-lo, uintptr(unsafe.Pointer(&vec[0])))
	if e != 0 {
		t.Fatal(e)
	}
	for _, v := range vec {
		resident += int(v & 1)
	}
	return resident, len(vec)
}

func freshBuffer(t *testing.T, size uint64) *Buffer {
	t.Helper()
	buf := cpuBuffer(t, size)
	buf.Zero()
	if r, n := residentPages(t, buf); r == n {
		t.Fatalf("all %d pages resident before Prefault: the test shows nothing", n)
	}
	return buf
}

// Prefault faults in every page of the buffer, in all its steps, the last
// partial one included, without anyone touching it.
func TestPrefaultFaultsInEveryPage(t *testing.T) {
	buf := freshBuffer(t, 37<<20+12345) // not a multiple of the step or of a page
	buf.Prefault()
	deadline := time.Now().Add(20 * time.Second)
	for {
		r, n := residentPages(t, buf)
		if r == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d pages resident 20 s after Prefault", r, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// StopPrefault ends the prefault early, and once it returns no page is
// faulted in any more (pages mapped over then stay as they are mapped).
func TestStopPrefault(t *testing.T) {
	buf := freshBuffer(t, 256<<20)
	buf.Prefault()
	buf.StopPrefault()
	r, n := residentPages(t, buf)
	if r == n {
		t.Fatalf("all %d pages resident: the prefault did not stop early", n)
	}
	time.Sleep(300 * time.Millisecond)
	if r2, _ := residentPages(t, buf); r2 != r {
		t.Fatalf("%d pages resident when StopPrefault returned, %d later", r, r2)
	}
	buf.StopPrefault() // again: no-op
}
