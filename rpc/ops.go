package rpc

// ggml op numbers at protocol 3.6.0 (ggml-rpc-protocol.md, appendix A) that
// box knows by name. On the wire an op is the raw index into ggml's op
// enum of the peer's ggml.
const (
	OpNone       = 0
	OpDup        = 1
	OpAdd        = 2
	OpAddID      = 3
	OpSub        = 6
	OpMul        = 7
	OpDiv        = 8
	OpSqr        = 9
	OpSqrt       = 10
	OpNorm       = 24
	OpRmsNorm    = 25
	OpMulMat     = 29
	OpMulMatID   = 30
	OpScale      = 32
	OpCpy        = 34
	OpCont       = 35
	OpReshape    = 36
	OpView       = 37
	OpPermute    = 38
	OpTranspose  = 39
	OpGetRows    = 40
	OpSetRows    = 42
	OpSoftMax    = 46
	OpRope       = 48
	OpFlashAttn  = 73
	OpUnary      = 85
	OpMapCustom1 = 86
	OpCustom     = 89
	OpGlu        = 94

	// UnaryCount and GluCount are the sizes of ggml's unary and GLU op
	// enums at 3.6.0 (the sub-op is op_params[0]).
	UnaryCount = 22
	GluCount   = 6
)
