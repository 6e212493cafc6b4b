// Package cache is the worker's tensor cache on disk. The supervisor opens
// it once (and sweeps temp files a crash left); each compute process opens
// it again and reads and writes entries directly, so cached data never
// passes through the supervisor.
package cache

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"

	"github.com/boxproj/box/rpc"
)

// Cache keeps large uploads on disk, named by their FNV-1a hash (the
// protocol's), so a head that loads the same weights again can send hashes
// instead of data. Files are written atomically (temp, rename) and
// carry a header with their length and CRC-32C, checked on every read: a
// truncated or corrupt file is removed, never served. CRC-32C runs at
// memory speed, where re-hashing with byte-serial FNV would cost a large
// part of what the cache saves.
//
// File layout: "BOXCACH1" | length u64 LE | crc32c u32 LE | 4 zero bytes | data.
type Cache struct {
	dir string
	log *slog.Logger
}

// Prepare creates dir and removes temp files a crash mid-write left (they
// are never valid entries). Only the supervisor calls it, at start: a
// compute process must not remove another one's write in progress.
func Prepare(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("cache dir: %w", err)
	}
	olds, _ := filepath.Glob(filepath.Join(dir, ".tmp-*"))
	for _, f := range olds {
		os.Remove(f)
	}
	return nil
}

// Open uses the cache in dir, which Prepare has made.
func Open(dir string, log *slog.Logger) *Cache { return &Cache{dir: dir, log: log} }

const cacheMagic = "BOXCACH1"

const cacheHeader = 24

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func (c *Cache) path(hash uint64) string {
	return filepath.Join(c.dir, fmt.Sprintf("%016x", hash))
}

// Put stores data under its hash. Errors (a full disk) only cost the cache
// entry: the upload itself already succeeded.
func (c *Cache) Put(data []byte) {
	hash := rpc.FNV1a64(data)
	dst := c.path(hash)
	if st, err := os.Stat(dst); err == nil && st.Size() == cacheHeader+int64(len(data)) {
		return
	}
	hdr := make([]byte, cacheHeader)
	copy(hdr, cacheMagic)
	binary.LittleEndian.PutUint64(hdr[8:], uint64(len(data)))
	binary.LittleEndian.PutUint32(hdr[16:], crc32.Checksum(data, castagnoli))
	f, err := os.CreateTemp(c.dir, ".tmp-"+strconv.FormatUint(hash, 16)+"-*")
	if err != nil {
		c.log.Warn("cache write failed", "err", err)
		return
	}
	tmp := f.Name()
	// No fsync: a file torn by a crash fails its checksum and is dropped,
	// so durability would only buy a slower cold load.
	_, err = f.Write(hdr)
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

// ReadInto reads the entry for hash. dst is told the entry's length n and
// answers where its bytes go: a slice to read into directly (host memory),
// or nil to read into a temporary one handed to write afterwards; ok false
// stops the read with nothing written (the caller refused n). It reports
// whether an intact entry was applied; a corrupt or truncated one is removed.
func (c *Cache) ReadInto(hash uint64, dst func(n uint64) (buf []byte, ok bool), write func(data []byte)) bool {
	p := c.path(hash)
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
	hdr := make([]byte, cacheHeader)
	if _, err := io.ReadFull(f, hdr); err != nil || !bytes.Equal(hdr[:8], []byte(cacheMagic)) {
		return bad("header")
	}
	n := binary.LittleEndian.Uint64(hdr[8:])
	if n != uint64(st.Size()-cacheHeader) {
		return bad("length")
	}
	buf, ok := dst(n)
	if !ok {
		return false
	}
	direct := buf != nil
	if buf == nil {
		buf = make([]byte, n)
	}
	if _, err := io.ReadFull(f, buf); err != nil {
		return bad("read")
	}
	if binary.LittleEndian.Uint32(hdr[16:]) != crc32.Checksum(buf, castagnoli) {
		return bad("checksum")
	}
	if !direct {
		write(buf)
	}
	return true
}
