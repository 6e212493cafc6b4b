package gguf

// A validating GGUF reader. Decode parses the header, the metadata and the
// tensor descriptions of a GGUF v2 or v3 file and checks everything ggml's
// loader (gguf.cpp and llama-model-loader) relies on, so that a bad file is
// refused with one line before llama.cpp sees it. Tensor data is not read.
//
// Every count and length read from the file is bounded by the bytes left in
// the file before anything is allocated for it, arrays are nested at most two
// levels deep, and no input makes it panic.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"math/bits"
	"os"
	"sort"
	"unicode/utf8"
)

// MaxKeyLen is the longest metadata key Decode accepts.
const MaxKeyLen = 65535

// MaxInlineArray is the longest metadata array Decode keeps in Info.KV;
// longer arrays are recorded as an ArrayInfo.
const MaxInlineArray = 64

// MaxStringValue is the longest string value Decode accepts (a sanity bound:
// chat templates, the longest strings real models carry, are some kilobytes).
const MaxStringValue = 64 << 20

// ArrayInfo stands in Info.KV for an array longer than MaxInlineArray
// elements: its element type and length. Type is ValueTypeArray for an array
// of arrays.
type ArrayInfo struct {
	Type ValueType
	Len  uint64
}

// Info is what Decode learns about a GGUF file.
type Info struct {
	Version   uint32
	Alignment uint64 // general.alignment, or DefaultAlignment
	// DataOffset is the file offset of the tensor data section (the end of
	// the tensor descriptions rounded up to Alignment).
	DataOffset int64
	FileSize   int64
	// KV holds the metadata. Scalars are uint8, int8, uint16, int16, uint32,
	// int32, float32, bool, string, uint64, int64 or float64; arrays of up to
	// MaxInlineArray elements are the matching slice ([]uint32, []string,
	// ...), or []any of inner arrays for an array of arrays; longer arrays
	// are an ArrayInfo.
	KV      map[string]any
	Tensors []TensorInfo // in file order
}

// TensorInfo describes one tensor of a decoded file.
type TensorInfo struct {
	Name string
	Dims []uint64   // ne0, ne1, ... (at most MaxDims; may be empty for a scalar)
	Type TensorType // any ggml type, see Traits
	// Offset is the data offset relative to Info.DataOffset.
	Offset uint64
	// Bytes is the size of the data, without padding.
	Bytes uint64
}

// Elements is the number of values of the tensor.
func (t *TensorInfo) Elements() uint64 {
	n := uint64(1)
	for _, d := range t.Dims {
		n *= d
	}
	return n
}

// TypeTraits are the storage properties of a ggml tensor type, as in ggml's
// type_traits table.
type TypeTraits struct {
	Name      string
	BlockSize uint64 // values per block
	TypeSize  uint64 // bytes per block
}

// ggmlTypes is ggml's type_traits table (ollama v0.17.4, ggml.c and
// ggml-common.h) for GGML_TYPE_COUNT = 40 types. Removed types (4, 5, 31-33,
// 36-38) have a zero BlockSize.
var ggmlTypes = [40]TypeTraits{
	0:  {"f32", 1, 4},
	1:  {"f16", 1, 2},
	2:  {"q4_0", 32, 18},
	3:  {"q4_1", 32, 20},
	6:  {"q5_0", 32, 22},
	7:  {"q5_1", 32, 24},
	8:  {"q8_0", 32, 34},
	9:  {"q8_1", 32, 36},
	10: {"q2_K", 256, 84},
	11: {"q3_K", 256, 110},
	12: {"q4_K", 256, 144},
	13: {"q5_K", 256, 176},
	14: {"q6_K", 256, 210},
	15: {"q8_K", 256, 292},
	16: {"iq2_xxs", 256, 66},
	17: {"iq2_xs", 256, 74},
	18: {"iq3_xxs", 256, 98},
	19: {"iq1_s", 256, 50},
	20: {"iq4_nl", 32, 18},
	21: {"iq3_s", 256, 110},
	22: {"iq2_s", 256, 82},
	23: {"iq4_xs", 256, 136},
	24: {"i8", 1, 1},
	25: {"i16", 1, 2},
	26: {"i32", 1, 4},
	27: {"i64", 1, 8},
	28: {"f64", 1, 8},
	29: {"iq1_m", 256, 56},
	30: {"bf16", 1, 2},
	34: {"tq1_0", 256, 54},
	35: {"tq2_0", 256, 66},
	39: {"mxfp4", 32, 17},
}

// Traits returns the block size and block bytes of any ggml type, and false
// for a number that is not (or no longer) a ggml type.
func (t TensorType) Traits() (TypeTraits, bool) {
	if uint64(t) >= uint64(len(ggmlTypes)) || ggmlTypes[t].BlockSize == 0 {
		return TypeTraits{}, false
	}
	return ggmlTypes[t], true
}

// Minimum encoded sizes, used to bound counts before allocating.
const (
	minKVBytes      = 8 + 4 + 1     // key length, type, u8 value
	minTensorBytes  = 8 + 4 + 4 + 8 // name length, n_dims, type, offset
	minInnerArray   = 4 + 8         // element type and length of an inner array
	readChunk       = 64 << 10
	maxNestingDepth = 2
)

// Inspect opens path and decodes it (see Decode). Errors do not name the path.
func Inspect(path string) (*Info, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, stripPath(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, stripPath(err)
	}
	if !st.Mode().IsRegular() {
		return nil, errors.New("not a regular file")
	}
	return Decode(f, st.Size())
}

// Check validates the GGUF file at path without loading it (header,
// metadata, tensor descriptions, data bounds). Its error is one line that
// names the file, for a command to refuse a bad model before it starts.
func Check(path string) error {
	if err := Validate(path); err != nil {
		return fmt.Errorf("model %s: %v", path, err)
	}
	return nil
}

// Validate is Check with an error in words that does not name the file
// ("no such file", "is a directory", "not a GGUF file (magic ...)", ...):
// what llama.LoadModel says before llama.cpp sees a file.
func Validate(path string) error {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		return errors.New("is a directory")
	}
	_, err := Inspect(path)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, fs.ErrNotExist):
		err = errors.New("no such file")
	case errors.Is(err, fs.ErrPermission):
		err = errors.New("permission denied")
	}
	return err
}

// Decode reads and validates the GGUF header, metadata and tensor
// descriptions of the size bytes of r, and checks that the tensor data lies
// within them, aligned, in order and without overlap, as ggml requires. The
// error, if any, is one line naming what is wrong and where (key/value,
// tensor info and array element positions count from 1; names are quoted),
// without the file name.
func Decode(r io.ReaderAt, size int64) (*Info, error) {
	if size < 0 {
		return nil, fmt.Errorf("invalid file size %d", size)
	}
	d := &decoder{r: r, size: size}
	info, err := d.decode()
	if err != nil {
		return nil, err
	}
	return info, nil
}

type decoder struct {
	r      io.ReaderAt
	size   int64
	pos    int64
	buf    []byte
	bufOff int64

	// Where we are, for error messages.
	sec      string   // "header", "key/value", "tensor info"
	idx, cnt uint64   // 0-based item index (shown from 1) and item count
	name     string   // key or tensor name once known
	elems    []arrPos // position inside (nested) array values
}

type arrPos struct{ i, n uint64 }

func (d *decoder) where() string {
	s := d.sec
	if d.cnt > 0 {
		s = fmt.Sprintf("%s %d of %d", d.sec, d.idx+1, d.cnt)
	}
	if d.name != "" {
		s += fmt.Sprintf(" (%q", d.name)
		for _, e := range d.elems {
			s += fmt.Sprintf(" element %d of %d", e.i+1, e.n)
		}
		s += ")"
	}
	return s
}

func (d *decoder) truncated(n uint64) error {
	return fmt.Errorf("truncated in %s (need %d bytes at offset %d, file is %d bytes)", d.where(), n, d.pos, d.size)
}

func (d *decoder) remaining() uint64 { return uint64(d.size - d.pos) }

// read returns the next n bytes; the slice is valid until the next call.
func (d *decoder) read(n uint64) ([]byte, error) {
	if n > d.remaining() {
		return nil, d.truncated(n)
	}
	if d.pos >= d.bufOff && d.pos+int64(n) <= d.bufOff+int64(len(d.buf)) {
		p := d.buf[d.pos-d.bufOff : d.pos-d.bufOff+int64(n)]
		d.pos += int64(n)
		return p, nil
	}
	m := max(n, readChunk)
	m = min(m, d.remaining())
	if uint64(cap(d.buf)) < m {
		d.buf = make([]byte, m)
	}
	d.buf = d.buf[:m]
	k, err := d.r.ReadAt(d.buf, d.pos)
	if k < len(d.buf) {
		d.buf = d.buf[:0]
		if err == nil || err == io.EOF {
			return nil, fmt.Errorf("file shrank while reading %s (short read at offset %d)", d.where(), d.pos)
		}
		return nil, fmt.Errorf("reading %s at offset %d: %w", d.where(), d.pos, stripPath(err))
	}
	d.bufOff = d.pos
	d.pos += int64(n)
	return d.buf[:n], nil
}

// stripPath drops the file name from an *fs.PathError (callers name the
// file), keeping the underlying error for errors.Is.
func stripPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", pe.Op, pe.Err)
	}
	return err
}

func (d *decoder) skip(n uint64) error {
	if n > d.remaining() {
		return d.truncated(n)
	}
	d.pos += int64(n)
	return nil
}

func (d *decoder) u8() (uint8, error) {
	p, err := d.read(1)
	if err != nil {
		return 0, err
	}
	return p[0], nil
}

func (d *decoder) u16() (uint16, error) {
	p, err := d.read(2)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint16(p), nil
}

func (d *decoder) u32() (uint32, error) {
	p, err := d.read(4)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint32(p), nil
}

func (d *decoder) u64() (uint64, error) {
	p, err := d.read(8)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(p), nil
}

// str reads a string of at most limit bytes; what names it in errors.
func (d *decoder) str(limit uint64, what string) (string, error) {
	n, err := d.u64()
	if err != nil {
		return "", err
	}
	if n > limit {
		return "", fmt.Errorf("%s: %s is %d bytes long (max %d)", d.where(), what, n, limit)
	}
	p, err := d.read(n)
	if err != nil {
		return "", err
	}
	return string(p), nil
}

// skipStr skips a string without reading it.
func (d *decoder) skipStr() error {
	n, err := d.u64()
	if err != nil {
		return err
	}
	return d.skip(n)
}

// fixedSize is the encoded size of a fixed-size value type, 0 for string and
// array, -1 for an invalid type.
func fixedSize(t ValueType) int {
	switch t {
	case ValueTypeUint8, ValueTypeInt8, ValueTypeBool:
		return 1
	case ValueTypeUint16, ValueTypeInt16:
		return 2
	case ValueTypeUint32, ValueTypeInt32, ValueTypeFloat32:
		return 4
	case ValueTypeUint64, ValueTypeInt64, ValueTypeFloat64:
		return 8
	case ValueTypeString, ValueTypeArray:
		return 0
	}
	return -1
}

// minSize is the smallest encoding of one value of type t.
func minSize(t ValueType) uint64 {
	switch t {
	case ValueTypeString:
		return 8
	case ValueTypeArray:
		return minInnerArray
	}
	return uint64(fixedSize(t))
}

func humanSize(n int64) string {
	switch {
	case n < 1000:
		return fmt.Sprintf("%d-byte", n)
	case n < 1000*1000:
		return fmt.Sprintf("%.1f kB", float64(n)/1e3)
	case n < 1000*1000*1000:
		return fmt.Sprintf("%.1f MB", float64(n)/1e6)
	}
	return fmt.Sprintf("%.1f GB", float64(n)/1e9)
}

func (d *decoder) decode() (*Info, error) {
	d.sec = "header"
	if d.size < 4 {
		return nil, fmt.Errorf("not a GGUF file (%d bytes, too short for the magic)", d.size)
	}
	p, err := d.read(4)
	if err != nil {
		return nil, err
	}
	if string(p) != Magic {
		return nil, fmt.Errorf("not a GGUF file (magic %q)", p)
	}
	version, err := d.u32()
	if err != nil {
		return nil, err
	}
	switch {
	case version == 2 || version == 3:
	case version == 1:
		return nil, errors.New("unsupported GGUF version 1 (obsolete; versions 2 and 3 are supported)")
	case version&0xffff == 0 && (bits.ReverseBytes32(version) == 2 || bits.ReverseBytes32(version) == 3):
		return nil, fmt.Errorf("unsupported GGUF version %d (a big-endian file? only little-endian is supported)", version)
	default:
		return nil, fmt.Errorf("unsupported GGUF version %d", version)
	}
	nTensors, err := d.u64()
	if err != nil {
		return nil, err
	}
	nKV, err := d.u64()
	if err != nil {
		return nil, err
	}
	// Counts are bounded by the bytes left; the capacities reserved below
	// are further capped, so that a huge (or sparse) file claiming billions
	// of entries costs memory only as entries are actually parsed.
	rem := d.remaining()
	if nTensors > rem/minTensorBytes {
		return nil, fmt.Errorf("tensor count %d is impossible for a %s file", nTensors, humanSize(d.size))
	}
	if nKV > rem/minKVBytes {
		return nil, fmt.Errorf("key/value count %d is impossible for a %s file", nKV, humanSize(d.size))
	}
	if nTensors*minTensorBytes+nKV*minKVBytes > rem {
		return nil, fmt.Errorf("tensor count %d with key/value count %d is impossible for a %s file", nTensors, nKV, humanSize(d.size))
	}

	info := &Info{
		Version:   version,
		Alignment: DefaultAlignment,
		FileSize:  d.size,
		KV:        make(map[string]any, min(nKV, 256)),
		Tensors:   make([]TensorInfo, 0, min(nTensors, 4096)),
	}

	d.sec, d.cnt = "key/value", nKV
	for i := uint64(0); i < nKV; i++ {
		d.idx, d.name, d.elems = i, "", d.elems[:0]
		key, err := d.str(MaxKeyLen, "key")
		if err != nil {
			return nil, err
		}
		if key == "" {
			return nil, fmt.Errorf("%s: empty key", d.where())
		}
		if !utf8.ValidString(key) {
			return nil, fmt.Errorf("%s: key %q is not valid UTF-8", d.where(), key)
		}
		d.name = key
		if _, dup := info.KV[key]; dup {
			return nil, fmt.Errorf("duplicate key %q", key)
		}
		t, err := d.u32()
		if err != nil {
			return nil, err
		}
		v, err := d.value(ValueType(t))
		if err != nil {
			return nil, err
		}
		if key == KeyAlignment {
			a, ok := v.(uint32)
			if !ok {
				return nil, fmt.Errorf("key %q must be a u32, not %v", key, describeType(ValueType(t), v))
			}
			if a == 0 || a&(a-1) != 0 {
				return nil, fmt.Errorf("key %q must be a power of two, not %d", key, a)
			}
			info.Alignment = uint64(a)
		}
		info.KV[key] = v
	}

	d.sec, d.cnt, d.elems = "tensor info", nTensors, nil
	names := make(map[string]int, min(nTensors, 4096))
	for i := uint64(0); i < nTensors; i++ {
		d.idx, d.name = i, ""
		ti, err := d.tensorInfo()
		if err != nil {
			return nil, err
		}
		if j, dup := names[ti.Name]; dup {
			return nil, fmt.Errorf("duplicate tensor name %q (tensor infos %d and %d of %d)", ti.Name, j+1, i+1, nTensors)
		}
		names[ti.Name] = int(i)
		info.Tensors = append(info.Tensors, ti)
	}

	// The data section starts at the end of the tensor infos, padded to the
	// alignment (pos <= size < 2^63 and alignment <= 2^31: no overflow).
	dataOff := (uint64(d.pos) + info.Alignment - 1) / info.Alignment * info.Alignment
	info.DataOffset = int64(dataOff)
	if err := checkData(info); err != nil {
		return nil, err
	}
	return info, nil
}

func describeType(t ValueType, v any) string {
	if t == ValueTypeArray {
		switch a := v.(type) {
		case ArrayInfo:
			return "an array of " + a.Type.String()
		case []any:
			return "an array of array"
		case []uint8:
			return "an array of u8"
		case []int8:
			return "an array of i8"
		case []uint16:
			return "an array of u16"
		case []int16:
			return "an array of i16"
		case []uint32:
			return "an array of u32"
		case []int32:
			return "an array of i32"
		case []float32:
			return "an array of f32"
		case []bool:
			return "an array of bool"
		case []string:
			return "an array of string"
		case []uint64:
			return "an array of u64"
		case []int64:
			return "an array of i64"
		case []float64:
			return "an array of f64"
		}
		return "an array"
	}
	return "a " + t.String()
}

// value reads a value of type t (a top-level metadata value).
func (d *decoder) value(t ValueType) (any, error) {
	if t == ValueTypeArray {
		et, err := d.u32()
		if err != nil {
			return nil, err
		}
		n, err := d.u64()
		if err != nil {
			return nil, err
		}
		return d.array(ValueType(et), n, 1)
	}
	if fixedSize(t) < 0 {
		return nil, fmt.Errorf("key %q has invalid value type %d", d.name, uint32(t))
	}
	return d.scalar(t)
}

func (d *decoder) scalar(t ValueType) (any, error) {
	switch t {
	case ValueTypeUint8:
		return d.u8()
	case ValueTypeInt8:
		v, err := d.u8()
		return int8(v), err
	case ValueTypeBool:
		v, err := d.u8()
		return v != 0, err
	case ValueTypeUint16:
		return d.u16()
	case ValueTypeInt16:
		v, err := d.u16()
		return int16(v), err
	case ValueTypeUint32:
		return d.u32()
	case ValueTypeInt32:
		v, err := d.u32()
		return int32(v), err
	case ValueTypeFloat32:
		v, err := d.u32()
		return math.Float32frombits(v), err
	case ValueTypeUint64:
		return d.u64()
	case ValueTypeInt64:
		v, err := d.u64()
		return int64(v), err
	case ValueTypeFloat64:
		v, err := d.u64()
		return math.Float64frombits(v), err
	case ValueTypeString:
		return d.str(MaxStringValue, "string value")
	}
	return nil, fmt.Errorf("key %q has invalid value type %d", d.name, uint32(t))
}

// array reads an array of n elements of type et at nesting depth (1 for a
// top-level array, 2 for an array inside an array). Arrays of arrays are
// followed only one level down: depth never exceeds maxNestingDepth.
func (d *decoder) array(et ValueType, n uint64, depth int) (any, error) {
	if fixedSize(et) < 0 {
		return nil, fmt.Errorf("key %q has an array of invalid value type %d", d.name, uint32(et))
	}
	if et == ValueTypeArray && depth >= maxNestingDepth {
		return nil, fmt.Errorf("key %q has arrays nested more than %d deep", d.name, maxNestingDepth)
	}
	if ms := minSize(et); n > d.remaining()/ms {
		if n > uint64(d.size)/ms {
			return nil, fmt.Errorf("key %q array length %d (of %v) is impossible for a %s file", d.name, n, et, humanSize(d.size))
		}
		return nil, d.truncated(n * ms)
	}
	if n > MaxInlineArray {
		if sz := fixedSize(et); sz > 0 {
			if err := d.skip(n * uint64(sz)); err != nil {
				return nil, err
			}
			return ArrayInfo{Type: et, Len: n}, nil
		}
	}
	d.elems = append(d.elems, arrPos{n: n})
	k := len(d.elems) - 1
	defer func() { d.elems = d.elems[:k] }()

	if n > MaxInlineArray {
		for i := uint64(0); i < n; i++ {
			d.elems[k].i = i
			var err error
			if et == ValueTypeString {
				err = d.skipStr()
			} else {
				_, err = d.innerArray(depth)
			}
			if err != nil {
				return nil, err
			}
		}
		return ArrayInfo{Type: et, Len: n}, nil
	}

	switch et {
	case ValueTypeUint8:
		return readSlice(d, n, func(d *decoder) (uint8, error) { return d.u8() })
	case ValueTypeInt8:
		return readSlice(d, n, func(d *decoder) (int8, error) { v, err := d.u8(); return int8(v), err })
	case ValueTypeBool:
		return readSlice(d, n, func(d *decoder) (bool, error) { v, err := d.u8(); return v != 0, err })
	case ValueTypeUint16:
		return readSlice(d, n, func(d *decoder) (uint16, error) { return d.u16() })
	case ValueTypeInt16:
		return readSlice(d, n, func(d *decoder) (int16, error) { v, err := d.u16(); return int16(v), err })
	case ValueTypeUint32:
		return readSlice(d, n, func(d *decoder) (uint32, error) { return d.u32() })
	case ValueTypeInt32:
		return readSlice(d, n, func(d *decoder) (int32, error) { v, err := d.u32(); return int32(v), err })
	case ValueTypeFloat32:
		return readSlice(d, n, func(d *decoder) (float32, error) { v, err := d.u32(); return math.Float32frombits(v), err })
	case ValueTypeUint64:
		return readSlice(d, n, func(d *decoder) (uint64, error) { return d.u64() })
	case ValueTypeInt64:
		return readSlice(d, n, func(d *decoder) (int64, error) { v, err := d.u64(); return int64(v), err })
	case ValueTypeFloat64:
		return readSlice(d, n, func(d *decoder) (float64, error) { v, err := d.u64(); return math.Float64frombits(v), err })
	case ValueTypeString:
		out := make([]string, n)
		for i := range out {
			d.elems[k].i = uint64(i)
			s, err := d.str(MaxStringValue, "string value")
			if err != nil {
				return nil, err
			}
			out[i] = s
		}
		return out, nil
	}
	// Array of arrays (depth 1 only, checked above).
	out := make([]any, n)
	for i := range out {
		d.elems[k].i = uint64(i)
		v, err := d.innerArray(depth)
		if err != nil {
			return nil, err
		}
		out[i] = v
	}
	return out, nil
}

// innerArray reads the type and length of an array element of an array at
// depth and the inner array itself, one level deeper. It is the only place
// array calls itself, and only from depth 1 to depth 2.
func (d *decoder) innerArray(depth int) (any, error) {
	et, err := d.u32()
	if err != nil {
		return nil, err
	}
	n, err := d.u64()
	if err != nil {
		return nil, err
	}
	return d.array(ValueType(et), n, depth+1)
}

func readSlice[T any](d *decoder, n uint64, f func(*decoder) (T, error)) ([]T, error) {
	out := make([]T, n)
	for i := range out {
		d.elems[len(d.elems)-1].i = uint64(i)
		v, err := f(d)
		if err != nil {
			return nil, err
		}
		out[i] = v
	}
	return out, nil
}

func (d *decoder) tensorInfo() (TensorInfo, error) {
	var ti TensorInfo
	name, err := d.str(MaxTensorNameLen, "tensor name")
	if err != nil {
		return ti, err
	}
	if name == "" {
		return ti, fmt.Errorf("%s: empty tensor name", d.where())
	}
	for i := 0; i < len(name); i++ {
		if name[i] == 0 {
			return ti, fmt.Errorf("%s: tensor name %q contains a NUL byte", d.where(), name)
		}
	}
	ti.Name, d.name = name, name
	nd, err := d.u32()
	if err != nil {
		return ti, err
	}
	if nd > MaxDims {
		return ti, fmt.Errorf("tensor %q has %d dimensions (max %d)", name, nd, MaxDims)
	}
	ti.Dims = make([]uint64, nd)
	elems := uint64(1)
	for j := range ti.Dims {
		ne, err := d.u64()
		if err != nil {
			return ti, err
		}
		if ne == 0 {
			return ti, fmt.Errorf("tensor %q ne[%d] is 0", name, j)
		}
		if ne > math.MaxInt64 {
			return ti, fmt.Errorf("tensor %q ne[%d]=%d is out of range (negative as int64)", name, j, ne)
		}
		hi, lo := bits.Mul64(elems, ne)
		if hi != 0 || lo > math.MaxInt64 {
			return ti, fmt.Errorf("tensor %q element count overflows int64 (ne[0..%d] = %v)", name, j, ti.Dims[:j+1])
		}
		ti.Dims[j] = ne
		elems = lo
	}
	typ, err := d.u32()
	if err != nil {
		return ti, err
	}
	ti.Type = TensorType(typ)
	tr, ok := ti.Type.Traits()
	if !ok {
		return ti, fmt.Errorf("tensor %q type %d is not a ggml type", name, typ)
	}
	ne0 := uint64(1)
	if nd > 0 {
		ne0 = ti.Dims[0]
	}
	if ne0%tr.BlockSize != 0 {
		return ti, fmt.Errorf("tensor %q ne[0]=%d is not a multiple of the block size %d of %s", name, ne0, tr.BlockSize, tr.Name)
	}
	// bytes = blocks * type size; blocks <= elems < 2^63.
	hi, lo := bits.Mul64(elems/tr.BlockSize, tr.TypeSize)
	if hi != 0 || lo > math.MaxInt64 {
		return ti, fmt.Errorf("tensor %q data size overflows int64 (%d %s values)", name, elems, tr.Name)
	}
	ti.Bytes = lo
	if ti.Offset, err = d.u64(); err != nil {
		return ti, err
	}
	return ti, nil
}

// checkData checks the tensor data layout against the file and against what
// ggml's loader requires: every tensor within the file, offsets aligned,
// no overlap, and tensors stored in order, each padded to the alignment.
func checkData(info *Info) error {
	size := uint64(info.FileSize)
	start := uint64(info.DataOffset)
	align := info.Alignment
	for i := range info.Tensors {
		t := &info.Tensors[i]
		if t.Offset%align != 0 {
			return fmt.Errorf("tensor %q data offset %d is not aligned to %d", t.Name, t.Offset, align)
		}
		if t.Offset > size || start > size-t.Offset || t.Bytes > size-start-t.Offset {
			if t.Offset > size || start > size-t.Offset {
				return fmt.Errorf("tensor %q data offset %d (file offset %d+%d) lies beyond the end of the file (%d bytes)", t.Name, t.Offset, start, t.Offset, size)
			}
			return fmt.Errorf("tensor %q data [%d, %d) lies beyond the end of the file (%d bytes)", t.Name, start+t.Offset, start+t.Offset+t.Bytes, size)
		}
	}
	if len(info.Tensors) == 0 {
		return nil
	}
	// All ends are now <= size, so no sums below overflow.
	order := make([]int, len(info.Tensors))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return info.Tensors[order[a]].Offset < info.Tensors[order[b]].Offset })
	for k := 1; k < len(order); k++ {
		p, t := &info.Tensors[order[k-1]], &info.Tensors[order[k]]
		if t.Offset < p.Offset+p.Bytes {
			return fmt.Errorf("tensor %q data [%d, %d) overlaps tensor %q data [%d, %d)", t.Name, start+t.Offset, start+t.Offset+t.Bytes, p.Name, start+p.Offset, start+p.Offset+p.Bytes)
		}
	}
	// ggml (gguf.cpp) requires each tensor to start where the previous one,
	// padded to the alignment, ends.
	want := uint64(0)
	for i := range info.Tensors {
		t := &info.Tensors[i]
		if t.Offset != want {
			return fmt.Errorf("tensor %q data offset %d, but ggml requires %d (tensors stored in order, each padded to %d)", t.Name, t.Offset, want, align)
		}
		want += (t.Bytes + align - 1) / align * align
	}
	return nil
}
