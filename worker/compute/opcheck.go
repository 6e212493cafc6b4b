package compute

import (
	"fmt"
	"math"

	"github.com/boxproj/box/rpc"
)

// Op and type numbers used by checkOp beyond those in validate.go.
const (
	opSumRows = 15
	opConcat  = 22
	opArgsort = 68

	typeF16    = 1
	typeQ4_0   = 2
	typeQ4_1   = 3
	typeQ5_0   = 6
	typeQ5_1   = 7
	typeQ8_0   = 8
	typeQ2_K   = 10
	typeQ3_K   = 11
	typeQ4_K   = 12
	typeQ5_K   = 13
	typeQ6_K   = 14
	typeIQ2XXS = 16
	typeIQ2XS  = 17
	typeIQ3XXS = 18
	typeIQ1S   = 19
	typeIQ4NL  = 20
	typeIQ3S   = 21
	typeIQ2S   = 22
	typeIQ4XS  = 23
	typeI8     = 24
	typeI16    = 25
	typeIQ1M   = 29
	typeBF16   = 30
	typeTQ1_0  = 34
	typeTQ2_0  = 35
	typeMXFP4  = 39

	ropeNeox   = 2
	ropeMrope  = 8
	ropeVision = 24
	ropeImrope = 40

	precF32 = 10
)

func typeSet(ts ...uint32) map[uint32]bool {
	m := make(map[uint32]bool, len(ts))
	for _, t := range ts {
		m[t] = true
	}
	return m
}

var (
	// Quantized types ggml can dequantize (type_traits.to_float != NULL);
	// Q8_1 and Q8_K cannot.
	dequantTypes = typeSet(typeQ4_0, typeQ4_1, typeQ5_0, typeQ5_1, typeQ8_0, typeMXFP4,
		typeQ2_K, typeQ3_K, typeQ4_K, typeQ5_K, typeQ6_K, typeIQ2XXS, typeIQ2XS, typeIQ3XXS,
		typeIQ3S, typeIQ2S, typeIQ1S, typeIQ1M, typeIQ4NL, typeIQ4XS, typeTQ1_0, typeTQ2_0)
	// MUL_MAT weights: types with a CPU vec_dot.
	vecDotTypes = func() map[uint32]bool {
		m := typeSet(typeF32, typeF16, typeBF16)
		for t := range dequantTypes {
			m[t] = true
		}
		return m
	}()
	// GET_ROWS sources: the CPU kernel's type switch.
	getRowsTypes = func() map[uint32]bool {
		m := typeSet(typeF32, typeF16, typeBF16, typeI32)
		for t := range dequantTypes {
			m[t] = true
		}
		return m
	}()
	// KV-cache types (llama's --cache-type-k/v): what CPY into a quantized
	// tensor, SET_ROWS and FLASH_ATTN_EXT's K and V accept.
	kvTypes     = typeSet(typeF32, typeF16, typeBF16, typeQ4_0, typeQ4_1, typeQ5_0, typeQ5_1, typeQ8_0, typeIQ4NL)
	kvQuantized = typeSet(typeQ4_0, typeQ4_1, typeQ5_0, typeQ5_1, typeQ8_0, typeIQ4NL)
	floatTypes  = typeSet(typeF32, typeF16, typeBF16)
)

func typeSize(t uint32) uint32 {
	_, ts, _ := rpc.TypeInfo(t)
	return uint32(ts)
}

func blockSize(t uint32) uint32 {
	b, _, _ := rpc.TypeInfo(t)
	return uint32(b)
}

// isContiguousN is ggml_is_contiguous_n: dimensions above n are packed.
func isContiguousN(t *rpc.Tensor, n int) bool {
	next := uint64(typeSize(t.Type))
	if t.NE[0] != blockSize(t.Type) && uint64(t.NB[0]) != next {
		return false
	}
	next *= uint64(t.NE[0] / blockSize(t.Type))
	for i := 1; i < 4; i++ {
		if t.NE[i] != 1 {
			if i > n {
				if uint64(t.NB[i]) != next {
					return false
				}
				next *= uint64(t.NE[i])
			} else {
				next = uint64(t.NE[i]) * uint64(t.NB[i])
			}
		}
	}
	return true
}

func isContiguous(t *rpc.Tensor) bool  { return isContiguousN(t, 0) }
func isContiguous1(t *rpc.Tensor) bool { return isContiguousN(t, 1) }

func isEmpty(t *rpc.Tensor) bool { return t.NE[0] == 0 || t.NE[1] == 0 || t.NE[2] == 0 || t.NE[3] == 0 }

func opParamF32(t *rpc.Tensor, i int) float32 { return math.Float32frombits(uint32(opParam(t, i))) }

// dstOrdered is the "dst cannot be transposed or permuted" rule of the
// matrix kernels.
func dstOrdered(t *rpc.Tensor) bool {
	return t.NB[0] == 4 && t.NB[0] <= t.NB[1] && t.NB[1] <= t.NB[2] && t.NB[2] <= t.NB[3]
}

// sources lists, per allowed op, how many leading sources it needs and the
// most it may have: checkOp is an allowlist, anything else is refused.
var allowedOps = map[uint32][2]int{
	rpc.OpNone: {0, 10}, rpc.OpReshape: {1, 10}, rpc.OpView: {1, 10}, rpc.OpPermute: {1, 10}, rpc.OpTranspose: {1, 10},
	rpc.OpDup: {1, 1}, rpc.OpCont: {1, 1}, rpc.OpCpy: {2, 2},
	rpc.OpAdd: {2, 2}, rpc.OpSub: {2, 2}, rpc.OpMul: {2, 2}, rpc.OpDiv: {2, 2},
	rpc.OpSqr: {1, 1}, rpc.OpSqrt: {1, 1}, rpc.OpUnary: {1, 1}, rpc.OpGlu: {1, 2},
	opSumRows: {1, 1}, rpc.OpNorm: {1, 1}, rpc.OpRmsNorm: {1, 1}, rpc.OpScale: {1, 1},
	rpc.OpMulMat: {2, 2}, rpc.OpGetRows: {2, 2}, rpc.OpSetRows: {2, 3},
	rpc.OpSoftMax: {1, 3}, rpc.OpRope: {2, 3}, opConcat: {2, 2}, opArgsort: {1, 1},
	rpc.OpFlashAttn: {3, 5},
}

// checkOp is the allowlist of ops a client may send as graph nodes, with,
// for each, every condition under which the CPU kernel (ggml-cpu.c,
// ops.cpp, binary-ops.cpp, unary-ops.cpp) would GGML_ASSERT or GGML_ABORT,
// plus the shape relations ggml's op constructors guarantee wherever a
// violation would let a kernel read or write outside its tensors.
// src[i] is nil when absent. Only nodes are checked: leafs are data.
func checkOp(t *rpc.Tensor, src [10]*rpc.Tensor) error {
	bad := func(format string, args ...any) error { return fmt.Errorf(format, args...) }
	lim, ok := allowedOps[t.Op]
	if !ok {
		return bad("op %d is not allowed", t.Op)
	}
	for i := 0; i < 10; i++ {
		if i < lim[0] && src[i] == nil {
			return bad("op %d needs source %d", t.Op, i)
		}
		if i >= lim[1] && src[i] != nil {
			return bad("op %d takes at most %d sources", t.Op, lim[1])
		}
	}
	s0, s1 := src[0], src[1]
	switch t.Op {
	case rpc.OpNone, rpc.OpReshape, rpc.OpView, rpc.OpPermute, rpc.OpTranspose:
		// Not computed (ggml_op_is_empty); the tensor's own extent was checked.
		return nil

	case rpc.OpDup, rpc.OpCont:
		if t.Type != s0.Type {
			return bad("dup/cont: type %d from %d (ggml keeps the type)", t.Type, s0.Type)
		}
		return checkCopy(t, s0)

	case rpc.OpCpy:
		// dst is a view of src1 (ggml_cpy): same type, shape and strides.
		if t.Type != s1.Type || t.NE != s1.NE || t.NB != s1.NB {
			return bad("cpy: result differs from its destination source")
		}
		return checkCopy(t, s0)

	case rpc.OpAdd, rpc.OpSub, rpc.OpMul, rpc.OpDiv:
		a, b := s0.Type, s1.Type
		okTypes := a == typeF32 && b == typeF32 && t.Type == typeF32 ||
			a == typeF16 && b == typeF16 && t.Type == typeF16 ||
			a == typeBF16 && b == typeBF16 && t.Type == typeBF16 ||
			(a == typeBF16 || a == typeF16) && b == typeF32 && (t.Type == a || t.Type == typeF32)
		if !okTypes {
			return bad("binary op %d: types %d, %d -> %d unsupported", t.Op, a, b, t.Type)
		}
		if !sameShape(t, s0) || !canRepeat(s1, s0) {
			return bad("binary op %d: shapes %v, %v -> %v do not broadcast", t.Op, s0.NE, s1.NE, t.NE)
		}
		if t.NB[0] != typeSize(t.Type) || s0.NB[0] != typeSize(a) {
			return bad("binary op %d: rows are not contiguous", t.Op)
		}
		if s1.NB[0] != typeSize(b) && !sameShape(s0, s1) {
			return bad("binary op %d: non-contiguous broadcast", t.Op)
		}

	case rpc.OpSqr, rpc.OpSqrt:
		return checkUnary(t, s0, false)

	case rpc.OpUnary:
		u := opParam(t, 0)
		if u < 0 || u >= rpc.UnaryCount {
			return bad("unary op %d out of range", u)
		}
		// GELU, GELU_QUICK, SILU, GELU_ERF are ops.cpp kernels: f32 or f16,
		// same type in and out. The rest are unary-ops.cpp.
		return checkUnary(t, s0, u == 8 || u == 9 || u == 10 || u == 16)

	case rpc.OpGlu:
		g := opParam(t, 0)
		if g < 0 || g >= rpc.GluCount {
			return bad("glu op %d out of range", g)
		}
		if s0.Type != typeF32 && (s0.Type != typeF16 || g == 3) { // SWIGLU_OAI is f32 only
			return bad("glu: type %d unsupported", s0.Type)
		}
		if t.Type != s0.Type {
			return bad("glu: result type %d differs from source %d", t.Type, s0.Type)
		}
		if !isContiguous1(s0) || !isContiguous1(t) {
			return bad("glu: rows are not contiguous")
		}
		want := s0.NE
		if s1 != nil {
			if s1.Type != s0.Type || !sameShape(s0, s1) || !isContiguous1(s1) {
				return bad("glu: halves %v and %v differ", s0.NE, s1.NE)
			}
		} else {
			want[0] /= 2
		}
		if t.NE != want {
			return bad("glu: result %v, want %v", t.NE, want)
		}

	case opSumRows:
		if s0.Type != typeF32 || t.Type != typeF32 || s0.NB[0] != 4 || t.NB[0] != 4 {
			return bad("sum_rows: f32 rows only")
		}
		if t.NE != [4]uint32{1, s0.NE[1], s0.NE[2], s0.NE[3]} {
			return bad("sum_rows: result %v for %v", t.NE, s0.NE)
		}

	case rpc.OpNorm, rpc.OpRmsNorm:
		if s0.Type != typeF32 || t.Type != typeF32 || s0.NB[0] != 4 || t.NB[0] != 4 || !sameShape(t, s0) {
			return bad("norm: f32, same shape, contiguous rows only")
		}
		if eps := opParamF32(t, 0); !(eps >= 0) {
			return bad("norm: eps %v", eps)
		}

	case rpc.OpScale:
		if s0.Type != typeF32 || t.Type != typeF32 || !sameShape(t, s0) || !isContiguous(s0) || !isContiguous(t) {
			return bad("scale: f32, same shape, contiguous only")
		}

	case rpc.OpMulMat:
		a, b := s0, s1
		if !vecDotTypes[a.Type] || b.Type != typeF32 || t.Type != typeF32 {
			return bad("mul_mat: types %d x %d -> %d unsupported", a.Type, b.Type, t.Type)
		}
		if a.NE[0] != b.NE[0] || a.NE[2] == 0 || a.NE[3] == 0 || b.NE[2]%a.NE[2] != 0 || b.NE[3]%a.NE[3] != 0 {
			return bad("mul_mat: %v x %v", a.NE, b.NE)
		}
		if t.NE != [4]uint32{a.NE[1], b.NE[1], b.NE[2], b.NE[3]} {
			return bad("mul_mat: result %v, want %v", t.NE, [4]uint32{a.NE[1], b.NE[1], b.NE[2], b.NE[3]})
		}
		if a.NB[0] != typeSize(a.Type) || b.NB[0] != 4 || !dstOrdered(t) {
			return bad("mul_mat: permuted or transposed operand")
		}
		// The GEMM kernels take row strides as leading dimensions and
		// assert that rows do not overlap (lda >= k, ldb >= k, ldc >= m).
		if a.NB[1] < uint32(rowBytes(a)) || b.NB[1] < 4*b.NE[0] || t.NB[1] < 4*t.NE[0] {
			return bad("mul_mat: overlapping rows (row strides %d, %d, %d)", a.NB[1], b.NB[1], t.NB[1])
		}

	case rpc.OpGetRows:
		a, b := s0, s1
		if !getRowsTypes[a.Type] || b.Type != typeI32 {
			return bad("get_rows: types %d by %d unsupported", a.Type, b.Type)
		}
		if want := uint32(typeF32); a.Type == typeI32 && t.Type != typeI32 || a.Type != typeI32 && t.Type != want {
			return bad("get_rows: result type %d", t.Type)
		}
		if a.NE[2] != b.NE[1] || a.NE[3] != b.NE[2] || b.NE[3] != 1 || t.NE != [4]uint32{a.NE[0], b.NE[0], b.NE[1], b.NE[2]} {
			return bad("get_rows: %v rows %v -> %v", a.NE, b.NE, t.NE)
		}
		if a.NB[0] != typeSize(a.Type) || t.NB[0] != 4 {
			return bad("get_rows: rows are not contiguous")
		}
		if b.Op != rpc.OpNone {
			return bad("get_rows: row indexes must be an input, not computed")
		}

	case rpc.OpSetRows:
		a, b := s0, s1 // rows, indexes; t is a view of the destination
		if a.Type != typeF32 || b.Type != typeI32 && b.Type != typeI64 || !kvTypes[t.Type] {
			return bad("set_rows: types %d by %d into %d unsupported", a.Type, b.Type, t.Type)
		}
		if t.NE[0] != a.NE[0] || t.NE[2] != a.NE[2] || t.NE[3] != a.NE[3] || a.NE[1] != b.NE[0] ||
			b.NE[1] == 0 || b.NE[2] == 0 || a.NE[2]%b.NE[1] != 0 || a.NE[3]%b.NE[2] != 0 || b.NE[3] != 1 {
			return bad("set_rows: %v into %v by %v", a.NE, t.NE, b.NE)
		}
		if a.NB[0] != 4 || t.NB[0] != typeSize(t.Type) && t.NE[0] != blockSize(t.Type) {
			return bad("set_rows: rows are not contiguous")
		}
		if b.Op != rpc.OpNone {
			return bad("set_rows: row indexes must be an input, not computed")
		}

	case rpc.OpSoftMax:
		if s0.Type != typeF32 || t.Type != typeF32 || !sameShape(t, s0) || !isContiguous(s0) || !isContiguous(t) {
			return bad("soft_max: f32, same shape, contiguous only")
		}
		if m := s1; m != nil {
			if m.Type != typeF32 && m.Type != typeF16 || !isContiguous(m) || m.NE[0] != s0.NE[0] || m.NE[1] < s0.NE[1] ||
				m.NE[2] == 0 || m.NE[3] == 0 || s0.NE[2]%m.NE[2] != 0 || s0.NE[3]%m.NE[3] != 0 {
				return bad("soft_max: mask %v does not cover %v", m.NE, s0.NE)
			}
		} else if opParamF32(t, 1) > 0 {
			return bad("soft_max: ALiBi without a mask")
		}
		if sk := src[2]; sk != nil && (sk.Type != typeF32 || sk.NB[0] != 4 || sk.NE[0] != s0.NE[2]) {
			return bad("soft_max: sinks %v for %d heads", sk.NE, s0.NE[2])
		}

	case rpc.OpRope:
		return checkRope(t, s0, s1, src[2])

	case opConcat:
		dim := opParam(t, 0)
		if dim < 0 || dim > 3 {
			return bad("concat: dim %d", dim)
		}
		switch s0.Type {
		case typeF32, typeI32, typeF16, typeBF16, typeI16, typeI8:
		default:
			return bad("concat: type %d unsupported", s0.Type)
		}
		if s1.Type != s0.Type || t.Type != s0.Type {
			return bad("concat: types differ")
		}
		for d := 0; d < 4; d++ {
			want := s0.NE[d]
			if d == int(dim) {
				want = s0.NE[d] + s1.NE[d]
				if want < s0.NE[d] {
					return bad("concat: size overflows")
				}
			} else if s1.NE[d] != s0.NE[d] {
				return bad("concat: %v and %v differ outside dim %d", s0.NE, s1.NE, dim)
			}
			if t.NE[d] != want {
				return bad("concat: result %v", t.NE)
			}
		}

	case opArgsort:
		if o := opParam(t, 0); o != 0 && o != 1 {
			return bad("argsort: order %d", o)
		}
		if s0.Type != typeF32 || t.Type != typeI32 || !sameShape(t, s0) || !isContiguous(s0) || !isContiguous(t) {
			return bad("argsort: f32 -> i32, same shape, contiguous only")
		}
		// std::sort with NaN keys (client data) is undefined behaviour and can
		// run off the row; libstdc++ only insertion-sorts (safely) up to 16.
		if s0.NE[0] > 16 {
			return bad("argsort: rows of %d elements (at most 16)", s0.NE[0])
		}

	case rpc.OpFlashAttn:
		return checkFlashAttn(t, src)
	}
	return nil
}

// checkCopy is DUP/CONT/CPY: ggml_compute_forward_dup's type dispatch.
// rowBytes is the size of one packed row of t.
func rowBytes(t *rpc.Tensor) uint64 {
	return uint64(t.NE[0]) / uint64(blockSize(t.Type)) * uint64(typeSize(t.Type))
}

func checkCopy(t, s *rpc.Tensor) error {
	bad := func(format string, args ...any) error { return fmt.Errorf(format, args...) }
	if nelements(t) != nelements(s) {
		return bad("copy: %v into %v", s.NE, t.NE)
	}
	quant := blockSize(s.Type) > 1
	switch {
	case s.Type == t.Type:
		// dup_bytes: its dst-contiguous row copy sizes rows as ne00*type_size,
		// wrong for block types unless it takes an earlier branch.
		if quant && isContiguous(t) && !isContiguous(s) && !(sameShape(s, t) && s.NB[0] == typeSize(s.Type) && t.NB[0] == typeSize(t.Type)) {
			return bad("copy: quantized rows of a strided source")
		}
	case floatTypes[s.Type] && floatTypes[t.Type], s.Type == typeF32 && t.Type == typeI32, s.Type == typeI32 && t.Type == typeF32:
		// dup_flt
	case floatTypes[s.Type] && kvQuantized[t.Type]:
		// dup_to_q: quantizes whole source rows through a per-thread f32
		// buffer sized by dst's ne[0].
		if !isContiguous(t) || s.NB[0] != typeSize(s.Type) || s.NE[0]%blockSize(t.Type) != 0 || s.NE[0] > t.NE[0] {
			return bad("copy: to %d needs a contiguous result and whole source rows", t.Type)
		}
	case dequantTypes[s.Type] && t.Type == typeF32:
		// dup_from_q (reached by CPY only, where src1 is the destination).
		if t.NB[0] != 4 || t.NE[0]%blockSize(s.Type) != 0 && !isContiguous(t) {
			return bad("copy: dequantizing into strided rows")
		}
	default:
		return bad("copy: type %d to %d unsupported", s.Type, t.Type)
	}
	return nil
}

// checkUnary is SQR, SQRT and UNARY. flt: the ops.cpp kernels (f32 or
// f16, same in and out); otherwise unary-ops.cpp's type combinations.
func checkUnary(t, s *rpc.Tensor, flt bool) error {
	a, d := s.Type, t.Type
	var ok bool
	if flt {
		ok = (a == typeF32 || a == typeF16) && d == a
	} else {
		ok = a == d && floatTypes[a] || (a == typeF16 || a == typeBF16) && d == typeF32
	}
	if !ok {
		return fmt.Errorf("unary: type %d -> %d unsupported", a, d)
	}
	if !sameShape(t, s) || !isContiguous1(s) || !isContiguous1(t) || s.NB[0] != typeSize(a) || t.NB[0] != typeSize(d) {
		return fmt.Errorf("unary: %v -> %v, rows must be contiguous and shapes equal", s.NE, t.NE)
	}
	return nil
}

func checkRope(t, s, pos, ff *rpc.Tensor) error {
	bad := func(format string, args ...any) error { return fmt.Errorf(format, args...) }
	if s.Type != typeF32 && s.Type != typeF16 || t.Type != s.Type || pos.Type != typeI32 {
		return bad("rope: types %d, positions %d -> %d unsupported", s.Type, pos.Type, t.Type)
	}
	if !sameShape(t, s) || t.NB[0] != typeSize(t.Type) || s.NB[0] != t.NB[0] {
		return bad("rope: %v -> %v, rows must be contiguous", s.NE, t.NE)
	}
	ne0 := int64(t.NE[0])
	if ne0%2 != 0 {
		return bad("rope: odd row length %d", ne0)
	}
	nDims, mode := int64(opParam(t, 1)), opParam(t, 2)
	if nDims <= 0 || nDims > ne0 || nDims%2 != 0 {
		return bad("rope: n_dims %d for rows of %d", nDims, ne0)
	}
	npos := uint64(s.NE[2])
	switch mode {
	case 0, ropeNeox:
	case ropeMrope, ropeImrope, ropeVision:
		var sum int64
		any := false
		for i := 0; i < 4; i++ {
			v := int64(opParam(t, 11+i))
			if v < 0 || v > ne0 {
				return bad("rope: section %d = %d", i, v)
			}
			if v > 0 && i < 3 {
				any = true
			}
			sum += v
		}
		if !any || sum > ne0 {
			return bad("rope: sections sum to %d for rows of %d", sum, ne0)
		}
		if mode == ropeVision && nDims != ne0/2 {
			return bad("rope: vision n_dims %d for rows of %d", nDims, ne0)
		}
		npos *= 4
	default:
		return bad("rope: mode %d unsupported", mode)
	}
	if pos.NB[0] != 4 || uint64(pos.NE[0]) < npos || pos.NE[1] != 1 || pos.NE[2] != 1 || pos.NE[3] != 1 {
		return bad("rope: positions %v for %d rows", pos.NE, npos)
	}
	// freq_factors are read for every pair of the row, not just n_dims.
	if ff != nil && (ff.Type != typeF32 || ff.NB[0] != 4 || int64(ff.NE[0]) < ne0/2) {
		return bad("rope: freq_factors %v for rows of %d", ff.NE, ne0)
	}
	return nil
}

func checkFlashAttn(t *rpc.Tensor, src [10]*rpc.Tensor) error {
	bad := func(format string, args ...any) error { return fmt.Errorf(format, args...) }
	q, k, v, mask, sinks := src[0], src[1], src[2], src[3], src[4]
	if p := opParam(t, 3); p != 0 && p != precF32 {
		return bad("flash_attn_ext: precision %d", p)
	}
	if q.Type != typeF32 || !kvTypes[k.Type] || !kvTypes[v.Type] || t.Type != typeF32 {
		return bad("flash_attn_ext: types q %d k %d v %d -> %d unsupported", q.Type, k.Type, v.Type, t.Type)
	}
	if q.NB[0] != 4 || k.NB[0] != typeSize(k.Type) || v.NB[0] != typeSize(v.Type) {
		return bad("flash_attn_ext: rows are not contiguous")
	}
	if k.NE[0] != q.NE[0] || k.NE[2] == 0 || v.NE[2] == 0 || q.NE[2]%k.NE[2] != 0 || q.NE[2]%v.NE[2] != 0 ||
		k.NE[3] != q.NE[3] || v.NE[3] != q.NE[3] || v.NE[1] < k.NE[1] {
		return bad("flash_attn_ext: q %v k %v v %v", q.NE, k.NE, v.NE)
	}
	if t.NE != [4]uint32{v.NE[0], q.NE[2], q.NE[1], q.NE[3]} || !isContiguous(t) {
		return bad("flash_attn_ext: result %v, want contiguous %v", t.NE, [4]uint32{v.NE[0], q.NE[2], q.NE[1], q.NE[3]})
	}
	if mask != nil {
		if mask.Type != typeF16 || !isContiguous(mask) || mask.NE[0] < k.NE[1] || mask.NE[1] < q.NE[1] ||
			mask.NE[2] == 0 || mask.NE[3] == 0 || q.NE[2]%mask.NE[2] != 0 || q.NE[3]%mask.NE[3] != 0 {
			return bad("flash_attn_ext: mask %v for q %v k %v", mask.NE, q.NE, k.NE)
		}
	} else if opParamF32(t, 1) > 0 {
		return bad("flash_attn_ext: ALiBi without a mask")
	}
	if sinks != nil && (sinks.Type != typeF32 || sinks.NB[0] != 4 || sinks.NE[0] != q.NE[2]) {
		return bad("flash_attn_ext: sinks %v for %d heads", sinks.NE, q.NE[2])
	}
	return nil
}
