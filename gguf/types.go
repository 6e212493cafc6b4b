// Package gguf writes GGUF version 3 files, the model format read by
// llama.cpp and ggml.
//
// A File holds ordered metadata key/value pairs and tensor descriptions.
// Tensor data is not held in memory: each tensor has a Source that fills
// float32 values on demand, and the writer converts them to the tensor's
// storage type (F32, F16 or Q8_0) while streaming the file out, so a file of
// any size is written with bounded memory.
//
// Layout written (all integers little endian):
//
//	"GGUF" u32(3) u64(tensor count) u64(kv count)
//	kv:     string(key) u32(value type) value
//	tensor: string(name) u32(n dims) u64(ne0)... u32(ggml type) u64(offset)
//	padding to the alignment, then each tensor's data, each padded to the alignment.
//
// Strings are a u64 byte length followed by the bytes (no terminator).
package gguf

import (
	"fmt"
)

// Magic is the four bytes every GGUF file starts with.
const Magic = "GGUF"

// Version is the GGUF format version this package writes.
const Version uint32 = 3

// DefaultAlignment is the data alignment used when a File has no
// general.alignment key.
const DefaultAlignment = 32

// KeyAlignment is the metadata key that sets the data alignment.
const KeyAlignment = "general.alignment"

// MaxTensorNameLen is the longest tensor name ggml accepts (GGML_MAX_NAME is
// 64 including the terminating NUL).
const MaxTensorNameLen = 63

// MaxDims is the largest number of dimensions a ggml tensor may have.
const MaxDims = 4

// TensorType is a ggml tensor storage type (enum ggml_type).
type TensorType uint32

// The tensor types this package can encode.
const (
	F32  TensorType = 0
	F16  TensorType = 1
	Q8_0 TensorType = 8
)

// QK8_0 is the number of values in one Q8_0 block.
const QK8_0 = 32

// BlockBytesQ8_0 is the size of one Q8_0 block: an f16 scale and 32 int8 values.
const BlockBytesQ8_0 = 2 + QK8_0

// String returns the ggml name of the type ("f32", "f16", "q8_0").
func (t TensorType) String() string {
	switch t {
	case F32:
		return "f32"
	case F16:
		return "f16"
	case Q8_0:
		return "q8_0"
	}
	return fmt.Sprintf("ggml_type(%d)", uint32(t))
}

// Valid reports whether the writer can encode t.
func (t TensorType) Valid() bool {
	return t == F32 || t == F16 || t == Q8_0
}

// BlockSize is the number of values stored per block (1 for F32 and F16).
func (t TensorType) BlockSize() int {
	if t == Q8_0 {
		return QK8_0
	}
	return 1
}

// BlockBytes is the number of bytes one block takes.
func (t TensorType) BlockBytes() int {
	switch t {
	case F32:
		return 4
	case F16:
		return 2
	case Q8_0:
		return BlockBytesQ8_0
	}
	return 0
}

// Bytes is the storage size of n values; n must be a multiple of BlockSize.
func (t TensorType) Bytes(n int64) int64 {
	bs := int64(t.BlockSize())
	return n / bs * int64(t.BlockBytes())
}

// ParseTensorType maps "f32", "f16" or "q8_0" to its TensorType.
func ParseTensorType(s string) (TensorType, error) {
	switch s {
	case "f32", "F32":
		return F32, nil
	case "f16", "F16":
		return F16, nil
	case "q8_0", "Q8_0":
		return Q8_0, nil
	}
	return 0, fmt.Errorf("gguf: unknown tensor type %q (want f32, f16 or q8_0)", s)
}

// ValueType is the type of a metadata value (enum gguf_type).
type ValueType uint32

// Metadata value types, numbered as in the GGUF specification.
const (
	ValueTypeUint8   ValueType = 0
	ValueTypeInt8    ValueType = 1
	ValueTypeUint16  ValueType = 2
	ValueTypeInt16   ValueType = 3
	ValueTypeUint32  ValueType = 4
	ValueTypeInt32   ValueType = 5
	ValueTypeFloat32 ValueType = 6
	ValueTypeBool    ValueType = 7
	ValueTypeString  ValueType = 8
	ValueTypeArray   ValueType = 9
	ValueTypeUint64  ValueType = 10
	ValueTypeInt64   ValueType = 11
	ValueTypeFloat64 ValueType = 12
)

var valueTypeNames = [...]string{"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64"}

func (t ValueType) String() string {
	if int(t) < len(valueTypeNames) {
		return valueTypeNames[t]
	}
	return fmt.Sprintf("gguf_type(%d)", uint32(t))
}

// Value is a typed metadata value. Build one with the constructors
// (Uint32, Float32, String, Strings, ...); the zero Value is invalid.
type Value struct {
	typ  ValueType
	elem ValueType // element type when typ == ValueTypeArray
	v    any
}

// Type is the value's GGUF type.
func (v Value) Type() ValueType { return v.typ }

// ElemType is the element type of an array value.
func (v Value) ElemType() ValueType { return v.elem }

// Interface returns the Go value held (uint32, []string, ...).
func (v Value) Interface() any { return v.v }

// Len is the number of elements of an array value, or 1.
func (v Value) Len() int {
	switch x := v.v.(type) {
	case []uint8:
		return len(x)
	case []int8:
		return len(x)
	case []uint16:
		return len(x)
	case []int16:
		return len(x)
	case []uint32:
		return len(x)
	case []int32:
		return len(x)
	case []float32:
		return len(x)
	case []bool:
		return len(x)
	case []string:
		return len(x)
	case []uint64:
		return len(x)
	case []int64:
		return len(x)
	case []float64:
		return len(x)
	}
	return 1
}

// Scalar constructors.

func Uint8(x uint8) Value     { return Value{typ: ValueTypeUint8, v: x} }
func Int8(x int8) Value       { return Value{typ: ValueTypeInt8, v: x} }
func Uint16(x uint16) Value   { return Value{typ: ValueTypeUint16, v: x} }
func Int16(x int16) Value     { return Value{typ: ValueTypeInt16, v: x} }
func Uint32(x uint32) Value   { return Value{typ: ValueTypeUint32, v: x} }
func Int32(x int32) Value     { return Value{typ: ValueTypeInt32, v: x} }
func Float32(x float32) Value { return Value{typ: ValueTypeFloat32, v: x} }
func Bool(x bool) Value       { return Value{typ: ValueTypeBool, v: x} }
func String(x string) Value   { return Value{typ: ValueTypeString, v: x} }
func Uint64(x uint64) Value   { return Value{typ: ValueTypeUint64, v: x} }
func Int64(x int64) Value     { return Value{typ: ValueTypeInt64, v: x} }
func Float64(x float64) Value { return Value{typ: ValueTypeFloat64, v: x} }

// Array constructors. The slice is kept, not copied.

func Uint8s(x []uint8) Value     { return arr(ValueTypeUint8, x) }
func Int8s(x []int8) Value       { return arr(ValueTypeInt8, x) }
func Uint16s(x []uint16) Value   { return arr(ValueTypeUint16, x) }
func Int16s(x []int16) Value     { return arr(ValueTypeInt16, x) }
func Uint32s(x []uint32) Value   { return arr(ValueTypeUint32, x) }
func Int32s(x []int32) Value     { return arr(ValueTypeInt32, x) }
func Float32s(x []float32) Value { return arr(ValueTypeFloat32, x) }
func Bools(x []bool) Value       { return arr(ValueTypeBool, x) }
func Strings(x []string) Value   { return arr(ValueTypeString, x) }
func Uint64s(x []uint64) Value   { return arr(ValueTypeUint64, x) }
func Int64s(x []int64) Value     { return arr(ValueTypeInt64, x) }
func Float64s(x []float64) Value { return arr(ValueTypeFloat64, x) }

func arr(elem ValueType, x any) Value { return Value{typ: ValueTypeArray, elem: elem, v: x} }

// KV is one metadata key/value pair.
type KV struct {
	Key   string
	Value Value
}
