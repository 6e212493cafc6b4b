package rpc

import (
	"bytes"
	"encoding/binary"
	"math/bits"
)

var le = binary.LittleEndian

// Tensor is one serialized tensor (rpc_tensor, 296 bytes packed on the wire).
//
// Wire layout (offset: field): 0 id u64, 8 type u32, 12 buffer u64,
// 20 ne[4] u32, 36 nb[4] u32, 52 op u32, 56 op_params[64], 120 flags i32,
// 124 src[10] u64, 204 view_src u64, 212 view_offs u64, 220 data u64,
// 228 name[64], 292 padding[4] (always written as zero, ignored on decode).
type Tensor struct {
	ID       uint64     // message-local identity; 0 means "no tensor"
	Type     uint32     // ggml_type
	Buffer   uint64     // remote buffer handle, or 0
	NE       [4]uint32  // elements per dimension (truncated to 32 bits)
	NB       [4]uint32  // byte strides per dimension (truncated to 32 bits)
	Op       uint32     // ggml_op
	OpParams [64]byte   // raw op parameters (16 x i32)
	Flags    int32      // Flag* bits
	Src      [10]uint64 // ids of source tensors (0 = none)
	ViewSrc  uint64     // id of the viewed tensor (0 = not a view)
	ViewOffs uint64     // byte offset of the view inside ViewSrc
	Data     uint64     // absolute server address (base + offset), or 0
	Name     [64]byte   // NUL-padded name
	// UseCount is how many graph nodes use the tensor (5.1 and later, in
	// what was padding). Put writes it; decoding leaves it 0, since box's
	// ggml counts uses itself.
	UseCount int32
}

// Put serializes t into b[:TensorSize]. It panics if len(b) < TensorSize.
// The 4 padding bytes at the end are zeroed.
func (t *Tensor) Put(b []byte) {
	_ = b[TensorSize-1]
	le.PutUint64(b[0:], t.ID)
	le.PutUint32(b[8:], t.Type)
	le.PutUint64(b[12:], t.Buffer)
	for i := 0; i < 4; i++ {
		le.PutUint32(b[20+4*i:], t.NE[i])
		le.PutUint32(b[36+4*i:], t.NB[i])
	}
	le.PutUint32(b[52:], t.Op)
	copy(b[56:120], t.OpParams[:])
	le.PutUint32(b[120:], uint32(t.Flags))
	for i := 0; i < MaxSrc; i++ {
		le.PutUint64(b[124+8*i:], t.Src[i])
	}
	le.PutUint64(b[204:], t.ViewSrc)
	le.PutUint64(b[212:], t.ViewOffs)
	le.PutUint64(b[220:], t.Data)
	copy(b[228:292], t.Name[:])
	le.PutUint32(b[292:], uint32(t.UseCount))
}

// AppendTo appends the 296-byte serialization of t to b.
func (t *Tensor) AppendTo(b []byte) []byte {
	n := len(b)
	b = grow(b, TensorSize)
	t.Put(b[n:])
	return b
}

// Encode returns the 296-byte serialization of t.
func (t Tensor) Encode() []byte {
	b := make([]byte, TensorSize)
	t.Put(b)
	return b
}

// DecodeTensor decodes exactly TensorSize bytes. It checks only the length;
// type, buffer and range validation are the server's job.
func DecodeTensor(b []byte) (Tensor, error) {
	if len(b) != TensorSize {
		return Tensor{}, protoErr(CmdNone, KindSize, "tensor is %d bytes, want %d", len(b), TensorSize)
	}
	var t Tensor
	getTensor(&t, b)
	return t, nil
}

// getTensor decodes b[:TensorSize] into t (no length check beyond the
// bounds check).
func getTensor(t *Tensor, b []byte) {
	_ = b[TensorSize-1]
	t.ID = le.Uint64(b[0:])
	t.Type = le.Uint32(b[8:])
	t.Buffer = le.Uint64(b[12:])
	for i := 0; i < 4; i++ {
		t.NE[i] = le.Uint32(b[20+4*i:])
		t.NB[i] = le.Uint32(b[36+4*i:])
	}
	t.Op = le.Uint32(b[52:])
	copy(t.OpParams[:], b[56:120])
	t.Flags = int32(le.Uint32(b[120:]))
	for i := 0; i < MaxSrc; i++ {
		t.Src[i] = le.Uint64(b[124+8*i:])
	}
	t.ViewSrc = le.Uint64(b[204:])
	t.ViewOffs = le.Uint64(b[212:])
	t.Data = le.Uint64(b[220:])
	copy(t.Name[:], b[228:292])
}

// NameString returns the name up to the first NUL. Like the reference
// server (which forces termination), at most MaxName-1 = 63 bytes are used.
func (t Tensor) NameString() string {
	n := t.Name[:MaxName-1]
	if i := bytes.IndexByte(n, 0); i >= 0 {
		n = n[:i]
	}
	return string(n)
}

// SetName stores s as the tensor name: zero-filled, at most 63 bytes (longer
// names are truncated, as the reference client does).
func (t *Tensor) SetName(s string) {
	t.Name = [64]byte{}
	copy(t.Name[:MaxName-1], s)
}

// IsZero reports whether t is the all-zero "null tensor".
func (t *Tensor) IsZero() bool { return *t == Tensor{} }

// Nbytes computes ggml_nbytes for the tensor from its wire ne, nb and type,
// exactly as ggml does after the server deserializes it (ne and nb are
// zero-extended from u32):
//
//   - 0 if any ne[i] is 0;
//   - for types with block size 1: type_size + sum (ne[i]-1)*nb[i];
//   - for block types: ne[0]*nb[0]/blck + sum_{i>=1} (ne[i]-1)*nb[i].
//
// ok is false for an unknown or removed type, or if the result does not fit
// in a uint64 (ggml would wrap around).
func (t Tensor) Nbytes() (n uint64, ok bool) {
	blck, tsize, ok := TypeInfo(t.Type)
	if !ok {
		return 0, false
	}
	for i := 0; i < MaxDims; i++ {
		if t.NE[i] == 0 {
			return 0, true
		}
	}
	var start int
	if blck == 1 {
		n = uint64(tsize)
		start = 0
	} else {
		// ne[0] and nb[0] are < 2^32, so the product fits in 64 bits.
		n = uint64(t.NE[0]) * uint64(t.NB[0]) / uint64(blck)
		start = 1
	}
	for i := start; i < MaxDims; i++ {
		term := uint64(t.NE[i]-1) * uint64(t.NB[i]) // < 2^64
		var carry uint64
		n, carry = bits.Add64(n, term, 0)
		if carry != 0 {
			return 0, false
		}
	}
	return n, true
}

// grow extends b by n bytes (contents of the new bytes unspecified).
func grow(b []byte, n int) []byte {
	if cap(b)-len(b) < n {
		nb := make([]byte, len(b), 2*cap(b)+n)
		copy(nb, b)
		b = nb
	}
	return b[:len(b)+n]
}
