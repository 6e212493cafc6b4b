package remote

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"
	"unsafe"

	"github.com/boxproj/box/gguf"
	"github.com/boxproj/box/llama"
	"github.com/boxproj/box/synth"
	"github.com/boxproj/box/worker"
	"github.com/boxproj/box/worker/workertest"
	"golang.org/x/sys/unix"
)

func TestParseMapsLine(t *testing.T) {
	dev := unix.Mkdev(0xfe, 0x01)
	const ino, path = 1234, "/models/a b.gguf"
	tests := []struct {
		name, line string
		want       fileRange
		ok         bool
	}{
		{"shared read-only", "7f0000000000-7f0000100000 r--s 00000000 fe:01 1234   /models/a b.gguf", fileRange{0x7f0000000000, 0x7f0000100000, 0}, true},
		{"at an offset", "7f0000000000-7f0000100000 r--s 00200000 fe:01 1234 /models/a b.gguf", fileRange{0x7f0000000000, 0x7f0000100000, 0x200000}, true},
		{"private (may have been written)", "7f0000000000-7f0000100000 r--p 00000000 fe:01 1234 /models/a b.gguf", fileRange{}, false},
		{"overlay: another device, same path", "7f0000000000-7f0000001000 r--s 00000000 00:2a 99 /models/a b.gguf", fileRange{0x7f0000000000, 0x7f0000001000, 0}, true},
		{"writable", "7f0000000000-7f0000100000 rw-p 00000000 fe:01 1234 /models/a b.gguf", fileRange{}, false},
		{"executable, shared", "7f0000000000-7f0000100000 r-xs 00000000 fe:01 1234 /models/a b.gguf", fileRange{0x7f0000000000, 0x7f0000100000, 0}, true},
		{"another file", "7f0000000000-7f0000100000 r--s 00000000 fe:01 1235 /models/other.gguf", fileRange{}, false},
		{"same inode, another device", "7f0000000000-7f0000100000 r--s 00000000 fe:02 1234 /elsewhere", fileRange{}, false},
		{"anonymous", "7f0000000000-7f0000100000 rw-p 00000000 00:00 0", fileRange{}, false},
		{"empty range", "7f0000100000-7f0000100000 r--s 00000000 fe:01 1234 /models/a b.gguf", fileRange{}, false},
		{"bad address", "7f00zz-7f0000100000 r--s 00000000 fe:01 1234 /models/a b.gguf", fileRange{}, false},
		{"bad offset", "7f0000000000-7f0000100000 r--s ffffffffffffffff fe:01 1234 /models/a b.gguf", fileRange{}, false},
		{"short", "7f0000000000-7f0000100000 r--s", fileRange{}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := parseMapsLine(tc.line, path, dev, ino)
			if ok != tc.ok || got != tc.want {
				t.Fatalf("got %+v %v, want %+v %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

// The upload finds the file offset of bytes in another mapping of its file
// (as llama.cpp's loader has), and nothing outside one.
func TestFileOffsetOfAnotherMapping(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.gguf")
	data := make([]byte, 3<<20)
	for i := range data {
		data[i] = byte(i * 7)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	theirs, err := unix.Mmap(int(f.Fd()), 0, len(data), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(theirs)
	u, err := StartUpload(path, nil, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	defer u.Wait()
	off, ok := u.fileOffset(unsafePtr(theirs[1<<20:]), 1<<20)
	if !ok || off != 1<<20 {
		t.Fatalf("offset %d %v, want %d", off, ok, 1<<20)
	}
	if _, ok := u.fileOffset(unsafePtr(theirs[2<<20:]), 2<<20); ok {
		t.Fatal("a range past the mapping's end was taken")
	}
	other := make([]byte, 1<<20)
	if _, ok := u.fileOffset(unsafePtr(other), len(other)); ok {
		t.Fatal("heap memory was taken for the file's")
	}
}

// A file rewritten with the same bytes is another version: what the memo
// knows of it by location no longer applies.
func TestFileIDChangesWhenRewritten(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.gguf")
	id := func() fileID {
		var st unix.Stat_t
		if err := unix.Stat(path, &st); err != nil {
			t.Fatal(err)
		}
		return fileIDOf(&st)
	}
	if err := os.WriteFile(path, []byte("weights"), 0o644); err != nil {
		t.Fatal(err)
	}
	a := id()
	if b := id(); a != b {
		t.Fatalf("the same file, two ids: %+v %+v", a, b)
	}
	time.Sleep(10 * time.Millisecond)
	if err := os.WriteFile(path, []byte("weights"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b := id(); a == b {
		t.Fatalf("rewritten, same id %+v", a)
	}
}

// The memo's entries by location persist beside those by content, and an
// older reader's lines still load.
func TestMemoPersistsLocations(t *testing.T) {
	path := filepath.Join(t.TempDir(), "memo")
	defer SetHashMemo("")
	SetHashMemo(path)
	k := locKey{file: fileID{dev: 1, ino: 2, size: 3, mtime: 4, ctime: 5}, off: 4096, n: 1 << 21}
	memo.storeAt(&k, 0xabc)
	data := []byte("some tensor bytes")
	h := memo.hash(data)
	SetHashMemo(path) // a restarted head
	if got, ok := memo.at(k); !ok || got != 0xabc {
		t.Fatalf("location entry %x %v after a restart", got, ok)
	}
	if got, ok := memo.known(data); !ok || got != h {
		t.Fatalf("content entry %x %v after a restart, want %x", got, ok, h)
	}
	k.file.ctime++
	if _, ok := memo.at(k); ok {
		t.Fatal("an entry for another version of the file")
	}
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func unsafePtr(b []byte) unsafe.Pointer { return unsafe.Pointer(unsafe.SliceData(b)) }

// The first probe of a connection is not worth a long FNV-1a: a first
// tensor over probeMaxHash whose hash the memo does not know is sent
// without one, and the probe is made with the next, smaller one.
func TestProbeSkipsALargeFirstTensor(t *testing.T) {
	cfg, _ := synth.Preset("tiny")
	cfg.Layers, cfg.Embd, cfg.Heads, cfg.KVHeads, cfg.FF, cfg.Vocab = 1, 512, 8, 4, 1024, 9000 // F32: output 18 MB, feed-forward 2 MiB
	path, err := synth.EnsureCached(context.Background(), t.TempDir(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	info, err := gguf.Inspect(path)
	if err != nil {
		t.Fatal(err)
	}
	sizes := map[string]uint64{}
	for _, ti := range info.Tensors {
		sizes[ti.Name] = ti.Bytes
	}
	if sizes["output.weight"] <= probeMaxHash || sizes["blk.0.ffn_up.weight"] > probeMaxHash {
		t.Fatalf("tensor sizes %v do not fit the test", sizes)
	}
	defer SetHashMemo("")
	SetHashMemo("")
	w := workertest.Start(t, worker.Config{CacheDir: t.TempDir()})
	n, err := Connect(context.Background(), w.Addr, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	m, err := llama.LoadModel(context.Background(), path, llama.ModelParams{Devices: []string{n.Devices()[0].Name}, GPULayers: -1, Check: n.Err})
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
	memo.mu.Lock()
	big, small := memo.lens[sizes["output.weight"]], memo.lens[sizes["blk.0.ffn_up.weight"]]
	memo.mu.Unlock()
	if big != 0 || small != 1 {
		t.Fatalf("the probe hashed %d tensors of the output's size and %d of the feed-forward's, want 0 and 1", big, small)
	}
	if got := n.probeDeferred.Load(); got != 1 {
		t.Fatalf("%d tensors sent before the probe, want 1 (the output)", got)
	}
}
