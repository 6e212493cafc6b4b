package remote

import (
	"bufio"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/boxproj/box/gguf"
	"github.com/boxproj/box/rpc"
	"github.com/cespare/xxhash/v2"
	"golang.org/x/sys/unix"
)

// fnvMemo remembers the FNV-1a hash (the protocol's cache key) of uploads,
// keyed by length and xxhash64. FNV-1a is byte-serial (about 1 GB/s here),
// xxhash runs at memory speed, so a reload of the same weights onto workers
// with a warm cache costs one fast pass instead of one slow one. The memo
// lives in memory; with SetHashMemo (box serve: --cache-dir/fnv-memo) it
// also persists in that file, so a restarted head benefits too.
//
// Uploads from a model file (an Upload) are also remembered by where they
// lie in that file, for as long as the file is unchanged (fileID), so a
// reload of the same file is offered by hash without reading its bytes.
type fnvMemo struct {
	mu   sync.Mutex
	m    map[[2]uint64]uint64 // nil until loaded
	lens map[uint64]int       // how many entries of m have each length
	loc  map[locKey]uint64
	path string
}

// fileID is one version of a file. Rewriting it (cp, rsync, a download)
// changes its size, modification or change time, or inode; the change
// time cannot be set back.
type fileID struct {
	dev, ino           uint64
	size, mtime, ctime int64
}

func fileIDOf(st *unix.Stat_t) fileID {
	return fileID{dev: uint64(st.Dev), ino: st.Ino, size: st.Size, mtime: st.Mtim.Nano(), ctime: st.Ctim.Nano()}
}

// locKey is n bytes at offset off of a file.
type locKey struct {
	file fileID
	off  int64
	n    uint64
}

var memo fnvMemo

// SetHashMemo makes the upload hash memo persist in path (appended to, one
// line an entry; empty: in memory only, the default). The memo starts again
// from what path holds: what was remembered before is forgotten. Call it
// before a load, not during one.
func SetHashMemo(path string) {
	memo.mu.Lock()
	defer memo.mu.Unlock()
	memo.path, memo.m, memo.lens, memo.loc = path, nil, nil, nil
}

const memoMaxEntries = 1 << 16

// load reads the memo's file; called with mu held.
func (f *fnvMemo) load() {
	f.m, f.lens, f.loc = map[[2]uint64]uint64{}, map[uint64]int{}, map[locKey]uint64{}
	if f.path == "" {
		return
	}
	file, err := os.Open(f.path)
	if err != nil {
		return
	}
	defer file.Close()
	sc := bufio.NewScanner(file)
	for sc.Scan() {
		var n, x, h uint64
		if line := sc.Text(); strings.HasPrefix(line, "L ") {
			var k locKey
			if _, err := fmt.Sscanf(line, "L %x %x %x %x %x %x %x %x", &k.file.dev, &k.file.ino, &k.file.size, &k.file.mtime, &k.file.ctime, &k.off, &k.n, &h); err == nil && len(f.loc) < memoMaxEntries {
				f.loc[k] = h
			}
			continue
		}
		if len(f.m) >= memoMaxEntries {
			continue
		}
		if _, err := fmt.Sscanf(sc.Text(), "%x %x %x", &n, &x, &h); err == nil {
			if _, dup := f.m[[2]uint64{n, x}]; !dup {
				f.lens[n]++
			}
			f.m[[2]uint64{n, x}] = h
		}
	}
}

// hash returns FNV-1a of data, from the memo when known.
func (f *fnvMemo) hash(data []byte) uint64 {
	key, h, ok := f.lookup(data)
	if ok {
		return h
	}
	h = rpc.FNV1a64(data)
	f.store(key, h)
	return h
}

// lookup returns the memo's key for data and its FNV-1a when known.
func (f *fnvMemo) lookup(data []byte) (key [2]uint64, h uint64, ok bool) {
	key = [2]uint64{uint64(len(data)), xxhash.Sum64(data)}
	f.mu.Lock()
	if f.m == nil {
		f.load()
	}
	h, ok = f.m[key]
	f.mu.Unlock()
	return key, h, ok
}

// known returns the FNV-1a of data when the memo knows it, without the
// xxhash pass when it holds nothing of that length.
func (f *fnvMemo) known(data []byte) (uint64, bool) {
	f.mu.Lock()
	if f.m == nil {
		f.load()
	}
	none := f.lens[uint64(len(data))] == 0
	f.mu.Unlock()
	if none {
		return 0, false
	}
	_, h, ok := f.lookup(data)
	return h, ok
}

// store remembers h as the FNV-1a of the data of key.
func (f *fnvMemo) store(key [2]uint64, h uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.m == nil {
		f.load()
	}
	if len(f.m) >= memoMaxEntries {
		return
	}
	if _, ok := f.m[key]; ok {
		return
	}
	f.m[key] = h
	f.lens[key[0]]++
	f.persist(fmt.Sprintf("%x %x %x\n", key[0], key[1], h))
}

// at returns the FNV-1a of the bytes at k when the memo knows it.
func (f *fnvMemo) at(k locKey) (uint64, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.m == nil {
		f.load()
	}
	h, ok := f.loc[k]
	return h, ok
}

// knownAt returns the FNV-1a of data when the memo knows it by where it
// lies (at, when not nil) or, with byContent, by its contents; one known by
// contents is remembered at its location too.
func (f *fnvMemo) knownAt(at *locKey, data []byte, byContent bool) (uint64, bool) {
	if at != nil {
		if h, ok := f.at(*at); ok {
			return h, true
		}
	}
	if !byContent {
		return 0, false
	}
	h, ok := f.known(data)
	if ok {
		f.storeAt(at, h)
	}
	return h, ok
}

// storeAt remembers h as the FNV-1a of the bytes at k (nil: nowhere).
func (f *fnvMemo) storeAt(at *locKey, h uint64) {
	if at == nil {
		return
	}
	k := *at
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.m == nil {
		f.load()
	}
	if _, ok := f.loc[k]; ok || len(f.loc) >= memoMaxEntries {
		return
	}
	f.loc[k] = h
	f.persist(fmt.Sprintf("L %x %x %x %x %x %x %x %x\n", k.file.dev, k.file.ino, k.file.size, k.file.mtime, k.file.ctime, k.off, k.n, h))
}

// persist appends line to the memo's file; called with mu held. Best
// effort: a memo that cannot be written only costs speed.
func (f *fnvMemo) persist(line string) {
	if f.path == "" {
		return
	}
	if err := os.MkdirAll(filepath.Dir(f.path), 0o755); err == nil {
		if file, err := os.OpenFile(f.path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644); err == nil {
			file.WriteString(line)
			file.Close()
		}
	}
}

var (
	// unhashed is set when a large weight was sent without its FNV-1a
	// being worked out (see Node.setCached).
	unhashed atomic.Bool
	hashing  sync.WaitGroup
	hashMu   sync.Mutex // one file pass at a time
)

// HashFileInBackground works out, in one goroutine, the FNV-1a of every
// tensor over the cache threshold in the GGUF file at path that the memo
// does not know yet, when a load has sent weights without hashing them (a
// worker's cache missed). The next load of the same weights then offers
// them all by hash, from the memo. Call it after a load from path; it
// returns at once, and does nothing when every upload was hashed.
func HashFileInBackground(path string, log *slog.Logger) {
	if !unhashed.Swap(false) {
		return
	}
	hashing.Add(1)
	go func() {
		defer hashing.Done()
		hashMu.Lock()
		defer hashMu.Unlock()
		t0 := time.Now()
		n, err := hashFile(path)
		if err != nil {
			log.Warn("hashing the model's tensors for the worker cache", "path", path, "err", err)
			return
		}
		log.Debug("hashed the model's tensors for the worker cache", "path", path, "tensors", n, "seconds", time.Since(t0).Seconds())
	}()
}

// WaitHashing waits for the goroutines of HashFileInBackground.
func WaitHashing() { hashing.Wait() }

func hashFile(path string) (int, error) {
	info, err := gguf.Inspect(path)
	if err != nil {
		return 0, err
	}
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return 0, err
	}
	id := fileIDOf(&st)
	var buf []byte
	n := 0
	for _, t := range info.Tensors {
		if t.Bytes <= rpc.BoxCacheThreshold || t.Bytes > 1<<34 {
			continue
		}
		k := locKey{file: id, off: info.DataOffset + int64(t.Offset), n: t.Bytes}
		if _, ok := memo.at(k); ok {
			continue
		}
		if uint64(cap(buf)) < t.Bytes {
			buf = make([]byte, t.Bytes)
		}
		b := buf[:t.Bytes]
		if _, err := f.ReadAt(b, k.off); err != nil {
			return n, err
		}
		memo.storeAt(&k, memo.hash(b))
		n++
	}
	return n, nil
}
