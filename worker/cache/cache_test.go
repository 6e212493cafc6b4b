package cache

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/boxproj/box/rpc"
	"golang.org/x/sys/unix"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func openTest(t *testing.T) (*Cache, string) {
	t.Helper()
	dir := t.TempDir()
	return Open(dir, "t", func(uint64) (func(), bool) { return func() {}, true }, quiet), filepath.Join(dir, "t")
}

// region is an anonymous mapping of its own, unmapped at the end of the test.
func region(t *testing.T, n int) []byte {
	t.Helper()
	b, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANON)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Munmap(b) })
	return b
}

// mapsOf lists this process's mappings of files under dir.
func mapsOf(t *testing.T, dir string) []string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, dir) {
			out = append(out, l)
		}
	}
	return out
}

func fill(b []byte, seed byte) {
	for i := range b {
		b[i] = byte(i*131>>7) ^ seed
	}
}

// An entry read back into memory at the page offset it was written from,
// in a mapping the caller owns, is mapped there: the same bytes, copy on
// write (the file does not change), released with the caller's memory. At
// another page offset, or when the caller does not own the mapping, it is
// read.
func TestReadIntoMapsWhenAligned(t *testing.T) {
	const n = 5<<20 + 777
	page := os.Getpagesize()
	c, dir := openTest(t)
	src := region(t, n+2*page)[100 : 100+n]
	fill(src, 3)
	c.Put(src)
	fnv := rpc.FNV1a64(src)

	tests := []struct {
		name     string
		at       int // offset of the destination in a fresh region
		mappable bool
		mapped   bool
	}{
		{"same page offset, owned", 100, true, true},
		{"same page offset, another page", 100 + 3*page, true, true},
		{"another page offset", 164, true, false},
		{"same page offset, not owned", 100, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := region(t, n+8*page)
			dst := r[tc.at : tc.at+n]
			if !c.ReadInto(fnv, func(got uint64) ([]byte, bool, bool) {
				if got != n {
					t.Fatalf("entry length %d, want %d", got, n)
				}
				return dst, tc.mappable, true
			}, nil) {
				t.Fatal("entry not applied")
			}
			if !bytes.Equal(dst, src) {
				t.Fatal("applied bytes differ from the upload")
			}
			if m := mapsOf(t, dir); (len(m) > 0) != tc.mapped {
				t.Fatalf("mappings of the entry: %q, want mapped %v", m, tc.mapped)
			}
			// Writes stay in memory.
			fill(dst, 9)
			if c.ReadInto(fnv, func(uint64) ([]byte, bool, bool) { return make([]byte, n), false, true }, nil) == false {
				t.Fatal("the entry no longer reads back intact after the memory was written")
			}
			unix.Munmap(r)
			if m := mapsOf(t, dir); len(m) > 0 {
				t.Fatalf("entry still mapped after its memory was unmapped: %q", m)
			}
		})
	}
}

// Entries of the earlier layout (no pad) are read; a pad out of range is
// a corrupt entry, removed and not served.
func TestReadIntoLayouts(t *testing.T) {
	c, dir := openTest(t)
	data := make([]byte, 2<<20)
	fill(data, 5)
	fnv := rpc.FNV1a64(data)
	entry := func(pad uint32) string {
		hdr := make([]byte, Header)
		copy(hdr, magic)
		binary.LittleEndian.PutUint64(hdr[8:], uint64(len(data)))
		binary.LittleEndian.PutUint32(hdr[16:], crc32.Checksum(data, castagnoli))
		binary.LittleEndian.PutUint32(hdr[20:], pad)
		p := c.name(fnv, [32]byte{1})
		os.MkdirAll(dir, 0o700)
		if err := os.WriteFile(p, append(append(hdr, make([]byte, min(pad, 100))...), data...), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	read := func() ([]byte, bool) {
		out := region(t, len(data)+8192)[4096 : 4096+len(data)]
		ok := c.ReadInto(fnv, func(uint64) ([]byte, bool, bool) { return out, true, true }, nil)
		return out, ok
	}
	entry(0)
	if got, ok := read(); !ok || !bytes.Equal(got, data) {
		t.Fatalf("an entry without pad: applied %v, same bytes %v", ok, bytes.Equal(got, data))
	}
	entry(100)
	if got, ok := read(); !ok || !bytes.Equal(got, data) {
		t.Fatalf("an entry with a pad of 100: applied %v, same bytes %v", ok, bytes.Equal(got, data))
	}
	p := entry(maxPad)
	if _, ok := read(); ok {
		t.Fatal("an entry with a pad out of range was served")
	}
	if _, err := os.Stat(p); !os.IsNotExist(err) {
		t.Fatalf("an entry with a pad out of range was kept: %v", err)
	}
}
