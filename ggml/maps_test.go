package ggml

import (
	"os"
	"path/filepath"
	"testing"
)

func TestOwnMapping(t *testing.T) {
	const maps = `55d0c0a00000-55d0c0c21000 rw-p 00000000 00:00 0                          [heap]
7f0000000000-7f0010001000 rw-p 00000000 00:00 0 
7f0020000000-7f0030000000 rw-p 00000000 00:00 0 
7f0040000000-7f0040100000 r--p 00000000 fd:01 1234                       /usr/lib/libc.so.6
7f0050000000-7f0050101000 r--p 00000000 00:00 0 
`
	path := filepath.Join(t.TempDir(), "maps")
	if err := os.WriteFile(path, []byte(maps), 0o644); err != nil {
		t.Fatal(err)
	}
	const page = 4096
	tests := []struct {
		name       string
		base, size uintptr
		want       bool
	}{
		{"a large allocation's own mapping", 0x7f0000000040, 0x10000000, true},
		{"the same, its tail up to the last page", 0x7f0000000040, 0x10000fc0, true},
		{"runs past the mapping", 0x7f0000000040, 0x10001000, false},
		{"starts a page or more into it", 0x7f0000001040, 0x0ffff000, false},
		{"ends a page or more before its end", 0x7f0000000040, 0x0fff0000, false},
		{"a mapping holding more than the buffer", 0x7f0020000040, 0x01000000, false},
		{"the heap", 0x55d0c0a00040, 0x100000, false},
		{"a file mapping", 0x7f0040000040, 0xff000, false},
		{"read-only", 0x7f0050000040, 0x100000, false},
		{"in no mapping", 0x7f0060000000, 0x1000, false},
		{"empty", 0x7f0000000040, 0, false},
		{"wraps", ^uintptr(0) - 10, 100, false},
	}
	for _, tc := range tests {
		if got := ownMapping(path, tc.base, tc.size, page); got != tc.want {
			t.Errorf("%s: ownMapping(%#x, %#x) = %v, want %v", tc.name, tc.base, tc.size, got, tc.want)
		}
	}
	if ownMapping(filepath.Join(t.TempDir(), "none"), 0x7f0000000040, 0x10000000, page) {
		t.Error("a missing maps file counts as an own mapping")
	}
}

// A CPU buffer of the size of a layer's weights is its own mapping, as
// the worker's cache assumes before mapping entries into one; a small one
// from the heap is not.
func TestCPUBufferOwnMapping(t *testing.T) {
	if !cpuBuffer(t, 48<<20).OwnMapping() {
		t.Error("a 48 MiB CPU buffer is not its own mapping")
	}
	if cpuBuffer(t, 4096).OwnMapping() {
		t.Error("a 4 KiB CPU buffer counts as its own mapping")
	}
}
