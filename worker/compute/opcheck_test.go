package compute

import (
	"encoding/binary"
	"math"
	"testing"

	"github.com/boxproj/box/rpc"
)

// ct is a contiguous wire tensor as ggml_new_tensor would make it.
func ct(typ uint32, ne ...uint32) *rpc.Tensor {
	t := &rpc.Tensor{Type: typ, NE: [4]uint32{1, 1, 1, 1}}
	copy(t.NE[:], ne)
	blck, ts, _ := rpc.TypeInfo(typ)
	t.NB[0] = uint32(ts)
	t.NB[1] = uint32(uint64(ts) * uint64(t.NE[0]) / uint64(blck))
	t.NB[2] = t.NB[1] * t.NE[1]
	t.NB[3] = t.NB[2] * t.NE[2]
	return t
}

func withParams(t *rpc.Tensor, op uint32, params ...int32) *rpc.Tensor {
	t.Op = op
	for i, p := range params {
		binary.LittleEndian.PutUint32(t.OpParams[4*i:], uint32(p))
	}
	return t
}

// permuted is ggml_permute(t, 0, 2, 1, 3).
func permuted(t *rpc.Tensor) *rpc.Tensor {
	p := *t
	p.NE[1], p.NE[2] = t.NE[2], t.NE[1]
	p.NB[1], p.NB[2] = t.NB[2], t.NB[1]
	p.Op = rpc.OpPermute
	return &p
}

type opCase struct {
	name string
	t    *rpc.Tensor
	src  []*rpc.Tensor
}

func (c opCase) srcs() [10]*rpc.Tensor {
	var s [10]*rpc.Tensor
	copy(s[:], c.src)
	return s
}

func (c opCase) clone() opCase {
	t := *c.t
	out := opCase{name: c.name, t: &t}
	for _, s := range c.src {
		if s == nil {
			out.src = append(out.src, nil)
			continue
		}
		cp := *s
		out.src = append(out.src, &cp)
	}
	return out
}

// validNodes are nodes as ggml's constructors build them for a llama layer
// (and the other allowed ops), with the constructors' shapes, strides and
// op_params.
func validNodes() []opCase {
	const d, heads, kvHeads, toks, kv, hd = 64, 4, 2, 3, 8, 16
	x := ct(tF32, d, toks)
	q3 := ct(tF32, hd, heads, toks)
	pos := ct(tI32, toks)
	kcache := ct(tF16, hd, kv, kvHeads)
	vcache := ct(tF16, hd, kv, kvHeads)
	mask16 := ct(tF16, kv, toks)
	kq := ct(tF32, kv, toks, heads)
	rope := withParams(ct(tF32, hd, heads, toks), rpc.OpRope, 0, hd, 0, 0, 4096, f32param(10000), f32param(1), f32param(0), f32param(1), f32param(32), f32param(1))
	ropeNeoxFF := withParams(ct(tF32, hd, heads, toks), rpc.OpRope, 0, hd, ropeNeox, 0, 4096, f32param(500000), f32param(1), f32param(0), f32param(1), f32param(32), f32param(1))
	mrope := withParams(ct(tF32, hd, heads, toks), rpc.OpRope, 0, hd, ropeMrope, 0, 4096, f32param(10000), f32param(1), f32param(0), f32param(1), f32param(32), f32param(1), 2, 3, 3, 0)
	kview := *kcache
	kview.Op = rpc.OpView
	return []opCase{
		{"none", ct(tF32, d), nil},
		{"reshape", withParams(ct(tF32, hd, heads, toks), rpc.OpReshape), []*rpc.Tensor{ct(tF32, hd*heads, toks)}},
		{"view", withParams(ct(tF32, d, 1), rpc.OpView), []*rpc.Tensor{x}},
		{"permute", permuted(q3), []*rpc.Tensor{q3}},
		{"transpose", withParams(&rpc.Tensor{Type: tF32, NE: [4]uint32{toks, d, 1, 1}, NB: [4]uint32{4 * d, 4, 4 * d * toks, 4 * d * toks}}, rpc.OpTranspose), []*rpc.Tensor{x}},
		{"dup", withParams(ct(tF32, d, toks), rpc.OpDup), []*rpc.Tensor{x}},
		{"cont", withParams(ct(tF32, hd, toks, heads), rpc.OpCont), []*rpc.Tensor{permuted(q3)}},
		{"cont_q8_0", withParams(ct(tQ8_0, 64, 4), rpc.OpCont), []*rpc.Tensor{ct(tQ8_0, 64, 4)}},
		{"cpy_f32_f16", withParams(ct(tF16, hd*kvHeads, toks), rpc.OpCpy), []*rpc.Tensor{ct(tF32, hd, kvHeads, toks), ct(tF16, hd*kvHeads, toks)}},
		{"cpy_f32_q8_0", withParams(ct(tQ8_0, 64, toks), rpc.OpCpy), []*rpc.Tensor{ct(tF32, 64, toks), ct(tQ8_0, 64, toks)}},
		{"cpy_q8_0_f32", withParams(ct(tF32, 64, toks), rpc.OpCpy), []*rpc.Tensor{ct(tQ8_0, 64, toks), ct(tF32, 64, toks)}},
		{"cpy_f16_f32", withParams(ct(tF32, 64, toks), rpc.OpCpy), []*rpc.Tensor{ct(tF16, 64, toks), ct(tF32, 64, toks)}},
		{"add", withParams(ct(tF32, d, toks), rpc.OpAdd), []*rpc.Tensor{x, ct(tF32, d)}},
		{"add_f16_f32", withParams(ct(tF16, d, toks), rpc.OpAdd), []*rpc.Tensor{ct(tF16, d, toks), ct(tF32, d)}},
		{"sub", withParams(ct(tF32, d, toks), rpc.OpSub), []*rpc.Tensor{x, x}},
		{"mul", withParams(ct(tF32, d, toks), rpc.OpMul), []*rpc.Tensor{x, ct(tF32, d)}},
		{"div", withParams(ct(tF32, d, toks), rpc.OpDiv), []*rpc.Tensor{x, ct(tF32, 1, toks)}},
		{"sqr", withParams(ct(tF32, d, toks), rpc.OpSqr), []*rpc.Tensor{x}},
		{"sqrt", withParams(ct(tF32, d, toks), rpc.OpSqrt), []*rpc.Tensor{x}},
		{"unary_silu", withParams(ct(tF32, d, toks), rpc.OpUnary, 10), []*rpc.Tensor{x}},
		{"unary_gelu", withParams(ct(tF32, d, toks), rpc.OpUnary, 8), []*rpc.Tensor{x}},
		{"unary_relu", withParams(ct(tF32, d, toks), rpc.OpUnary, 6), []*rpc.Tensor{x}},
		{"unary_exp_f16_f32", withParams(ct(tF32, d, toks), rpc.OpUnary, 13), []*rpc.Tensor{ct(tF16, d, toks)}},
		{"glu_swiglu_split", withParams(ct(tF32, d, toks), rpc.OpGlu, 2, 0), []*rpc.Tensor{x, x}},
		{"glu_geglu_fused", withParams(ct(tF32, d/2, toks), rpc.OpGlu, 1, 0), []*rpc.Tensor{x}},
		{"glu_reglu_swapped", withParams(ct(tF32, d/2, toks), rpc.OpGlu, 0, 1), []*rpc.Tensor{x}},
		{"sum_rows", withParams(ct(tF32, 1, toks), opSumRows), []*rpc.Tensor{x}},
		{"norm", withParams(ct(tF32, d, toks), rpc.OpNorm, f32param(1e-5)), []*rpc.Tensor{x}},
		{"rms_norm", withParams(ct(tF32, d, toks), rpc.OpRmsNorm, f32param(1e-6)), []*rpc.Tensor{x}},
		{"scale", withParams(ct(tF32, kv, toks, heads), rpc.OpScale, f32param(0.125), 0), []*rpc.Tensor{kq}},
		{"mul_mat_q8_0", withParams(ct(tF32, 32, toks), rpc.OpMulMat), []*rpc.Tensor{ct(tQ8_0, d, 32), x}},
		{"mul_mat_q4_K", withParams(ct(tF32, 8, toks), rpc.OpMulMat), []*rpc.Tensor{ct(typeQ4_K, 256, 8), ct(tF32, 256, toks)}},
		{"mul_mat_kq_gqa", withParams(ct(tF32, kv, toks, heads), rpc.OpMulMat), []*rpc.Tensor{kcache, permuted(q3)}},
		{"get_rows", withParams(ct(tF32, d, toks), rpc.OpGetRows), []*rpc.Tensor{ct(tQ8_0, d, 100), pos}},
		{"get_rows_f32", withParams(ct(tF32, d, 2), rpc.OpGetRows), []*rpc.Tensor{x, ct(tI32, 2)}},
		{"set_rows_f16", withParams(ct(tF16, hd*kvHeads, kv), rpc.OpSetRows), []*rpc.Tensor{ct(tF32, hd*kvHeads, toks), ct(typeI64, toks), ct(tF16, hd*kvHeads, kv)}},
		{"set_rows_q8_0", withParams(ct(tQ8_0, 64, kv), rpc.OpSetRows), []*rpc.Tensor{ct(tF32, 64, toks), ct(tI32, toks), ct(tQ8_0, 64, kv)}},
		{"soft_max", withParams(ct(tF32, kv, toks, heads), rpc.OpSoftMax, f32param(0.125), 0), []*rpc.Tensor{kq, ct(tF32, kv, toks)}},
		{"soft_max_f16_mask_sinks", withParams(ct(tF32, kv, toks, heads), rpc.OpSoftMax, f32param(1), f32param(8)), []*rpc.Tensor{kq, mask16, ct(tF32, heads)}},
		{"soft_max_nomask", withParams(ct(tF32, kv, toks, heads), rpc.OpSoftMax, f32param(1), 0), []*rpc.Tensor{kq}},
		{"rope", rope, []*rpc.Tensor{q3, pos}},
		{"rope_neox_freqs", ropeNeoxFF, []*rpc.Tensor{q3, pos, ct(tF32, hd/2)}},
		{"rope_mrope", mrope, []*rpc.Tensor{q3, ct(tI32, 4*toks)}},
		{"concat", withParams(ct(tF32, d, toks+2), opConcat, 1), []*rpc.Tensor{x, ct(tF32, d, 2)}},
		{"argsort", withParams(ct(tI32, 8, toks), opArgsort, 1), []*rpc.Tensor{ct(tF32, 8, toks)}},
		{"flash_attn_ext", withParams(ct(tF32, hd, heads, toks), rpc.OpFlashAttn, f32param(0.25), 0, 0, 0),
			[]*rpc.Tensor{permuted(q3), &kview, vcache, mask16}},
		{"flash_attn_ext_q8_0_sinks", withParams(ct(tF32, 32, heads, toks), rpc.OpFlashAttn, f32param(0.25), 0, 0, precF32),
			[]*rpc.Tensor{ct(tF32, 32, toks, heads), ct(tQ8_0, 32, kv, kvHeads), ct(tQ8_0, 32, kv, kvHeads), mask16, ct(tF32, heads)}},
	}
}

func TestCheckOpAcceptsConstructorNodes(t *testing.T) {
	for _, c := range validNodes() {
		if err := checkOp(c.t, c.srcs()); err != nil {
			t.Errorf("%s: refused: %v", c.name, err)
		}
	}
}

func TestCheckOpRefuses(t *testing.T) {
	byName := map[string]opCase{}
	for _, c := range validNodes() {
		byName[c.name] = c
	}
	setP := func(t *rpc.Tensor, i int, v int32) { binary.LittleEndian.PutUint32(t.OpParams[4*i:], uint32(v)) }
	for _, tc := range []struct {
		base, name string
		mut        func(c *opCase)
	}{
		{"add", "op not allowed (ADD_ID)", func(c *opCase) { c.t.Op = rpc.OpAddID }},
		{"add", "custom op", func(c *opCase) { c.t.Op = rpc.OpCustom }},
		{"add", "im2col", func(c *opCase) { c.t.Op = 51 }},
		{"add", "missing src1", func(c *opCase) { c.src = c.src[:1] }},
		{"add", "extra source", func(c *opCase) { c.src = append(c.src, c.src[0]) }},
		{"add", "src1 f16 dst f32 (fuzz crasher)", func(c *opCase) { c.src[1].Type = tF16; c.src[1].NB[0] = 2 }},
		{"add", "quantized src0", func(c *opCase) { c.src[0] = ct(tQ8_0, 64, 3) }},
		{"add", "no broadcast", func(c *opCase) { c.src[1].NE[0] = 3 }},
		{"add", "zero-size src1", func(c *opCase) { c.src[1].NE[1] = 0 }},
		{"add", "result shape", func(c *opCase) { c.t.NE[1] = 2 }},
		{"add", "dst nb0", func(c *opCase) { c.t.NB[0] = 8 }},
		{"add", "src0 nb0", func(c *opCase) { c.src[0].NB[0] = 8 }},
		{"add", "non-contiguous broadcast", func(c *opCase) { c.src[1].NB[0] = 8 }},
		{"dup", "type change", func(c *opCase) { c.t.Type = tF16 }},
		{"dup", "count differs", func(c *opCase) { c.t.NE[1] = 2 }},
		{"cont_q8_0", "quantized strided", func(c *opCase) { c.src[0].NB[1] *= 2; c.src[0].NE[0] = 32; c.src[0].NE[1] = 8 }},
		{"cpy_f32_f16", "dst differs from src1", func(c *opCase) { c.t.NB[1] += 2 }},
		{"cpy_f32_f16", "counts differ", func(c *opCase) { c.src[0].NE[2] = 2 }},
		{"cpy_f32_q8_0", "to q8_0 non-contiguous", func(c *opCase) { c.t.NB[1] *= 2; c.src[1].NB[1] *= 2 }},
		{"cpy_f32_q8_0", "to q8_0 short dst rows", func(c *opCase) {
			c.src[0] = ct(tF32, 128, 3)
			*c.t = *ct(tQ8_0, 32, 12)
			c.t.Op = rpc.OpCpy
			c.src[1] = ct(tQ8_0, 32, 12)
		}},
		{"cpy_f32_q8_0", "to q4_K", func(c *opCase) {
			c.t = ct(typeQ4_K, 256, 1)
			c.t.Op = rpc.OpCpy
			c.src[1] = ct(typeQ4_K, 256, 1)
			c.src[0] = ct(tF32, 256)
		}},
		{"cpy_q8_0_f32", "q8_0 to f16", func(c *opCase) { c.t = ct(tF16, 64, 3); c.t.Op = rpc.OpCpy; c.src[1] = ct(tF16, 64, 3) }},
		{"cpy_q8_0_f32", "from q8_1 (no to_float)", func(c *opCase) { c.src[0].Type = 9; c.src[0].NB[0] = 36 }},
		{"cpy_f16_f32", "i8 to f32", func(c *opCase) { c.src[0] = ct(typeI8, 64, 3) }},
		{"sqr", "i32", func(c *opCase) { c.t.Type, c.src[0].Type = tI32, tI32 }},
		{"sqr", "f32 to f16", func(c *opCase) { c.t = ct(tF16, 64, 3); c.t.Op = rpc.OpSqr }},
		{"sqr", "non-contiguous rows", func(c *opCase) {
			c.src[0].NE = [4]uint32{64, 3, 2, 1}
			c.t.NE = c.src[0].NE
			c.t.NB[2] = c.t.NB[1] * 3
			c.t.NB[3] = c.t.NB[2] * 2
			c.src[0].NB[2] = 0
		}},
		{"unary_silu", "op 22", func(c *opCase) { setP(c.t, 0, 22) }},
		{"unary_silu", "op -1", func(c *opCase) { setP(c.t, 0, -1) }},
		{"unary_silu", "silu bf16", func(c *opCase) { c.t.Type, c.src[0].Type = typeBF16, typeBF16; c.t.NB[0], c.src[0].NB[0] = 2, 2 }},
		{"unary_silu", "silu f32 to f16", func(c *opCase) { c.t = ct(tF16, 64, 3); c.t.Op = rpc.OpUnary; setP(c.t, 0, 10) }},
		{"unary_relu", "shape", func(c *opCase) { c.t.NE[1] = 1 }},
		{"glu_swiglu_split", "op 6", func(c *opCase) { setP(c.t, 0, 6) }},
		{"glu_swiglu_split", "halves differ", func(c *opCase) { c.src[1] = ct(tF32, 32, 3) }},
		{"glu_swiglu_split", "result width", func(c *opCase) { c.t.NE[0] = 32 }},
		{"glu_swiglu_split", "dst f16", func(c *opCase) { c.t.Type = tF16 }},
		{"glu_geglu_fused", "result width", func(c *opCase) { c.t.NE[0] = 64 }},
		{"glu_geglu_fused", "swiglu_oai f16", func(c *opCase) {
			setP(c.t, 0, 3)
			c.t.Type, c.src[0].Type = tF16, tF16
			c.t.NB, c.src[0].NB = ct(tF16, 32, 3).NB, ct(tF16, 64, 3).NB
		}},
		{"sum_rows", "ne0", func(c *opCase) { c.t.NE[0] = 2 }},
		{"sum_rows", "f16", func(c *opCase) { c.src[0].Type = tF16 }},
		{"norm", "negative eps", func(c *opCase) { setP(c.t, 0, f32param(-1)) }},
		{"rms_norm", "nan eps", func(c *opCase) { setP(c.t, 0, 0x7fc00000) }},
		{"rms_norm", "f16 dst", func(c *opCase) { c.t.Type = tF16 }},
		{"rms_norm", "shape", func(c *opCase) { c.t.NE[0] = 32 }},
		{"scale", "non-contiguous", func(c *opCase) { c.src[0] = permuted(c.src[0]); c.t.NE = c.src[0].NE }},
		{"mul_mat_q8_0", "ne0 != ne01", func(c *opCase) { c.t.NE[0] = 16 }},
		{"mul_mat_q8_0", "k differs", func(c *opCase) { c.src[1].NE[0] = 32 }},
		{"mul_mat_q8_0", "src1 f16", func(c *opCase) { c.src[1].Type = tF16; c.src[1].NB[0] = 2 }},
		{"mul_mat_q8_0", "dst f16", func(c *opCase) { c.t.Type = tF16 }},
		{"mul_mat_q8_0", "src0 q8_1 (no vec_dot)", func(c *opCase) { c.src[0].Type = 9; c.src[0].NB[0] = 36 }},
		{"mul_mat_q8_0", "src0 i32", func(c *opCase) { c.src[0].Type = tI32; c.src[0].NB[0] = 4 }},
		{"mul_mat_q8_0", "src0 permuted", func(c *opCase) { c.src[0].NB[0] = 68 }},
		{"mul_mat_q8_0", "src1 nb0", func(c *opCase) { c.src[1].NB[0] = 8 }},
		{"mul_mat_q8_0", "dst transposed", func(c *opCase) { c.t.NB[1] = 2 }},
		{"mul_mat_q8_0", "dst nb3 < nb2", func(c *opCase) { c.t.NB[3] = 0 }},
		{"mul_mat_kq_gqa", "broadcast not divisible", func(c *opCase) { c.src[0].NE[2] = 3 }},
		{"mul_mat_kq_gqa", "zero ne02", func(c *opCase) { c.src[0].NE[2] = 0 }},
		{"get_rows", "index f32", func(c *opCase) { c.src[1].Type = tF32 }},
		{"get_rows", "index computed", func(c *opCase) { c.src[1].Op = rpc.OpCpy }},
		{"get_rows", "src q8_1", func(c *opCase) { c.src[0].Type = 9; c.src[0].NB[0] = 36 }},
		{"get_rows", "dst f16", func(c *opCase) { c.t.Type = tF16 }},
		{"get_rows", "dst rows", func(c *opCase) { c.t.NE[1] = 5 }},
		{"get_rows", "dst nb0", func(c *opCase) { c.t.NB[0] = 8 }},
		{"get_rows", "index 2-d vs src", func(c *opCase) { c.src[1].NE[1] = 2 }},
		{"set_rows_f16", "src f16", func(c *opCase) { c.src[0].Type = tF16 }},
		{"set_rows_f16", "index f32", func(c *opCase) { c.src[1].Type = tF32 }},
		{"set_rows_f16", "index computed", func(c *opCase) { c.src[1].Op = opArgsort }},
		{"set_rows_f16", "dst iq2_xxs", func(c *opCase) { c.t.Type = typeIQ2XXS }},
		{"set_rows_f16", "row width", func(c *opCase) { c.t.NE[0] = 16 }},
		{"set_rows_f16", "rows vs indexes", func(c *opCase) { c.src[1].NE[0] = 2 }},
		{"set_rows_f16", "zero index ne1", func(c *opCase) { c.src[1].NE[1] = 0 }},
		{"set_rows_f16", "src rows strided", func(c *opCase) { c.src[0].NB[0] = 8 }},
		{"soft_max", "f16 src", func(c *opCase) { c.src[0].Type = tF16 }},
		{"soft_max", "shape", func(c *opCase) { c.t.NE[1] = 2 }},
		{"soft_max", "mask width", func(c *opCase) { c.src[1].NE[0] = 4 }},
		{"soft_max", "mask rows", func(c *opCase) { c.src[1].NE[1] = 1 }},
		{"soft_max", "mask i32", func(c *opCase) { c.src[1].Type = tI32 }},
		{"soft_max", "mask zero ne2", func(c *opCase) { c.src[1].NE[2] = 0 }},
		{"soft_max", "mask broadcast", func(c *opCase) { c.src[1].NE[2] = 3 }},
		{"soft_max", "non-contiguous src", func(c *opCase) { c.src[0] = permuted(c.src[0]); c.t.NE = c.src[0].NE }},
		{"soft_max_nomask", "alibi without mask", func(c *opCase) { setP(c.t, 1, f32param(8)) }},
		{"soft_max_f16_mask_sinks", "sinks count", func(c *opCase) { c.src[2].NE[0] = 2 }},
		{"soft_max_f16_mask_sinks", "sinks f16", func(c *opCase) { c.src[2].Type = tF16 }},
		{"rope", "n_dims > ne0", func(c *opCase) { setP(c.t, 1, 32) }},
		{"rope", "n_dims odd", func(c *opCase) { setP(c.t, 1, 15) }},
		{"rope", "n_dims negative", func(c *opCase) { setP(c.t, 1, -2) }},
		{"rope", "mode 1", func(c *opCase) { setP(c.t, 2, 1) }},
		{"rope", "mode 10", func(c *opCase) { setP(c.t, 2, 10) }},
		{"rope", "positions short", func(c *opCase) { c.src[1].NE[0] = 2 }},
		{"rope", "positions f32", func(c *opCase) { c.src[1].Type = tF32 }},
		{"rope", "f32 -> f16", func(c *opCase) { c.t.Type = tF16 }},
		{"rope", "src q8_0", func(c *opCase) {
			c.src[0] = ct(tQ8_0, 32, 4, 3)
			c.t = ct(tQ8_0, 32, 4, 3)
			c.t.Op = rpc.OpRope
			setP(c.t, 1, 32)
		}},
		{"rope", "nb0", func(c *opCase) { c.t.NB[0] = 8 }},
		{"rope", "shape", func(c *opCase) { c.t.NE[1] = 2 }},
		{"rope_neox_freqs", "freq factors short", func(c *opCase) { c.src[2].NE[0] = 4 }},
		{"rope_neox_freqs", "freq factors f16", func(c *opCase) { c.src[2].Type = tF16 }},
		{"rope_mrope", "positions not x4", func(c *opCase) { c.src[1].NE[0] = 3 }},
		{"rope_mrope", "no sections", func(c *opCase) {
			for i := 11; i < 15; i++ {
				setP(c.t, i, 0)
			}
		}},
		{"rope_mrope", "negative section", func(c *opCase) { setP(c.t, 11, -3); setP(c.t, 12, 3) }},
		{"rope_mrope", "sections too long", func(c *opCase) { setP(c.t, 11, 16); setP(c.t, 12, 16) }},
		{"rope_mrope", "vision n_dims", func(c *opCase) { setP(c.t, 2, ropeVision) }},
		{"concat", "dim 4", func(c *opCase) { setP(c.t, 0, 4) }},
		{"concat", "dim -1", func(c *opCase) { setP(c.t, 0, -1) }},
		{"concat", "result", func(c *opCase) { c.t.NE[1] = 6 }},
		{"concat", "other dims differ", func(c *opCase) { c.src[1].NE[0] = 32 }},
		{"concat", "types differ", func(c *opCase) { c.src[1].Type = tF16 }},
		{"concat", "quantized", func(c *opCase) { c.src[0].Type, c.src[1].Type, c.t.Type = tQ8_0, tQ8_0, tQ8_0 }},
		{"argsort", "order 2", func(c *opCase) { setP(c.t, 0, 2) }},
		{"argsort", "dst f32", func(c *opCase) { c.t.Type = tF32 }},
		{"argsort", "i32 source", func(c *opCase) { c.src[0].Type = tI32 }},
		{"argsort", "long rows", func(c *opCase) { c.src[0] = ct(tF32, 32, 3); c.t = ct(tI32, 32, 3); c.t.Op = opArgsort }},
		{"flash_attn_ext", "precision 3", func(c *opCase) { setP(c.t, 3, 3) }},
		{"flash_attn_ext", "q f16", func(c *opCase) { c.src[0].Type = tF16 }},
		{"flash_attn_ext", "k q4_K", func(c *opCase) { c.src[1].Type = typeQ4_K }},
		{"flash_attn_ext", "v i32", func(c *opCase) { c.src[2].Type = tI32 }},
		{"flash_attn_ext", "head dims differ", func(c *opCase) { c.src[1].NE[0] = 8 }},
		{"flash_attn_ext", "gqa not divisible", func(c *opCase) { c.src[1].NE[2] = 3 }},
		{"flash_attn_ext", "v shorter than k", func(c *opCase) { c.src[2].NE[1] = 4 }},
		{"flash_attn_ext", "result shape", func(c *opCase) { c.t.NE[1] = 3 }},
		{"flash_attn_ext", "result strided", func(c *opCase) { c.t.NB[1] *= 2; c.t.NB[2] *= 2; c.t.NB[3] *= 2 }},
		{"flash_attn_ext", "mask f32", func(c *opCase) { c.src[3].Type = tF32 }},
		{"flash_attn_ext", "mask short", func(c *opCase) { c.src[3].NE[0] = 4 }},
		{"flash_attn_ext", "mask rows", func(c *opCase) { c.src[3].NE[1] = 1 }},
		{"flash_attn_ext", "k rows strided", func(c *opCase) { c.src[1].NB[0] = 4 }},
		{"flash_attn_ext_q8_0_sinks", "sinks count", func(c *opCase) { c.src[4].NE[0] = 1 }},
	} {
		base, ok := byName[tc.base]
		if !ok {
			t.Fatalf("no valid node %q", tc.base)
		}
		c := base.clone()
		tc.mut(&c)
		if err := checkOp(c.t, c.srcs()); err == nil {
			t.Errorf("%s: %s: accepted", tc.base, tc.name)
		}
	}
}

const (
	tF32  = 0
	tF16  = 1
	tQ8_0 = 8
	tI32  = 26
)

func f32param(x float32) int32 { return int32(math.Float32bits(x)) }
