package gguf

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestF32ToF16Table(t *testing.T) {
	p := func(e int) float32 { return float32(math.Ldexp(1, e)) }
	tests := []struct {
		name string
		in   float32
		want uint16
	}{
		{"zero", 0, 0x0000},
		{"negative zero", float32(math.Copysign(0, -1)), 0x8000},
		{"one", 1, 0x3c00},
		{"minus two", -2, 0xc000},
		{"half", 0.5, 0x3800},
		{"0.1 rounds to nearest", 0.1, 0x2e66},
		{"max finite", 65504, 0x7bff},
		{"just below overflow tie", 65519, 0x7bff},
		{"overflow tie rounds to even (inf)", 65520, 0x7c00},
		{"large overflows", 1e10, 0x7c00},
		{"negative overflow", -1e10, 0xfc00},
		{"+inf", float32(math.Inf(1)), 0x7c00},
		{"-inf", float32(math.Inf(-1)), 0xfc00},
		{"smallest normal", p(-14), 0x0400},
		{"smallest subnormal", p(-24), 0x0001},
		{"largest subnormal", 1023 * p(-24), 0x03ff},
		{"half of smallest subnormal ties to zero", p(-25), 0x0000},
		{"just above half of smallest subnormal", p(-25) * 1.0001, 0x0001},
		{"1.5 ulp subnormal ties to even", 3 * p(-25), 0x0002},
		{"2.5 ulp subnormal ties to even", 5 * p(-25), 0x0002},
		{"subnormal rounding carries into normal", p(-14) - p(-26), 0x0400},
		{"far below subnormal", p(-40), 0x0000},
		{"f32 subnormal", math.Float32frombits(1), 0x0000},
		{"tie to even down", 1 + p(-11), 0x3c00},
		{"tie to even up", 1 + 3*p(-11), 0x3c02},
		{"above tie rounds up", 1 + p(-11) + p(-20), 0x3c01},
		{"below tie rounds down", 1 + p(-11) - p(-22), 0x3c00},
		{"mantissa carry bumps exponent", 2 - p(-12), 0x4000},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := F32ToF16(tc.in); got != tc.want {
				t.Errorf("F32ToF16(%g) = %#04x, want %#04x", tc.in, got, tc.want)
			}
		})
	}
	if h := F32ToF16(float32(math.NaN())); h&0x7c00 != 0x7c00 || h&0x3ff == 0 {
		t.Errorf("F32ToF16(NaN) = %#04x, not a NaN", h)
	}
}

func TestF16RoundTripAllValues(t *testing.T) {
	for i := 0; i < 1<<16; i++ {
		h := uint16(i)
		f := F16ToF32(h)
		isNaN := h&0x7c00 == 0x7c00 && h&0x3ff != 0
		if isNaN {
			if !math.IsNaN(float64(f)) {
				t.Fatalf("F16ToF32(%#04x) = %g, want NaN", h, f)
			}
			if back := F32ToF16(f); back&0x7c00 != 0x7c00 || back&0x3ff == 0 {
				t.Fatalf("NaN %#04x came back as %#04x", h, back)
			}
			continue
		}
		if back := F32ToF16(f); back != h {
			t.Fatalf("round trip %#04x -> %g -> %#04x", h, f, back)
		}
	}
}

func TestF32ToF16IsNearest(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 200000; i++ {
		// Magnitudes across the whole half range, subnormals included.
		f := float32(math.Ldexp(r.Float64()*2-1, r.IntN(42)-26))
		h := F32ToF16(f)
		got := math.Abs(float64(F16ToF32(h)) - float64(f))
		for _, nb := range []uint16{h - 1, h + 1} {
			if nb&0x7c00 == 0x7c00 || (h&0x7fff == 0 && nb&0x7fff == 0x7fff) {
				continue // inf/NaN or wrapped across the sign
			}
			if alt := math.Abs(float64(F16ToF32(nb)) - float64(f)); alt < got {
				t.Fatalf("F32ToF16(%g) = %#04x (err %g), but %#04x is closer (err %g)", f, h, got, nb, alt)
			}
		}
	}
}

func TestQ8_0ErrorBound(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, scale := range []float64{1e-4, 0.02, 1, 300} {
		src := make([]float32, 32*64)
		for i := range src {
			src[i] = float32(r.NormFloat64() * scale)
		}
		dst := make([]byte, len(src)/32*34)
		QuantizeQ8_0(dst, src)
		back := make([]float32, len(src))
		DequantizeQ8_0(back, dst)
		for b := 0; b < len(src)/32; b++ {
			var amax float64
			for _, v := range src[b*32 : b*32+32] {
				amax = math.Max(amax, math.Abs(float64(v)))
			}
			// Half a quantization step, plus the f16 rounding of the scale
			// applied to up to 127 steps (relative 2^-11 for normal halves,
			// more when d is a subnormal half, as at scale 1e-4).
			d := amax / 127
			d16 := float64(F16ToF32(uint16(dst[b*34]) | uint16(dst[b*34+1])<<8))
			if math.Abs(d16-d) > d*math.Ldexp(1, -11)*1.0001 && d >= math.Ldexp(1, -14) {
				t.Fatalf("scale %g: block %d: f16 scale %g too far from %g", scale, b, d16, d)
			}
			bound := d*0.5*(1+1e-6) + 127*math.Abs(d16-d) + 1e-12
			for i := b * 32; i < b*32+32; i++ {
				if e := math.Abs(float64(src[i] - back[i])); e > bound {
					t.Fatalf("scale %g: value %d: %g -> %g, error %g > bound %g", scale, i, src[i], back[i], e, bound)
				}
			}
		}
	}
}

func TestQ8_0Exact(t *testing.T) {
	src := make([]float32, 64)
	for i := range 32 {
		src[i] = float32(i*8 - 127) // integers up to |127|: scale is exactly 1
	}
	src[31] = 127
	// second block all zeros: d = 0 and every q = 0
	dst := make([]byte, 68)
	QuantizeQ8_0(dst, src)
	back := make([]float32, 64)
	DequantizeQ8_0(back, dst)
	for i := range src {
		if back[i] != src[i] {
			t.Errorf("value %d: %g -> %g", i, src[i], back[i])
		}
	}
	if dst[0] != 0x00 || dst[1] != 0x3c { // d = 1.0 as f16 (0x3c00)
		t.Errorf("scale bytes = % x, want 00 3c", dst[:2])
	}
	for i, b := range dst[34:] {
		if b != 0 {
			t.Fatalf("zero block byte %d = %#x", i, b)
		}
	}
}

func TestQ8_0Rounding(t *testing.T) {
	// amax 127 gives d = 1, so q = round(x) with halves away from zero.
	src := make([]float32, 32)
	src[0] = 127
	src[1], src[2], src[3], src[4], src[5] = 2.5, -2.5, 0.49999997, -0.5, 1.4999999
	dst := make([]byte, 34)
	QuantizeQ8_0(dst, src)
	want := []int8{127, 3, -3, 0, -1, 1}
	for i, w := range want {
		if got := int8(dst[2+i]); got != w {
			t.Errorf("q[%d] for %g = %d, want %d", i, src[i], got, w)
		}
	}
}

func TestQ8_0PanicsOnBadLength(t *testing.T) {
	for name, fn := range map[string]func(){
		"quantize odd length": func() { QuantizeQ8_0(make([]byte, 34), make([]float32, 31)) },
		"quantize short dst":  func() { QuantizeQ8_0(make([]byte, 33), make([]float32, 32)) },
		"dequantize short":    func() { DequantizeQ8_0(make([]float32, 32), make([]byte, 10)) },
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("no panic")
				}
			}()
			fn()
		})
	}
}

func TestTensorTypeSizes(t *testing.T) {
	tests := []struct {
		typ              TensorType
		name             string
		block, bytes     int
		n, wantDataBytes int64
	}{
		{F32, "f32", 1, 4, 10, 40},
		{F16, "f16", 1, 2, 10, 20},
		{Q8_0, "q8_0", 32, 34, 64, 68},
	}
	for _, tc := range tests {
		if tc.typ.String() != tc.name || tc.typ.BlockSize() != tc.block || tc.typ.BlockBytes() != tc.bytes || tc.typ.Bytes(tc.n) != tc.wantDataBytes {
			t.Errorf("%v: got %s/%d/%d/%d", tc.typ, tc.typ.String(), tc.typ.BlockSize(), tc.typ.BlockBytes(), tc.typ.Bytes(tc.n))
		}
		if p, err := ParseTensorType(tc.name); err != nil || p != tc.typ {
			t.Errorf("ParseTensorType(%q) = %v, %v", tc.name, p, err)
		}
	}
	if _, err := ParseTensorType("q4_0"); err == nil {
		t.Error("ParseTensorType(q4_0) succeeded")
	}
}
