package remote

// #include "populate.h"
import "C"

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"unsafe"

	"github.com/boxproj/box/rpc"
	"golang.org/x/sys/unix"
)

// Upload sends the weights llama.cpp's loader hands to the nodes while it
// loads one model file, without holding the loader: each node gets a queue
// and one goroutine that sends from the head's own read-only mapping of the
// file. The loader's set_tensor then only queues (the bytes it points at are
// that file's, so they can be read again from our mapping after llama.cpp
// unmaps its own), every worker receives at once instead of one after the
// other, and the cache probes and hashes of one node overlap with another
// node's upload.
//
// Only data that lies in a mapping of the same file is queued; anything
// else (a loader without mmap, a non-weight tensor) is sent at once as
// before. Every other command on a node first waits for its queue to be
// sent, so the worker sees commands in the order ggml issued them.
//
// While it lasts, llama.cpp's mapping of the same file is made without
// MAP_POPULATE (populate.c): only our mapping is read for what is queued.
//
// The Upload owns its mapping, its queues, their goroutines and that
// registration; Wait is their one release path.
type Upload struct {
	log    *slog.Logger
	path   string // absolute, symlinks resolved
	data   []byte // our mapping of the whole file, unmapped by Wait
	size   int64  // its length, read by fileOffset at any time
	id     fileID
	queues []*uploadQueue
	wg     sync.WaitGroup

	mapsOnce sync.Once
	ranges   []fileRange // the loader's mappings of the file
	nopop    C.int       // the file's slot in populate.c, or -1
	done     sync.Once
}

// fileRange is one mapping of the model file in this process.
type fileRange struct {
	start, end uintptr
	off        int64 // file offset of start
}

// StartUpload maps the file at path and attaches a queue to every node. It
// fails, changing nothing, when the file cannot be mapped or a node is
// already in another upload; the load then sends synchronously.
func StartUpload(path string, nodes []*Node, log *slog.Logger) (*Upload, error) {
	abs, err := filepath.Abs(path)
	if err == nil {
		abs, err = filepath.EvalSymlinks(abs)
	}
	if err != nil {
		return nil, fmt.Errorf("upload from %s: %w", path, err)
	}
	f, err := os.Open(abs)
	if err != nil {
		return nil, fmt.Errorf("upload from %s: %w", path, err)
	}
	defer f.Close() // the mapping outlives the descriptor
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return nil, fmt.Errorf("upload from %s: %w", path, err)
	}
	if st.Size <= 0 || uint64(st.Size) > uint64(^uint(0)>>1) {
		return nil, fmt.Errorf("upload from %s: size %d cannot be mapped", path, st.Size)
	}
	data, err := unix.Mmap(int(f.Fd()), 0, int(st.Size), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("upload from %s: mmap: %w", path, err)
	}
	u := &Upload{log: log, path: abs, data: data, size: st.Size, id: fileIDOf(&st)}
	for _, n := range nodes {
		q := &uploadQueue{u: u, n: n}
		q.cond = sync.NewCond(&q.mu)
		if !n.upload.CompareAndSwap(nil, q) {
			u.detach()
			unix.Munmap(data)
			return nil, fmt.Errorf("upload from %s: worker %s is in another upload", path, n.Addr)
		}
		u.queues = append(u.queues, q)
	}
	u.nopop = C.box_nopopulate_add(C.uint64_t(st.Dev), C.uint64_t(st.Ino))
	for _, q := range u.queues {
		u.wg.Add(1)
		go func() {
			defer u.wg.Done()
			q.run()
		}()
	}
	return u, nil
}

// detach takes the queues off their nodes: later set_tensor calls send at
// once again.
func (u *Upload) detach() {
	for _, q := range u.queues {
		q.n.upload.CompareAndSwap(q, nil)
	}
}

// Wait sends what is queued, ends the goroutines and unmaps the file. It is
// safe to call more than once and from more than one goroutine; failures
// of a send fail that node, as a synchronous send would (Node.Err).
func (u *Upload) Wait() {
	u.done.Do(func() {
		C.box_nopopulate_remove(u.nopop)
		u.detach()
		for _, q := range u.queues {
			q.close()
		}
		u.wg.Wait()
		unix.Munmap(u.data)
	})
}

// Queued is the number of bytes the nodes were sent from the upload's
// mapping instead of synchronously.
func (u *Upload) Queued() int64 {
	var s int64
	for _, q := range u.queues {
		q.mu.Lock()
		s += q.queued
		q.mu.Unlock()
	}
	return s
}

// fileOffset returns where the n bytes at p lie in the model file, when
// they lie in one read-only mapping of it.
func (u *Upload) fileOffset(p unsafe.Pointer, n int) (int64, bool) {
	u.mapsOnce.Do(func() {
		r, err := readMaps("/proc/self/maps", u.path, u.id.dev, u.id.ino)
		if err != nil {
			u.log.Debug("reading this process's mappings; uploads are sent synchronously", "err", err)
		}
		u.ranges = r
	})
	a := uintptr(p)
	for _, r := range u.ranges {
		if a >= r.start && a+uintptr(n) <= r.end && a+uintptr(n) >= a {
			off := r.off + int64(a-r.start)
			if off >= 0 && off+int64(n) <= u.size {
				return off, true
			}
		}
	}
	return 0, false
}

// readMaps returns the read-only shared mappings of the file (by device and inode,
// or by path: an overlay filesystem reports the lower file's device) listed
// in a /proc/<pid>/maps file.
func readMaps(mapsPath, path string, dev, ino uint64) ([]fileRange, error) {
	f, err := os.Open(mapsPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []fileRange
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		if r, ok := parseMapsLine(sc.Text(), path, dev, ino); ok {
			out = append(out, r)
		}
	}
	return out, sc.Err()
}

// parseMapsLine reads one line of /proc/<pid>/maps ("start-end perms offset
// major:minor inode path") and reports whether it maps the file read-only
// and shared (as llama.cpp does). A private mapping's pages may have been
// written while it was writable, so they are not taken for the file's.
func parseMapsLine(line, path string, dev, ino uint64) (fileRange, bool) {
	fields := strings.Fields(line)
	if len(fields) < 6 {
		return fileRange{}, false
	}
	lo, hi, ok := strings.Cut(fields[0], "-")
	if !ok {
		return fileRange{}, false
	}
	start, err1 := strconv.ParseUint(lo, 16, 64)
	end, err2 := strconv.ParseUint(hi, 16, 64)
	off, err3 := strconv.ParseUint(fields[2], 16, 63)
	inode, err4 := strconv.ParseUint(fields[4], 10, 64)
	maj, min, ok2 := strings.Cut(fields[3], ":")
	major, err5 := strconv.ParseUint(maj, 16, 32)
	minor, err6 := strconv.ParseUint(min, 16, 32)
	perms := fields[1]
	if err1 != nil || err2 != nil || err3 != nil || err4 != nil || err5 != nil || err6 != nil || !ok2 ||
		end <= start || len(perms) < 4 || perms[0] != 'r' || perms[1] != '-' || perms[3] != 's' {
		return fileRange{}, false
	}
	sameFile := inode == ino && unix.Mkdev(uint32(major), uint32(minor)) == dev
	// The path is the rest of the line (it may hold spaces).
	if !sameFile && strings.Join(fields[5:], " ") != path {
		return fileRange{}, false
	}
	return fileRange{start: uintptr(start), end: uintptr(end), off: int64(off)}, true
}

// uploadJob is one queued SET_TENSOR from the upload's mapping.
type uploadJob struct {
	wt      rpc.Tensor
	off     uint64 // offset in the tensor
	fileOff int64
	n       int
	gen     uint64 // the connection it was meant for
	cached  bool   // offered by hash first (setCached)
}

// uploadQueue is one node's queue. Its goroutine owns the sends; the
// loader's thread pushes, and every other call on the node drains first.
type uploadQueue struct {
	u      *Upload
	n      *Node
	mu     sync.Mutex
	cond   *sync.Cond
	jobs   []uploadJob
	busy   bool // the goroutine holds a job
	closed bool
	queued int64
}

// push queues j; false when the queue is closed (send at once instead).
func (q *uploadQueue) push(j uploadJob) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return false
	}
	q.jobs = append(q.jobs, j)
	q.queued += int64(j.n)
	q.cond.Broadcast()
	return true
}

// drain waits until everything queued so far has been sent.
func (q *uploadQueue) drain() {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.jobs) > 0 || q.busy {
		q.cond.Wait()
	}
}

func (q *uploadQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.cond.Broadcast()
	q.mu.Unlock()
}

func (q *uploadQueue) run() {
	for {
		q.mu.Lock()
		for len(q.jobs) == 0 && !q.closed {
			q.cond.Wait()
		}
		if len(q.jobs) == 0 {
			q.mu.Unlock()
			return
		}
		j := q.jobs[0]
		q.jobs[0] = uploadJob{}
		q.jobs = q.jobs[1:]
		q.busy = true
		q.mu.Unlock()

		q.send(j)

		q.mu.Lock()
		q.busy = false
		q.cond.Broadcast()
		q.mu.Unlock()
	}
}

// send is one queued SET_TENSOR. A job meant for an earlier connection is
// dropped, as a synchronous one would be.
func (q *uploadQueue) send(j uploadJob) {
	n := q.n
	if j.gen != n.gen.Load() {
		return
	}
	buf := q.u.data[j.fileOff : j.fileOff+int64(j.n)]
	defer n.uploaded.Add(int64(j.n))
	n.do(rpc.CmdSetTensor, j.n, func(ctx context.Context, c *rpc.Client) error {
		if j.cached {
			return n.setCached(ctx, c, j.wt, j.off, buf, &locKey{file: q.u.id, off: j.fileOff, n: uint64(j.n)})
		}
		return c.SetTensor(ctx, j.wt, j.off, buf)
	})
}
