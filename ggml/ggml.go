// Package ggml is a thin cgo layer over ggml's public backend API, enough to
// serve RPC: devices, buffers, tensors rebuilt from validated descriptions,
// and graph compute. It trusts its callers (package worker) to have checked
// every field: ggml aborts the process on what it does not expect.
package ggml

/*
#include <stdlib.h>
#include <string.h>
#include "ggml.h"
#include "ggml-backend.h"

typedef struct {
	int32_t  type;
	int64_t  ne[4];
	uint64_t nb[4];
	int32_t  op;
	int32_t  op_params[16];
	int32_t  flags;
	int32_t  src[10];
	int32_t  view_src;
	uint64_t view_offs;
	ggml_backend_buffer_t buffer;
	uint64_t offset; // data = base(buffer) + offset
	char     name[64];
} box_tensor_spec;

// box_make_tensors creates tensor headers (no data of their own) for specs
// and links sources and views by index.
static struct ggml_tensor ** box_make_tensors(struct ggml_context *ctx, const box_tensor_spec *s, int n) {
	struct ggml_tensor **ts = (struct ggml_tensor **)calloc((size_t)n, sizeof(*ts));
	if (!ts) return NULL;
	for (int i = 0; i < n; i++) {
		struct ggml_tensor *t = ggml_new_tensor_4d(ctx, (enum ggml_type)s[i].type, s[i].ne[0], s[i].ne[1], s[i].ne[2], s[i].ne[3]);
		for (int d = 0; d < 4; d++) t->nb[d] = (size_t)s[i].nb[d];
		t->op = (enum ggml_op)s[i].op;
		memcpy(t->op_params, s[i].op_params, sizeof(t->op_params));
		t->flags = s[i].flags;
		t->buffer = s[i].buffer;
		t->data = s[i].buffer ? (char *)ggml_backend_buffer_get_base(s[i].buffer) + s[i].offset : NULL;
		memcpy(t->name, s[i].name, sizeof(t->name));
		t->name[sizeof(t->name) - 1] = 0;
		ts[i] = t;
	}
	for (int i = 0; i < n; i++) {
		for (int j = 0; j < 10; j++) ts[i]->src[j] = s[i].src[j] >= 0 ? ts[s[i].src[j]] : NULL;
		ts[i]->view_src = s[i].view_src >= 0 ? ts[s[i].view_src] : NULL;
		ts[i]->view_offs = (size_t)s[i].view_offs;
	}
	return ts;
}

static struct ggml_context * box_ctx(size_t n_tensors, size_t n_nodes) {
	struct ggml_init_params p = {
		ggml_tensor_overhead() * n_tensors + (n_nodes ? ggml_graph_overhead_custom(n_nodes, false) : 0) + 1024,
		NULL, true,
	};
	return ggml_init(p);
}

// box_graph_build returns a context owning the tensors and a graph of the
// given nodes, or NULL.
static struct ggml_context * box_graph_build(const box_tensor_spec *s, int n, const int32_t *nodes, int n_nodes,
		ggml_backend_dev_t dev, struct ggml_cgraph **out, int *unsupported) {
	struct ggml_context *ctx = box_ctx((size_t)n, (size_t)n_nodes);
	if (!ctx) return NULL;
	struct ggml_tensor **ts = box_make_tensors(ctx, s, n);
	if (!ts) { ggml_free(ctx); return NULL; }
	struct ggml_cgraph *g = ggml_new_graph_custom(ctx, (size_t)n_nodes, false);
	*unsupported = -1;
	for (int i = 0; i < n_nodes; i++) {
		struct ggml_tensor *t = ts[nodes[i]];
		if (*unsupported < 0 && t->op != GGML_OP_NONE && !ggml_backend_dev_supports_op(dev, t)) *unsupported = i;
		ggml_graph_add_node(g, t);
	}
	free(ts);
	*out = g;
	return ctx;
}

static size_t box_alloc_size(ggml_backend_buffer_type_t buft, const box_tensor_spec *s, int n) {
	struct ggml_context *ctx = box_ctx((size_t)n, 0);
	if (!ctx) return 0;
	struct ggml_tensor **ts = box_make_tensors(ctx, s, n);
	size_t r = ts ? ggml_backend_buft_get_alloc_size(buft, ts[0]) : 0;
	free(ts);
	ggml_free(ctx);
	return r;
}

static int box_init_tensor(const box_tensor_spec *s) {
	struct ggml_context *ctx = box_ctx(1, 0);
	if (!ctx) return -1;
	struct ggml_tensor **ts = box_make_tensors(ctx, s, 1);
	int r = -1;
	if (ts) {
		r = ggml_backend_buffer_init_tensor(s[0].buffer, ts[0]) == GGML_STATUS_SUCCESS ? 0 : -1;
		if (ts[0]->extra) r = -2; // backend-private state we could not keep
		free(ts);
	}
	ggml_free(ctx);
	return r;
}

// box_copy copies src's bytes to dst; both have the same layout.
static int box_copy(const box_tensor_spec *s) {
	struct ggml_context *ctx = box_ctx(2, 0);
	if (!ctx) return -1;
	struct ggml_tensor **ts = box_make_tensors(ctx, s, 2);
	if (!ts) { ggml_free(ctx); return -1; }
	ggml_backend_tensor_copy(ts[0], ts[1]);
	free(ts);
	ggml_free(ctx);
	return 0;
}

// Raw byte access to a buffer through a 1-D I8 tensor spanning it, so
// non-host (device) buffers work too.
static void box_buffer_rw(ggml_backend_buffer_t b, void *data, size_t off, size_t n, int write) {
	struct ggml_context *ctx = box_ctx(1, 0);
	struct ggml_tensor *t = ggml_new_tensor_1d(ctx, GGML_TYPE_I8, (int64_t)ggml_backend_buffer_get_size(b));
	t->buffer = b;
	t->data = ggml_backend_buffer_get_base(b);
	if (write) ggml_backend_tensor_set(t, data, off, n);
	else ggml_backend_tensor_get(t, data, off, n);
	ggml_free(ctx);
}

static void box_set_threads(ggml_backend_dev_t dev, ggml_backend_t be, int n) {
	ggml_backend_reg_t reg = ggml_backend_dev_backend_reg(dev);
	if (!reg) return;
	ggml_backend_set_n_threads_t fn = (ggml_backend_set_n_threads_t)ggml_backend_reg_get_proc_address(reg, "ggml_backend_set_n_threads");
	if (fn) fn(be, n);
}

extern void boxGgmlAbort(char *msg);
static void box_abort_cb(const char *msg) { boxGgmlAbort((char *)msg); }
static void box_install_abort(void) { ggml_set_abort_callback(box_abort_cb); }

#include <malloc.h>
static void box_fix_mmap_threshold(void) { mallopt(M_MMAP_THRESHOLD, 256 * 1024); }

#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
// box_cpu_range gives the whole pages of a buffer of the CPU backend's own
// buffer type (memory from posix_memalign: private anonymous pages), or
// n = 0 for any other buffer or one without a whole page.
static void box_cpu_range(ggml_backend_buffer_t b, uintptr_t *lo, size_t *n) {
	*lo = 0; *n = 0;
	if (ggml_backend_buffer_get_type(b) != ggml_backend_cpu_buffer_type()) return;
	uintptr_t p = (uintptr_t)ggml_backend_buffer_get_base(b);
	uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE);
	uintptr_t l = (p + pg - 1) & ~(pg - 1), h = (p + ggml_backend_buffer_get_size(b)) & ~(pg - 1);
	if (p != 0 && h > l) { *lo = l; *n = h - l; }
}

// box_zero_cpu zeroes a CPU-backend buffer by dropping its whole pages
// (MADV_DONTNEED: the kernel maps zero pages back on first touch) and
// clearing only the partial pages at its ends. It returns 0, having done
// nothing, for any other buffer or when madvise refuses.
static int box_zero_cpu(ggml_backend_buffer_t b) {
	uintptr_t lo;
	size_t n;
	box_cpu_range(b, &lo, &n);
	if (n == 0) return 0;
	uint8_t *p = (uint8_t *)ggml_backend_buffer_get_base(b);
	size_t size = ggml_backend_buffer_get_size(b);
	if (madvise((void *)lo, n, MADV_DONTNEED) != 0) return 0;
	memset(p, 0, lo - (uintptr_t)p);
	memset((void *)(lo + n), 0, (uintptr_t)p + size - (lo + n));
	return 1;
}

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif
// box_populate faults pages in as a write would, keeping their contents
// (Linux 5.14+; an older kernel refuses, which costs nothing). On memory
// already unmapped it fails harmlessly; it stops early once *stop is set.
// It goes 4 MiB at a time because the advice holds the process's mmap lock
// for as long as one call lasts: over a whole buffer (0.16 s per 400 MiB
// here) it stalled every mmap and munmap of the process, the Go runtime's
// included, and so the connection's replies, for that long.
static void box_populate(uintptr_t lo, size_t n, int32_t *stop) {
	const size_t step = 4u << 20;
	for (size_t o = 0; o < n && !__atomic_load_n(stop, __ATOMIC_RELAXED); o += step) {
		size_t k = n - o < step ? n - o : step;
		if (madvise((void *)(lo + o), k, MADV_POPULATE_WRITE) != 0) return;
	}
}
*/
import "C"

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"unsafe"

	_ "github.com/ollama/ollama/ml/backend/ggml/ggml/src"
)

// Some ggml failures still abort the process (see worker's validation for
// how few are left reachable); at least say why in box's log first.
var abortOnce sync.Once

//export boxGgmlAbort
func boxGgmlAbort(msg *C.char) {
	slog.Error("ggml abort", "msg", C.GoString(msg))
}

func init() {
	abortOnce.Do(func() { C.box_install_abort() })
}

// FixMmapThreshold sets glibc's mmap threshold for the whole process to 256
// KiB, for good. glibc raises the threshold after a large block is freed, so
// later buffers of that size come from the heap, and their memory can stay
// with the process after they are freed. A fixed threshold keeps every
// buffer of 256 KiB or more in its own mapping, returned to the system on
// free. It changes the process's allocator, so it is no side effect of
// importing ggml: the processes that hold ggml buffers call it (the compute
// process, box serve and box bench).
func FixMmapThreshold() { C.box_fix_mmap_threshold() }

// Device is one ggml backend device.
type Device struct {
	Index       int    `json:"index"`
	Name        string `json:"name"`
	Description string `json:"description"`
	Type        string `json:"type"`
	// Backend is the ggml backend (registry) the device belongs to: CPU,
	// Vulkan, CUDA, ...
	Backend string `json:"backend"`
	Free    uint64 `json:"memory_free"`
	Total   uint64 `json:"memory_total"`

	dev C.ggml_backend_dev_t
}

// Devices lists ggml's devices with live memory figures.
func Devices() []Device {
	n := int(C.ggml_backend_dev_count())
	out := make([]Device, 0, n)
	for i := 0; i < n; i++ {
		d := C.ggml_backend_dev_get(C.size_t(i))
		out = append(out, describe(i, d))
	}
	return out
}

func describe(i int, d C.ggml_backend_dev_t) Device {
	var free, total C.size_t
	C.ggml_backend_dev_memory(d, &free, &total)
	typ := "accel"
	switch C.ggml_backend_dev_type(d) {
	case C.GGML_BACKEND_DEVICE_TYPE_CPU:
		typ = "cpu"
	case C.GGML_BACKEND_DEVICE_TYPE_GPU:
		typ = "gpu"
	case C.GGML_BACKEND_DEVICE_TYPE_IGPU:
		typ = "igpu"
	}
	backend := ""
	if reg := C.ggml_backend_dev_backend_reg(d); reg != nil {
		backend = C.GoString(C.ggml_backend_reg_name(reg))
	}
	return Device{Index: i, Name: C.GoString(C.ggml_backend_dev_name(d)), Description: C.GoString(C.ggml_backend_dev_description(d)),
		Type: typ, Backend: backend, Free: uint64(free), Total: uint64(total), dev: d}
}

// Alignment and MaxSize describe the device's default buffer type; they
// need no backend.
func (d Device) Alignment() uint64 {
	return uint64(C.ggml_backend_buft_get_alignment(C.ggml_backend_dev_buffer_type(d.dev)))
}
func (d Device) MaxSize() uint64 {
	return uint64(C.ggml_backend_buft_get_max_size(C.ggml_backend_dev_buffer_type(d.dev)))
}

// Backend is an initialised device. It is not safe for concurrent use: in
// box a backend belongs to the one compute process (one connection) that
// opened it.
type Backend struct {
	Device Device
	be     C.ggml_backend_t
	buft   C.ggml_backend_buffer_type_t
}

// Open initialises d with threads compute threads (where the device has any).
func Open(d Device, threads int) (*Backend, error) {
	be := C.ggml_backend_dev_init(d.dev, nil)
	if be == nil {
		return nil, fmt.Errorf("init backend for device %s", d.Name)
	}
	if threads > 0 {
		C.box_set_threads(d.dev, be, C.int(threads))
	}
	// No thread pool of its own: ggml makes the threads of each graph. A
	// kept pool (sleeping between graphs) measured no faster on the
	// graph round trip or two-worker decode, and a polling one would take
	// cores from whatever shares the host.
	return &Backend{Device: d, be: be, buft: C.ggml_backend_dev_buffer_type(d.dev)}, nil
}

// Close frees the backend; every buffer must be freed first.
func (b *Backend) Close() {
	if b.be != nil {
		C.ggml_backend_free(b.be)
		b.be = nil
	}
}

// Memory returns the device's live free and total bytes.
func (b *Backend) Memory() (free, total uint64) {
	var f, t C.size_t
	C.ggml_backend_dev_memory(b.Device.dev, &f, &t)
	return uint64(f), uint64(t)
}

// Alignment and MaxSize describe the device's default buffer type.
func (b *Backend) Alignment() uint64 { return uint64(C.ggml_backend_buft_get_alignment(b.buft)) }
func (b *Backend) MaxSize() uint64   { return uint64(C.ggml_backend_buft_get_max_size(b.buft)) }

// Buffer is device memory owned by one RPC connection.
type Buffer struct {
	Backend *Backend
	b       C.ggml_backend_buffer_t
	size    uint64
	host    bool
	pf      *prefault // the running Prefault, if any

	ownOnce sync.Once
	own     bool // see OwnMapping
}

// prefault is one Prefault goroutine: stop asks it to end after the step
// it is in, done closes when it has.
type prefault struct {
	stop atomic.Int32
	done chan struct{}
}

// ErrAlloc means the device could not provide the memory.
var ErrAlloc = errors.New("device allocation failed")

// Alloc allocates size bytes of the device's default buffer type.
func (b *Backend) Alloc(size uint64) (*Buffer, error) {
	if size > uint64(^C.size_t(0)>>1) {
		return nil, ErrAlloc
	}
	buf := C.ggml_backend_buft_alloc_buffer(b.buft, C.size_t(size))
	if buf == nil {
		return nil, ErrAlloc
	}
	return &Buffer{Backend: b, b: buf, size: uint64(C.ggml_backend_buffer_get_size(buf)), host: bool(C.ggml_backend_buffer_is_host(buf))}, nil
}

// Free releases the memory, after stopping its Prefault. Safe to call
// twice.
func (buf *Buffer) Free() {
	buf.StopPrefault()
	if buf.b != nil {
		C.ggml_backend_buffer_free(buf.b)
		buf.b = nil
	}
}

// Size is the buffer's real size (may exceed what was asked).
func (buf *Buffer) Size() uint64 { return buf.size }

// IsHost reports whether the memory is ordinary host memory.
func (buf *Buffer) IsHost() bool { return buf.host }

// Clear fills the whole buffer with v.
func (buf *Buffer) Clear(v byte) { C.ggml_backend_buffer_clear(buf.b, C.uint8_t(v)) }

// Zero fills the whole buffer with zeros. A CPU buffer is not written: its
// pages are handed back to the kernel, which maps zero-filled ones on first
// touch, so zeroing a fresh buffer costs no pass over its memory (the
// uploads that follow fault the pages in anyway).
func (buf *Buffer) Zero() {
	if C.box_zero_cpu(buf.b) == 0 {
		buf.Clear(0)
	}
}

// Prefault starts faulting in a CPU buffer's pages on another thread and
// returns at once: the first touch of fresh memory costs the kernel a page
// clear (and a virtual machine's host a fault) per 4 KiB, which then
// overlaps with the socket reads that fill the buffer instead of stalling
// them. Page contents are kept, so it races with no write. StopPrefault
// (and Free) end it. Other buffers: no-op. Call it at most once.
func (buf *Buffer) Prefault() {
	var lo C.uintptr_t
	var n C.size_t
	C.box_cpu_range(buf.b, &lo, &n)
	if n < 1<<20 || buf.pf != nil {
		return // a few pages are not worth a thread; one prefault is enough
	}
	pf := &prefault{done: make(chan struct{})}
	buf.pf = pf
	go func() {
		defer close(pf.done)
		C.box_populate(lo, n, (*C.int32_t)(unsafe.Pointer(&pf.stop)))
	}()
}

// StopPrefault ends the buffer's Prefault, if one runs, and returns once
// no step of it is in flight: pages mapped over after that are not faulted
// in as private copies.
func (buf *Buffer) StopPrefault() {
	if buf.pf != nil {
		buf.pf.stop.Store(1)
		<-buf.pf.done
	}
}

// OwnMapping reports whether a host buffer's memory is one anonymous
// mapping of its own, as the C library makes for a large allocation:
// freeing the buffer then unmaps all of it, and the heap never reuses it,
// so a part of it may be replaced by a private file mapping
// (cache.ReadInto) that the buffer's Free releases. Anything else (heap
// memory, a mapping merged with a neighbour, a device buffer) is false.
func (buf *Buffer) OwnMapping() bool {
	buf.ownOnce.Do(func() {
		if !buf.host || buf.b == nil || buf.size == 0 {
			return
		}
		base := uintptr(C.ggml_backend_buffer_get_base(buf.b))
		buf.own = ownMapping("/proc/self/maps", base, uintptr(buf.size), uintptr(os.Getpagesize()))
	})
	return buf.own
}

// HostBytes returns the host memory [off, off+n) for direct socket I/O; only
// for host buffers, and only while the buffer lives. Callers check bounds.
func (buf *Buffer) HostBytes(off, n uint64) []byte {
	if !buf.host || n == 0 {
		return nil
	}
	base := unsafe.Pointer(C.ggml_backend_buffer_get_base(buf.b))
	return unsafe.Slice((*byte)(unsafe.Add(base, uintptr(off))), int(n))
}

// Write copies data to offset off; Read copies from it. Callers check bounds.
func (buf *Buffer) Write(off uint64, data []byte) {
	if len(data) == 0 {
		return
	}
	if buf.host {
		copy(buf.HostBytes(off, uint64(len(data))), data)
		return
	}
	C.box_buffer_rw(buf.b, unsafe.Pointer(&data[0]), C.size_t(off), C.size_t(len(data)), 1)
}

func (buf *Buffer) Read(off uint64, dst []byte) {
	if len(dst) == 0 {
		return
	}
	if buf.host {
		copy(dst, buf.HostBytes(off, uint64(len(dst))))
		return
	}
	C.box_buffer_rw(buf.b, unsafe.Pointer(&dst[0]), C.size_t(off), C.size_t(len(dst)), 0)
}

// TensorSpec describes a tensor whose every field was validated: type and op
// in range, shape and strides consistent, data inside Buffer.
type TensorSpec struct {
	Type     uint32
	NE       [4]int64
	NB       [4]uint64
	Op       uint32
	OpParams [64]byte
	Flags    int32
	Src      [10]int32 // index into the same spec list, -1 for none
	ViewSrc  int32
	ViewOffs uint64
	Buffer   *Buffer // nil only where the caller allows a tensor without data
	Offset   uint64  // data offset inside Buffer
	Name     [64]byte
}

func cspecs(specs []TensorSpec) []C.box_tensor_spec {
	out := make([]C.box_tensor_spec, len(specs))
	for i := range specs {
		s, c := &specs[i], &out[i]
		c._type = C.int32_t(s.Type)
		for d := 0; d < 4; d++ {
			c.ne[d] = C.int64_t(s.NE[d])
			c.nb[d] = C.uint64_t(s.NB[d])
		}
		c.op = C.int32_t(s.Op)
		for j := 0; j < 16; j++ {
			c.op_params[j] = C.int32_t(int32(uint32(s.OpParams[4*j]) | uint32(s.OpParams[4*j+1])<<8 | uint32(s.OpParams[4*j+2])<<16 | uint32(s.OpParams[4*j+3])<<24))
		}
		c.flags = C.int32_t(s.Flags)
		for j := 0; j < 10; j++ {
			c.src[j] = C.int32_t(s.Src[j])
		}
		c.view_src = C.int32_t(s.ViewSrc)
		c.view_offs = C.uint64_t(s.ViewOffs)
		if s.Buffer != nil {
			c.buffer = s.Buffer.b
		}
		c.offset = C.uint64_t(s.Offset)
		for j := 0; j < 63; j++ {
			c.name[j] = C.char(s.Name[j])
		}
	}
	return out
}

// Graph is a rebuilt compute graph; it points into its tensors' buffers, so
// it must be freed before any of them.
type Graph struct {
	ctx *C.struct_ggml_context
	g   *C.struct_ggml_cgraph
	// Buffers the graph reads or writes.
	Buffers map[*Buffer]struct{}
}

// ErrUnsupported means a node's op is not supported by the device.
type ErrUnsupported struct{ Node int }

func (e ErrUnsupported) Error() string {
	return fmt.Sprintf("node %d: op not supported by the device", e.Node)
}

// BuildGraph rebuilds a graph whose nodes are indexes into specs, for b's device.
func (b *Backend) BuildGraph(specs []TensorSpec, nodes []int32) (*Graph, error) {
	if len(specs) == 0 || len(nodes) == 0 {
		return nil, errors.New("empty graph")
	}
	cs := cspecs(specs)
	cn := make([]C.int32_t, len(nodes))
	for i, n := range nodes {
		cn[i] = C.int32_t(n)
	}
	var g *C.struct_ggml_cgraph
	var unsupported C.int
	ctx := C.box_graph_build(&cs[0], C.int(len(cs)), &cn[0], C.int(len(cn)), b.Device.dev, &g, &unsupported)
	if ctx == nil {
		return nil, errors.New("out of memory building graph")
	}
	if unsupported >= 0 {
		C.ggml_free(ctx)
		return nil, ErrUnsupported{Node: int(unsupported)}
	}
	gr := &Graph{ctx: ctx, g: g, Buffers: map[*Buffer]struct{}{}}
	for i := range specs {
		if specs[i].Buffer != nil {
			gr.Buffers[specs[i].Buffer] = struct{}{}
		}
	}
	return gr, nil
}

// Free releases the graph's context.
func (g *Graph) Free() {
	if g.ctx != nil {
		C.ggml_free(g.ctx)
		g.ctx, g.g = nil, nil
	}
}

// Compute runs g synchronously.
func (b *Backend) Compute(g *Graph) error {
	if st := C.ggml_backend_graph_compute(b.be, g.g); st != C.GGML_STATUS_SUCCESS {
		return fmt.Errorf("graph compute failed: status %d", int(st))
	}
	return nil
}

// AllocSize is what the device needs to allocate for t (whose sources follow).
func (b *Backend) AllocSize(t TensorSpec, srcs []TensorSpec) uint64 {
	all := append([]TensorSpec{t}, srcs...)
	cs := cspecs(all)
	return uint64(C.box_alloc_size(b.buft, &cs[0], C.int(len(cs))))
}

// InitTensor lets the backend prepare t (e.g. zero padding of quantized rows).
func InitTensor(t TensorSpec) error {
	cs := cspecs([]TensorSpec{t})
	switch C.box_init_tensor(&cs[0]) {
	case 0:
		return nil
	case -2:
		return errors.New("backend attached private data to the tensor (unsupported over RPC)")
	default:
		return errors.New("init tensor failed")
	}
}

// Copy copies src to dst, which must have the same type, shape and strides.
func Copy(src, dst TensorSpec) error {
	cs := cspecs([]TensorSpec{src, dst})
	if C.box_copy(&cs[0]) != 0 {
		return errors.New("copy failed")
	}
	return nil
}
