package remote

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/boxproj/box/rpc"
	"github.com/cespare/xxhash/v2"
)

// fnvMemo remembers the FNV-1a hash (the protocol's cache key) of uploads,
// keyed by length and xxhash64. FNV-1a is byte-serial (about 1 GB/s here),
// xxhash runs at memory speed, so a reload of the same weights onto workers
// with a warm cache costs one fast pass instead of one slow one. The memo
// lives in memory; with SetHashMemo (box serve: --cache-dir/fnv-memo) it
// also persists in that file, so a restarted head benefits too.
type fnvMemo struct {
	once sync.Once
	mu   sync.Mutex
	m    map[[2]uint64]uint64
	path string
}

var memo fnvMemo

// SetHashMemo makes the upload hash memo persist in path (appended to, one
// line an entry; empty: in memory only, the default). Call it before the
// first load.
func SetHashMemo(path string) {
	memo.mu.Lock()
	defer memo.mu.Unlock()
	memo.path = path
}

const memoMaxEntries = 1 << 16

func (f *fnvMemo) load() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.m = map[[2]uint64]uint64{}
	if f.path == "" {
		return
	}
	file, err := os.Open(f.path)
	if err != nil {
		return
	}
	defer file.Close()
	sc := bufio.NewScanner(file)
	for sc.Scan() && len(f.m) < memoMaxEntries {
		var n, x, h uint64
		if _, err := fmt.Sscanf(sc.Text(), "%x %x %x", &n, &x, &h); err == nil {
			f.m[[2]uint64{n, x}] = h
		}
	}
}

// hash returns FNV-1a of data, from the memo when known.
func (f *fnvMemo) hash(data []byte) uint64 {
	f.once.Do(f.load)
	key := [2]uint64{uint64(len(data)), xxhash.Sum64(data)}
	f.mu.Lock()
	h, ok := f.m[key]
	f.mu.Unlock()
	if ok {
		return h
	}
	h = rpc.FNV1a64(data)
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.m) >= memoMaxEntries {
		return h
	}
	f.m[key] = h
	if f.path != "" {
		// Best effort: a memo that cannot be written only costs speed.
		if err := os.MkdirAll(filepath.Dir(f.path), 0o755); err == nil {
			if file, err := os.OpenFile(f.path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644); err == nil {
				fmt.Fprintf(file, "%x %x %x\n", key[0], key[1], h)
				file.Close()
			}
		}
	}
	return h
}
