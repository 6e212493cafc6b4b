// Package cache is the worker's tensor cache on disk. The supervisor owns
// its size (it indexes the entries at start, grants room for each new one
// and evicts the least recently used); each compute process reads and
// writes entries directly, so cached data never passes through the
// supervisor.
//
// An entry lives under its tenant's folder (the client's network address,
// or "shared" with --cache-shared), named by the protocol's FNV-1a hash and
// a SHA-256 the worker computes itself: "<tenant>/<fnv1a:16 hex>.<sha256:64
// hex>". A lookup by FNV-1a (all a client sends) is served only from the
// asking tenant's folder, so one client cannot plant data for another by
// colliding FNV-1a (which is easy); if two entries of a tenant share an
// FNV-1a, neither is served. Files are written atomically (temp, rename)
// and carry their length and CRC-32C, checked on every read at memory
// speed: a truncated or corrupt file is removed, never served.
//
// File layout: "BOXCACH2" | length u64 LE | crc32c u32 LE | pad u32 LE |
// pad zero bytes | data. The pad (under a page; 0 in entries of earlier
// versions) puts the data at the page offset the uploaded bytes had in
// memory, so that the next load of the same layout can map the entry's
// pages straight into the tensor instead of reading them (ReadInto).
package cache

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/boxproj/box/rpc"
	"golang.org/x/sys/unix"
)

const (
	magic  = "BOXCACH2"
	Header = 24 // bytes before an entry's pad and data
	maxPad = 1 << 16
)

// pageSize is the unit of a mapping.
var pageSize = os.Getpagesize()

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Tenant names the folder of a client at addr (an IP address), or the
// shared one.
func Tenant(addr string, shared bool) string {
	if shared {
		return "shared"
	}
	return "t-" + hex.EncodeToString([]byte(addr))
}

// Cache is a compute process's view: one tenant's entries.
type Cache struct {
	dir string // the tenant's folder
	log *slog.Logger
	// room asks the supervisor for n bytes of cache space (it evicts to
	// make them); false means no room. done is called once the write
	// has ended either way.
	room func(n uint64) (done func(), ok bool)
}

// Open uses tenant's entries in dir, which the supervisor has prepared;
// room is asked before every write.
func Open(dir, tenant string, room func(n uint64) (done func(), ok bool), log *slog.Logger) *Cache {
	return &Cache{dir: filepath.Join(dir, tenant), log: log, room: room}
}

func (c *Cache) name(fnv uint64, sha [32]byte) string {
	return filepath.Join(c.dir, fmt.Sprintf("%016x.%x", fnv, sha))
}

// Put stores data. Errors (a full disk, no room) only cost the cache
// entry: the upload itself already succeeded.
func (c *Cache) Put(data []byte) {
	// Both hashes at once: each runs at about a gigabyte a second.
	var sha [32]byte
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); sha = sha256.Sum256(data) }()
	fnv := rpc.FNV1a64(data)
	crc := crc32.Checksum(data, castagnoli)
	wg.Wait()
	dst := c.name(fnv, sha)
	pad := padFor(data)
	if st, err := os.Stat(dst); err == nil && st.Size() == int64(Header+pad+len(data)) {
		return
	}
	size := uint64(Header + pad + len(data))
	done, ok := c.room(size)
	if !ok {
		c.log.Info("cache entry not kept: --cache-max-size leaves no room", "bytes", size)
		return
	}
	defer done()
	hdr := make([]byte, Header)
	copy(hdr, magic)
	binary.LittleEndian.PutUint64(hdr[8:], uint64(len(data)))
	binary.LittleEndian.PutUint32(hdr[16:], crc)
	binary.LittleEndian.PutUint32(hdr[20:], uint32(pad))
	if err := os.MkdirAll(c.dir, 0o700); err != nil {
		c.log.Warn("cache write failed", "err", err)
		return
	}
	f, err := os.CreateTemp(c.dir, ".tmp-"+strconv.FormatUint(fnv, 16)+"-*")
	if err != nil {
		c.log.Warn("cache write failed", "err", err)
		return
	}
	tmp := f.Name()
	// No fsync: a file torn by a crash fails its checksum and is dropped,
	// so durability would only buy a slower cold load.
	_, err = f.Write(append(hdr, make([]byte, pad)...))
	if err == nil {
		_, err = f.Write(data)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, dst)
	}
	if err != nil {
		os.Remove(tmp)
		c.log.Warn("cache write failed", "file", dst, "err", err)
	}
}

// padFor is the pad that puts data's first byte at its page offset in
// memory.
func padFor(data []byte) int {
	if len(data) == 0 {
		return 0
	}
	return int((uintptr(unsafe.Pointer(&data[0])) - Header) & uintptr(pageSize-1))
}

// ReadInto reads the tenant's entry for the FNV-1a hash fnv. dst is told
// the entry's length n and answers where its bytes go: a slice to read
// into directly (host memory), or nil to read into a temporary one handed
// to write afterwards; ok false stops the read with nothing written (the
// caller refused n). mappable says the slice lies in a mapping the caller
// owns and frees whole (ggml.Buffer.OwnMapping), where nothing else runs
// meanwhile: the whole pages of it are then replaced by a private mapping
// of the entry, when the entry's data has the slice's page offset (copy on
// write: the file is never changed, and the caller's unmapping of its
// memory releases them). It reports whether an intact entry was applied;
// a corrupt or truncated one is removed.
func (c *Cache) ReadInto(fnv uint64, dst func(n uint64) (buf []byte, mappable, ok bool), write func(data []byte)) bool {
	matches, _ := filepath.Glob(filepath.Join(c.dir, fmt.Sprintf("%016x.*", fnv)))
	if len(matches) != 1 {
		if len(matches) > 1 {
			c.log.Warn("FNV-1a collision in the cache: not served", "fnv1a", fmt.Sprintf("%016x", fnv), "entries", len(matches))
		}
		return false
	}
	p := matches[0]
	f, err := os.Open(p)
	if err != nil {
		return false
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return false
	}
	bad := func(why string) bool {
		c.log.Warn("cache file is corrupt or truncated; removed", "file", p, "bytes", st.Size(), "why", why)
		os.Remove(p)
		return false
	}
	hdr := make([]byte, Header)
	if _, err := io.ReadFull(f, hdr); err != nil || !bytes.Equal(hdr[:8], []byte(magic)) {
		return bad("header")
	}
	n := binary.LittleEndian.Uint64(hdr[8:])
	pad := binary.LittleEndian.Uint32(hdr[20:])
	if pad >= maxPad {
		return bad("pad")
	}
	off := int64(Header) + int64(pad)
	if st.Size() < off || n != uint64(st.Size()-off) {
		return bad("length")
	}
	buf, mappable, ok := dst(n)
	if !ok {
		return false
	}
	direct := buf != nil
	if buf == nil {
		buf = make([]byte, n)
	}
	if mappable && direct {
		err = mapInto(f, off, buf)
	} else {
		_, err = f.ReadAt(buf, off)
	}
	if err != nil {
		return bad("read")
	}
	if binary.LittleEndian.Uint32(hdr[16:]) != crc32.Checksum(buf, castagnoli) {
		return bad("checksum")
	}
	if !direct {
		write(buf)
	}
	// The modification time is the LRU clock.
	now := time.Now()
	os.Chtimes(p, now, now)
	return true
}

// minMap is the least span worth a mapping instead of a read.
const minMap = 1 << 20

// mapInto puts the n bytes of f at off into buf: its whole pages as a
// private mapping of f when their offsets agree with the file's, the rest
// (and all of it otherwise) read.
func mapInto(f *os.File, off int64, buf []byte) error {
	if len(buf) == 0 {
		return nil // an empty entry: nothing to map or read
	}
	page := uintptr(pageSize)
	a := uintptr(unsafe.Pointer(&buf[0]))
	lo := (a + page - 1) &^ (page - 1)
	hi := (a + uintptr(len(buf))) &^ (page - 1)
	if hi <= lo || hi-lo < minMap || (uintptr(off)+(lo-a))&(page-1) != 0 {
		_, err := f.ReadAt(buf, off)
		return err
	}
	fileLo := off + int64(lo-a)
	got, _, errno := unix.Syscall6(unix.SYS_MMAP, lo, hi-lo, unix.PROT_READ|unix.PROT_WRITE,
		unix.MAP_PRIVATE|unix.MAP_FIXED, f.Fd(), uintptr(fileLo))
	if errno != 0 || got != lo {
		// A failed MAP_FIXED (too many mappings, say) may have dropped
		// the old pages already: fresh anonymous ones take their place,
		// and the bytes are read into them.
		unix.Syscall6(unix.SYS_MMAP, lo, hi-lo, unix.PROT_READ|unix.PROT_WRITE,
			unix.MAP_PRIVATE|unix.MAP_FIXED|unix.MAP_ANONYMOUS, ^uintptr(0), 0)
		_, err := f.ReadAt(buf, off)
		return err
	}
	if _, err := f.ReadAt(buf[:lo-a], off); err != nil {
		return err
	}
	_, err := f.ReadAt(buf[hi-a:], off+int64(hi-a))
	return err
}

// Index is the supervisor's account of the cache's size: every entry's
// size and last use, so it can evict the least recently used.
type Index struct {
	dir string
	max uint64
	log *slog.Logger

	mu      sync.Mutex
	size    uint64
	entries map[string]entry  // by path under dir
	pending map[string]uint64 // room granted to writes in progress
}

type entry struct {
	size uint64
	used time.Time
}

// Prepare creates dir, removes temp files a crash mid-write left (they are
// never valid entries) and files of an older layout, and indexes the
// entries. max bounds the total size (0: 20% of the filesystem's size).
func Prepare(dir string, max uint64, log *slog.Logger) (*Index, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("cache dir: %w", err)
	}
	if max == 0 {
		max = DefaultMax(dir)
	}
	ix := &Index{dir: dir, max: max, log: log, entries: map[string]entry{}, pending: map[string]uint64{}}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		if strings.HasPrefix(d.Name(), ".tmp-") || !strings.Contains(rel, string(filepath.Separator)) {
			os.Remove(p) // a crashed write, or an entry of the old flat layout
			return nil
		}
		if info, err := d.Info(); err == nil {
			ix.entries[rel] = entry{size: uint64(info.Size()), used: info.ModTime()}
			ix.size += uint64(info.Size())
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("cache index: %w", err)
	}
	ix.mu.Lock()
	ix.evict(0)
	ix.mu.Unlock()
	return ix, nil
}

// DefaultMax is 20% of the size of the filesystem dir is on.
func DefaultMax(dir string) uint64 {
	var st statfs
	if err := statFS(dir, &st); err != nil {
		return 1 << 30
	}
	return st.total / 5
}

// Max is the size bound.
func (ix *Index) Max() uint64 { return ix.max }

// Size is what the entries take now, as the index knows it.
func (ix *Index) Size() uint64 {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	return ix.size
}

// Room makes n bytes of room by evicting the least recently used entries
// and holds them under key until Done(key), when the writer's file (or its
// failure) is on disk. It reports false when n cannot fit at all.
func (ix *Index) Room(key string, n uint64) bool {
	if n > ix.max {
		return false
	}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.refresh()
	ix.evict(n)
	ix.size += n
	ix.pending[key] = n
	return true
}

// Done ends the hold of key: the file it made room for is written or not.
func (ix *Index) Done(key string) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if n, ok := ix.pending[key]; ok {
		delete(ix.pending, key)
		ix.size -= min(ix.size, n)
	}
}

// refresh re-reads the folder, so files written, used or removed by compute
// processes are accounted as they are. ix.mu is held.
func (ix *Index) refresh() {
	entries := map[string]entry{}
	var size uint64
	filepath.WalkDir(ix.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(ix.dir, p)
		if info, err := d.Info(); err == nil {
			entries[rel] = entry{size: uint64(info.Size()), used: info.ModTime()}
			size += uint64(info.Size())
		}
		return nil
	})
	// Room granted but not written yet still counts.
	for _, n := range ix.pending {
		size += n
	}
	ix.entries, ix.size = entries, size
}

// evict removes least recently used entries until n more bytes fit. ix.mu
// is held.
func (ix *Index) evict(n uint64) {
	if ix.size+n <= ix.max {
		return
	}
	names := make([]string, 0, len(ix.entries))
	for k := range ix.entries {
		names = append(names, k)
	}
	sort.Slice(names, func(i, j int) bool { return ix.entries[names[i]].used.Before(ix.entries[names[j]].used) })
	for _, k := range names {
		if ix.size+n <= ix.max {
			return
		}
		e := ix.entries[k]
		if err := os.Remove(filepath.Join(ix.dir, k)); err == nil || os.IsNotExist(err) {
			delete(ix.entries, k)
			ix.size -= min(ix.size, e.size)
			if ix.log != nil {
				ix.log.Info("cache entry evicted (least recently used)", "entry", k, "bytes", e.size)
			}
		}
	}
}
