package gguf

import (
	"encoding/binary"
	"fmt"
	"math"
)

// F32ToF16 converts f to IEEE 754 binary16 bits, rounding to nearest with
// ties to even. Values too large become ±Inf, values too small ±0, NaN stays
// a (quiet) NaN, and subnormal halves are produced where needed.
func F32ToF16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int(b>>23) & 0xff
	mant := b & 0x7fffff

	if exp == 0xff { // Inf or NaN
		if mant != 0 {
			return sign | 0x7e00 | uint16(mant>>13)
		}
		return sign | 0x7c00
	}
	e := exp - 127 + 15 // rebiased exponent
	if e >= 0x1f {
		return sign | 0x7c00
	}
	if e <= 0 {
		// Subnormal half (or zero): value = m * 2^-24.
		if e < -10 {
			return sign
		}
		m := mant | 0x800000 // implicit leading 1 (f32 subnormals have e < -10)
		shift := uint(14 - e)
		r := m >> shift
		rem := m & (1<<shift - 1)
		half := uint32(1) << (shift - 1)
		if rem > half || (rem == half && r&1 == 1) {
			r++ // may carry into the smallest normal: still correct
		}
		return sign | uint16(r)
	}
	r := uint32(e)<<10 | mant>>13
	rem := mant & 0x1fff
	if rem > 0x1000 || (rem == 0x1000 && r&1 == 1) {
		r++ // a carry out of the mantissa bumps the exponent, up to Inf
	}
	return sign | uint16(r)
}

// F16ToF32 converts IEEE 754 binary16 bits to float32 (exactly).
func F16ToF32(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h & 0x3ff)
	switch {
	case exp == 0x1f:
		return math.Float32frombits(sign | 0x7f800000 | mant<<13)
	case exp == 0:
		if mant == 0 {
			return math.Float32frombits(sign)
		}
		// Subnormal: normalise.
		e := uint32(127 - 15 + 1)
		for mant&0x400 == 0 {
			mant <<= 1
			e--
		}
		mant &= 0x3ff
		return math.Float32frombits(sign | e<<23 | mant<<13)
	}
	return math.Float32frombits(sign | (exp+127-15)<<23 | mant<<13)
}

// QuantizeQ8_0 quantizes src into Q8_0 blocks in dst. len(src) must be a
// multiple of 32 and dst must hold len(src)/32*34 bytes. Each block of 32
// values stores d = max|x|/127 as f16, then 32 int8 values q = round(x/d).
func QuantizeQ8_0(dst []byte, src []float32) {
	if len(src)%QK8_0 != 0 {
		panic(fmt.Sprintf("gguf: QuantizeQ8_0: %d values, not a multiple of %d", len(src), QK8_0))
	}
	nb := len(src) / QK8_0
	if len(dst) < nb*BlockBytesQ8_0 {
		panic(fmt.Sprintf("gguf: QuantizeQ8_0: dst holds %d bytes, need %d", len(dst), nb*BlockBytesQ8_0))
	}
	for i := 0; i < nb; i++ {
		x := src[i*QK8_0 : (i+1)*QK8_0 : (i+1)*QK8_0]
		out := dst[i*BlockBytesQ8_0 : (i+1)*BlockBytesQ8_0 : (i+1)*BlockBytesQ8_0]
		var amax float32
		for _, v := range x {
			amax = max(amax, math.Float32frombits(math.Float32bits(v)&0x7fffffff))
		}
		d := amax / 127
		var id float32
		if d != 0 {
			id = 1 / d
		}
		binary.LittleEndian.PutUint16(out, F32ToF16(d))
		q := out[2:]
		for j, v := range x {
			q[j] = byte(int8(min(127, max(-127, roundHalfAway(v*id)))))
		}
	}
}

// roundHalfAway rounds to the nearest integer, halves away from zero, like
// C roundf, without branches (the signs of random weights are unpredictable).
// The addition is done in float64, where it is exact for |v| < 2^28.
func roundHalfAway(v float32) int32 {
	half := math.Float64frombits(0x3fe0000000000000 | uint64(math.Float32bits(v)&0x80000000)<<32)
	return int32(float64(v) + half)
}

// DequantizeQ8_0 expands Q8_0 blocks from src into dst; len(dst) must be a
// multiple of 32 and src must hold len(dst)/32*34 bytes.
func DequantizeQ8_0(dst []float32, src []byte) {
	if len(dst)%QK8_0 != 0 {
		panic(fmt.Sprintf("gguf: DequantizeQ8_0: %d values, not a multiple of %d", len(dst), QK8_0))
	}
	nb := len(dst) / QK8_0
	if len(src) < nb*BlockBytesQ8_0 {
		panic(fmt.Sprintf("gguf: DequantizeQ8_0: src holds %d bytes, need %d", len(src), nb*BlockBytesQ8_0))
	}
	for i := 0; i < nb; i++ {
		blk := src[i*BlockBytesQ8_0 : (i+1)*BlockBytesQ8_0]
		d := F16ToF32(binary.LittleEndian.Uint16(blk))
		for j := 0; j < QK8_0; j++ {
			dst[i*QK8_0+j] = float32(int8(blk[2+j])) * d
		}
	}
}

// encode converts src (a whole number of blocks) to type t into dst, which
// must be exactly t.Bytes(len(src)) long.
func encode(t TensorType, dst []byte, src []float32) {
	switch t {
	case F32:
		for i, v := range src {
			binary.LittleEndian.PutUint32(dst[4*i:], math.Float32bits(v))
		}
	case F16:
		for i, v := range src {
			binary.LittleEndian.PutUint16(dst[2*i:], F32ToF16(v))
		}
	case Q8_0:
		QuantizeQ8_0(dst, src)
	default:
		panic("gguf: encode: unsupported type " + t.String())
	}
}
