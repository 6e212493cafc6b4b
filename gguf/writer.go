package gguf

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"sync"
)

// Source produces the float32 values of one tensor. Fill writes the values
// with flat (row-major, ne0 fastest) indices [off, off+len(dst)) into dst.
//
// The writer calls Fill with ranges made of whole rows (multiples of ne0),
// each range exactly once, possibly concurrently from several goroutines and
// in any order, so a Source must be safe for concurrent use and must not
// depend on call order if the output is to be deterministic.
type Source interface {
	Fill(off int64, dst []float32) error
}

// SourceFunc adapts a function to Source.
type SourceFunc func(off int64, dst []float32) error

// Fill calls f.
func (f SourceFunc) Fill(off int64, dst []float32) error { return f(off, dst) }

// Const is a Source whose every value is the same.
type Const float32

// Fill sets every value of dst to c.
func (c Const) Fill(_ int64, dst []float32) error {
	for i := range dst {
		dst[i] = float32(c)
	}
	return nil
}

// Slice is a Source that serves values held in memory (small tensors, tests).
type Slice []float32

// Fill copies the requested range.
func (s Slice) Fill(off int64, dst []float32) error {
	if off < 0 || off+int64(len(dst)) > int64(len(s)) {
		return fmt.Errorf("range [%d,%d) outside %d values", off, off+int64(len(dst)), len(s))
	}
	copy(dst, s[off:])
	return nil
}

// Tensor describes one tensor of a File.
type Tensor struct {
	Name string
	Type TensorType
	// Dims are the ggml dimensions ne0, ne1, ... (ne0 is the contiguous one).
	Dims []uint64
	// Data fills the values; it is called only while writing.
	Data Source
}

// Elements is the number of values of the tensor.
func (t *Tensor) Elements() int64 {
	n := int64(1)
	for _, d := range t.Dims {
		n *= int64(d)
	}
	return n
}

// Bytes is the size of the tensor's data, without padding.
func (t *Tensor) Bytes() int64 { return t.Type.Bytes(t.Elements()) }

// File is a GGUF file to be written: ordered metadata and tensors.
type File struct {
	KVs     []KV
	Tensors []Tensor
}

// AddKV appends a metadata pair.
func (f *File) AddKV(key string, v Value) { f.KVs = append(f.KVs, KV{Key: key, Value: v}) }

// AddTensor appends a tensor; dims are ne0, ne1, ...
func (f *File) AddTensor(name string, typ TensorType, dims []uint64, data Source) {
	f.Tensors = append(f.Tensors, Tensor{Name: name, Type: typ, Dims: dims, Data: data})
}

// Alignment is the data alignment: the general.alignment value when the File
// has one (it must be a u32), else DefaultAlignment.
func (f *File) Alignment() uint64 {
	for _, kv := range f.KVs {
		if kv.Key == KeyAlignment {
			if a, ok := kv.Value.v.(uint32); ok && kv.Value.typ == ValueTypeUint32 {
				return uint64(a)
			}
		}
	}
	return DefaultAlignment
}

func pad(n, align uint64) uint64 { return (n + align - 1) / align * align }

// Validate checks what the writer and ggml require: unique non-empty keys,
// well-formed values, a power-of-two u32 alignment, unique tensor names of at
// most 63 bytes, 1 to 4 positive dimensions, a supported type whose block
// size divides ne0, and a data Source.
func (f *File) Validate() error {
	keys := make(map[string]bool, len(f.KVs))
	for i, kv := range f.KVs {
		if kv.Key == "" {
			return fmt.Errorf("gguf: metadata pair %d has an empty key", i)
		}
		if keys[kv.Key] {
			return fmt.Errorf("gguf: duplicate metadata key %q", kv.Key)
		}
		keys[kv.Key] = true
		if err := checkValue(kv.Value); err != nil {
			return fmt.Errorf("gguf: metadata key %q: %w", kv.Key, err)
		}
		if kv.Key == KeyAlignment {
			a, ok := kv.Value.v.(uint32)
			if !ok || kv.Value.typ != ValueTypeUint32 {
				return fmt.Errorf("gguf: %s must be a u32, not %v", KeyAlignment, kv.Value.typ)
			}
			if a == 0 || a&(a-1) != 0 {
				return fmt.Errorf("gguf: %s = %d is not a power of two", KeyAlignment, a)
			}
		}
	}
	names := make(map[string]bool, len(f.Tensors))
	for i := range f.Tensors {
		t := &f.Tensors[i]
		if t.Name == "" || len(t.Name) > MaxTensorNameLen {
			return fmt.Errorf("gguf: tensor %d: name %q must be 1 to %d bytes", i, t.Name, MaxTensorNameLen)
		}
		if names[t.Name] {
			return fmt.Errorf("gguf: duplicate tensor name %q", t.Name)
		}
		names[t.Name] = true
		if !t.Type.Valid() {
			return fmt.Errorf("gguf: tensor %q: unsupported type %v", t.Name, t.Type)
		}
		if len(t.Dims) == 0 || len(t.Dims) > MaxDims {
			return fmt.Errorf("gguf: tensor %q: %d dimensions, want 1 to %d", t.Name, len(t.Dims), MaxDims)
		}
		n := uint64(1)
		for _, d := range t.Dims {
			if d == 0 || d > math.MaxInt64/n {
				return fmt.Errorf("gguf: tensor %q: bad dimensions %v", t.Name, t.Dims)
			}
			n *= d
		}
		if bs := uint64(t.Type.BlockSize()); t.Dims[0]%bs != 0 {
			return fmt.Errorf("gguf: tensor %q: ne0 = %d is not a multiple of the %v block size %d", t.Name, t.Dims[0], t.Type, bs)
		}
		if t.Data == nil {
			return fmt.Errorf("gguf: tensor %q has no data source", t.Name)
		}
	}
	return nil
}

func checkValue(v Value) error {
	if v.typ == ValueTypeArray {
		if v.elem == ValueTypeArray {
			return errors.New("nested arrays are not supported")
		}
		if !sliceMatches(v.elem, v.v) {
			return fmt.Errorf("array of %v holds %T", v.elem, v.v)
		}
		return nil
	}
	if !scalarMatches(v.typ, v.v) {
		return fmt.Errorf("value of type %v holds %T", v.typ, v.v)
	}
	return nil
}

func scalarMatches(t ValueType, x any) bool {
	switch x.(type) {
	case uint8:
		return t == ValueTypeUint8
	case int8:
		return t == ValueTypeInt8
	case uint16:
		return t == ValueTypeUint16
	case int16:
		return t == ValueTypeInt16
	case uint32:
		return t == ValueTypeUint32
	case int32:
		return t == ValueTypeInt32
	case float32:
		return t == ValueTypeFloat32
	case bool:
		return t == ValueTypeBool
	case string:
		return t == ValueTypeString
	case uint64:
		return t == ValueTypeUint64
	case int64:
		return t == ValueTypeInt64
	case float64:
		return t == ValueTypeFloat64
	}
	return false
}

func sliceMatches(t ValueType, x any) bool {
	switch x.(type) {
	case []uint8:
		return t == ValueTypeUint8
	case []int8:
		return t == ValueTypeInt8
	case []uint16:
		return t == ValueTypeUint16
	case []int16:
		return t == ValueTypeInt16
	case []uint32:
		return t == ValueTypeUint32
	case []int32:
		return t == ValueTypeInt32
	case []float32:
		return t == ValueTypeFloat32
	case []bool:
		return t == ValueTypeBool
	case []string:
		return t == ValueTypeString
	case []uint64:
		return t == ValueTypeUint64
	case []int64:
		return t == ValueTypeInt64
	case []float64:
		return t == ValueTypeFloat64
	}
	return false
}

// Layout gives the offsets of a File once written.
type Layout struct {
	// DataStart is the file offset of the tensor data section.
	DataStart int64
	// Offsets are the tensor data offsets relative to DataStart, in order.
	Offsets []int64
	// Size is the total file size.
	Size int64
}

// Layout computes where everything will go, without calling any Source.
func (f *File) Layout() (Layout, error) {
	if err := f.Validate(); err != nil {
		return Layout{}, err
	}
	cw := &countWriter{}
	e := &encoder{w: bufio.NewWriter(cw)}
	f.writeHeader(e, nil)
	if err := e.flush(); err != nil {
		return Layout{}, err
	}
	align := f.Alignment()
	l := Layout{DataStart: int64(pad(uint64(cw.n), align)), Offsets: make([]int64, len(f.Tensors))}
	off := uint64(0)
	for i := range f.Tensors {
		l.Offsets[i] = int64(off)
		off += pad(uint64(f.Tensors[i].Bytes()), align)
	}
	l.Size = l.DataStart + int64(off)
	return l, nil
}

// Size is the exact size in bytes of the written file.
func (f *File) Size() (int64, error) {
	l, err := f.Layout()
	return l.Size, err
}

type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

// encoder writes little-endian GGUF primitives and keeps the first error.
type encoder struct {
	w   *bufio.Writer
	n   int64
	err error
	buf [8]byte
}

func (e *encoder) write(p []byte) {
	if e.err != nil {
		return
	}
	n, err := e.w.Write(p)
	e.n += int64(n)
	e.err = err
}

func (e *encoder) u8(v uint8)   { e.buf[0] = v; e.write(e.buf[:1]) }
func (e *encoder) u16(v uint16) { binary.LittleEndian.PutUint16(e.buf[:], v); e.write(e.buf[:2]) }
func (e *encoder) u32(v uint32) { binary.LittleEndian.PutUint32(e.buf[:], v); e.write(e.buf[:4]) }
func (e *encoder) u64(v uint64) { binary.LittleEndian.PutUint64(e.buf[:], v); e.write(e.buf[:8]) }
func (e *encoder) str(s string) {
	e.u64(uint64(len(s)))
	if e.err == nil {
		n, err := e.w.WriteString(s)
		e.n += int64(n)
		e.err = err
	}
}
func (e *encoder) zeros(n uint64) {
	var z [64]byte
	for n > 0 {
		k := min(n, uint64(len(z)))
		e.write(z[:k])
		n -= k
	}
}
func (e *encoder) flush() error {
	if e.err == nil {
		e.err = e.w.Flush()
	}
	return e.err
}

func (e *encoder) scalar(x any) {
	switch v := x.(type) {
	case uint8:
		e.u8(v)
	case int8:
		e.u8(uint8(v))
	case uint16:
		e.u16(v)
	case int16:
		e.u16(uint16(v))
	case uint32:
		e.u32(v)
	case int32:
		e.u32(uint32(v))
	case float32:
		e.u32(math.Float32bits(v))
	case bool:
		if v {
			e.u8(1)
		} else {
			e.u8(0)
		}
	case string:
		e.str(v)
	case uint64:
		e.u64(v)
	case int64:
		e.u64(uint64(v))
	case float64:
		e.u64(math.Float64bits(v))
	default:
		panic(fmt.Sprintf("gguf: unsupported value %T", x))
	}
}

func each[T any](e *encoder, xs []T) {
	for _, x := range xs {
		e.scalar(x)
	}
}

func (e *encoder) value(v Value) {
	e.u32(uint32(v.typ))
	if v.typ != ValueTypeArray {
		e.scalar(v.v)
		return
	}
	e.u32(uint32(v.elem))
	e.u64(uint64(v.Len()))
	switch x := v.v.(type) {
	case []uint8:
		e.write(x)
	case []int8:
		each(e, x)
	case []uint16:
		each(e, x)
	case []int16:
		each(e, x)
	case []uint32:
		each(e, x)
	case []int32:
		each(e, x)
	case []float32:
		each(e, x)
	case []bool:
		each(e, x)
	case []string:
		each(e, x)
	case []uint64:
		each(e, x)
	case []int64:
		each(e, x)
	case []float64:
		each(e, x)
	}
}

// writeHeader writes everything before the data padding. offsets may be nil
// (only sizes matter then).
func (f *File) writeHeader(e *encoder, offsets []int64) {
	e.write([]byte(Magic))
	e.u32(Version)
	e.u64(uint64(len(f.Tensors)))
	e.u64(uint64(len(f.KVs)))
	for _, kv := range f.KVs {
		e.str(kv.Key)
		e.value(kv.Value)
	}
	for i := range f.Tensors {
		t := &f.Tensors[i]
		e.str(t.Name)
		e.u32(uint32(len(t.Dims)))
		for _, d := range t.Dims {
			e.u64(d)
		}
		e.u32(uint32(t.Type))
		var off int64
		if offsets != nil {
			off = offsets[i]
		}
		e.u64(uint64(off))
	}
}

// WriteOption tunes Write and WriteFile.
type WriteOption func(*writeConfig)

type writeConfig struct {
	workers    int
	chunkElems int64
	progress   func(done, total int64)
	wrap       func(io.Writer) io.Writer
}

// WithConcurrency sets how many goroutines fill and encode tensor data
// (default GOMAXPROCS). The output does not depend on it as long as the
// Sources are order-independent.
func WithConcurrency(n int) WriteOption {
	return func(c *writeConfig) {
		if n > 0 {
			c.workers = n
		}
	}
}

// WithProgress calls fn from the writing goroutine after each chunk of
// tensor data is written, with the bytes of data written so far and in all.
func WithProgress(fn func(done, total int64)) WriteOption {
	return func(c *writeConfig) { c.progress = fn }
}

// withWriterWrap interposes on the file writer (tests inject failures).
func withWriterWrap(fn func(io.Writer) io.Writer) WriteOption {
	return func(c *writeConfig) { c.wrap = fn }
}

// withChunkElems sets the target chunk size in values (tests force many chunks).
func withChunkElems(n int64) WriteOption {
	return func(c *writeConfig) { c.chunkElems = n }
}

const defaultChunkElems = 1 << 20 // 4 MiB of float32 scratch per chunk

func newWriteConfig(opts []WriteOption) writeConfig {
	c := writeConfig{workers: runtime.GOMAXPROCS(0), chunkElems: defaultChunkElems}
	for _, o := range opts {
		o(&c)
	}
	return c
}

// Write streams the file to w and returns the bytes written. Tensor data is
// produced by the Sources in chunks of whole rows, converted to each tensor's
// type by a pool of workers, and written in order through a bufio.Writer;
// memory use is bounded by a few chunks per worker. ctx is checked between
// chunks (so between tensors too).
func (f *File) Write(ctx context.Context, w io.Writer, opts ...WriteOption) (int64, error) {
	cfg := newWriteConfig(opts)
	layout, err := f.Layout()
	if err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	e := &encoder{w: bufio.NewWriterSize(w, 1<<20)}
	f.writeHeader(e, layout.Offsets)
	e.zeros(uint64(layout.DataStart - e.n))
	if e.err != nil {
		return e.n, e.err
	}
	if err := f.writeData(ctx, e, cfg, layout); err != nil {
		return e.n, err
	}
	if err := e.flush(); err != nil {
		return e.n, err
	}
	if e.n != layout.Size {
		return e.n, fmt.Errorf("gguf: internal error: wrote %d bytes, layout says %d", e.n, layout.Size)
	}
	return e.n, nil
}

type chunk struct {
	tensor int
	off    int64 // first value
	n      int64 // values
	last   bool  // last chunk of its tensor
	done   chan chunkResult
}

type chunkResult struct {
	buf *[]byte
	err error
}

func (f *File) writeData(ctx context.Context, e *encoder, cfg writeConfig, layout Layout) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	align := f.Alignment()
	var total int64
	for i := range f.Tensors {
		total += f.Tensors[i].Bytes()
	}

	jobs := make(chan *chunk)
	order := make(chan *chunk, 2*cfg.workers)
	var bufs sync.Pool
	var wg sync.WaitGroup

	// Producer: cut tensors into chunks of whole rows, in file order.
	go func() {
		defer close(order)
		defer close(jobs)
		for i := range f.Tensors {
			t := &f.Tensors[i]
			ne0 := int64(t.Dims[0])
			rows := t.Elements() / ne0
			per := max(1, cfg.chunkElems/ne0)
			for r := int64(0); r < rows; r += per {
				c := &chunk{tensor: i, off: r * ne0, n: min(per, rows-r) * ne0, last: r+per >= rows, done: make(chan chunkResult, 1)}
				select {
				case order <- c:
				case <-ctx.Done():
					return
				}
				select {
				case jobs <- c:
				case <-ctx.Done():
					c.done <- chunkResult{err: ctx.Err()}
					return
				}
			}
		}
	}()

	// Workers: fill and encode.
	for range cfg.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var scratch []float32
			for c := range jobs {
				if err := ctx.Err(); err != nil {
					c.done <- chunkResult{err: err}
					continue
				}
				t := &f.Tensors[c.tensor]
				if int64(cap(scratch)) < c.n {
					scratch = make([]float32, c.n)
				}
				vals := scratch[:c.n]
				if err := t.Data.Fill(c.off, vals); err != nil {
					c.done <- chunkResult{err: fmt.Errorf("gguf: tensor %q: fill values [%d,%d): %w", t.Name, c.off, c.off+c.n, err)}
					continue
				}
				nb := t.Type.Bytes(c.n)
				bp, _ := bufs.Get().(*[]byte)
				if bp == nil {
					bp = new([]byte)
				}
				if int64(cap(*bp)) < nb {
					*bp = make([]byte, nb)
				}
				*bp = (*bp)[:nb]
				encode(t.Type, *bp, vals)
				c.done <- chunkResult{buf: bp}
			}
		}()
	}
	defer wg.Wait() // after cancel (deferred earlier, runs later) stops the producer
	defer cancel()

	for c := range order {
		res := <-c.done
		if res.err != nil {
			return res.err
		}
		e.write(*res.buf)
		bufs.Put(res.buf)
		if c.last {
			t := &f.Tensors[c.tensor]
			e.zeros(pad(uint64(t.Bytes()), align) - uint64(t.Bytes()))
		}
		if e.err != nil {
			return e.err
		}
		if cfg.progress != nil {
			cfg.progress(e.n-layout.DataStart, total)
		}
	}
	// The producer stops early only when ctx is cancelled.
	if err := ctx.Err(); err != nil {
		return err
	}
	return nil
}

// WriteFile writes f to path atomically: it streams into a temporary file in
// the same directory, fsyncs it, and renames it over path. On any error
// (including a full disk or a cancelled ctx) the temporary file is removed
// and path is left untouched. The file gets mode 0644.
func WriteFile(ctx context.Context, path string, f *File, opts ...WriteOption) (err error) {
	cfg := newWriteConfig(opts)
	if err := f.Validate(); err != nil {
		return fmt.Errorf("gguf: write %s: %w", path, err)
	}
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return fmt.Errorf("gguf: write %s: %w", path, err)
	}
	tmpName := tmp.Name()
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmpName)
			err = fmt.Errorf("gguf: write %s: %w", path, err)
		}
	}()
	var w io.Writer = tmp
	if cfg.wrap != nil {
		w = cfg.wrap(w)
	}
	if _, err = f.Write(ctx, w, opts...); err != nil {
		return err
	}
	if err = tmp.Sync(); err != nil {
		return err
	}
	if err = tmp.Chmod(0o644); err != nil {
		return err
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	if err = ctx.Err(); err != nil {
		return err
	}
	if err = os.Rename(tmpName, path); err != nil {
		return err
	}
	// Make the rename durable; failure here is not fatal to the write.
	if d, derr := os.Open(dir); derr == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}
