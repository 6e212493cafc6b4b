// Package rpc is a pure-Go codec and client for the ggml RPC wire protocol,
// version 3.6.0 (the version declared by ggml commit 0a2b6b20, which is the
// ggml vendored by ollama v0.17.4).
//
// The package has three layers:
//
//   - framing: ReadRequestHeader, WriteRequest, ReadResponseHeader and
//     WriteResponse move whole frames (a 1-byte command and a u64 size on
//     requests, a u64 size on responses);
//   - payload codecs: one struct per request or response layout with an
//     Encode/AppendTo method and a DecodeXxx function that checks sizes.
//     Decoders only check the wire shape (sizes, counts); semantic checks
//     (device index, buffer handle, tensor type, ranges) belong to the server;
//   - Client: a connection to one worker (a box worker or llama.cpp's
//     rpc-server) with one method per command.
//
// Everything is little-endian and packed, as the reference implementation is
// on every real deployment. See the prose specification in
// docs/ggml-rpc-protocol.md of the shared documentation.
package rpc

import (
	"errors"
	"fmt"
	"strconv"
)

// Protocol version spoken by this package.
const (
	ProtoMajor = 3
	ProtoMinor = 6
	ProtoPatch = 0
)

// Cmd is a request command code (the first byte of a request frame).
type Cmd uint8

// Command codes at protocol 3.6.0.
const (
	CmdAllocBuffer     Cmd = 0
	CmdGetAlignment    Cmd = 1
	CmdGetMaxSize      Cmd = 2
	CmdBufferGetBase   Cmd = 3
	CmdFreeBuffer      Cmd = 4
	CmdBufferClear     Cmd = 5
	CmdSetTensor       Cmd = 6
	CmdSetTensorHash   Cmd = 7
	CmdGetTensor       Cmd = 8
	CmdCopyTensor      Cmd = 9
	CmdGraphCompute    Cmd = 10
	CmdGetDeviceMemory Cmd = 11
	CmdInitTensor      Cmd = 12
	CmdGetAllocSize    Cmd = 13
	CmdHello           Cmd = 14
	CmdDeviceCount     Cmd = 15
	CmdGraphRecompute  Cmd = 16

	// CmdCount is the number of commands; every code >= CmdCount is unknown.
	CmdCount = 17

	// CmdNone is not a wire command. Decoders of layouts shared by several
	// commands (DecodeTensor, DecodeDeviceReq, DecodeBufferReq) report it in
	// ProtocolError.Cmd; DecodeRequest and the Client fill in the real one.
	CmdNone Cmd = 0xff
)

var cmdNames = [CmdCount]string{
	"ALLOC_BUFFER", "GET_ALIGNMENT", "GET_MAX_SIZE", "BUFFER_GET_BASE",
	"FREE_BUFFER", "BUFFER_CLEAR", "SET_TENSOR", "SET_TENSOR_HASH",
	"GET_TENSOR", "COPY_TENSOR", "GRAPH_COMPUTE", "GET_DEVICE_MEMORY",
	"INIT_TENSOR", "GET_ALLOC_SIZE", "HELLO", "DEVICE_COUNT",
	"GRAPH_RECOMPUTE",
}

// String returns the upstream name of the command (e.g. "GRAPH_COMPUTE"), or
// "CMD_<n>" for an unknown code.
func (c Cmd) String() string {
	if c < CmdCount {
		return cmdNames[c]
	}
	if c == CmdMemsetTensor {
		return "MEMSET_TENSOR"
	}
	if c == CmdNone {
		return "NONE"
	}
	return "CMD_" + strconv.Itoa(int(c))
}

// Valid reports whether c is a command known at 3.6.0.
func (c Cmd) Valid() bool { return c < CmdCount }

// Wire sizes (bytes).
const (
	// TensorSize is the size of one serialized tensor (rpc_tensor).
	TensorSize = 296
	// SetTensorHeaderSize is the fixed part of a SET_TENSOR payload
	// (tensor + offset); the data follows it.
	SetTensorHeaderSize = TensorSize + 8
	// GetAllocSizeReqSize is the size of a GET_ALLOC_SIZE payload.
	GetAllocSizeReqSize = 4 + TensorSize*(1+MaxSrc)
	// RequestHeaderSize is the command byte plus the u64 payload size.
	RequestHeaderSize = 9
	// ResponseHeaderSize is the u64 payload size of a response.
	ResponseHeaderSize = 8
)

// HashThreshold is the SET_TENSOR size above which (strictly greater) the
// reference client first tries SET_TENSOR_HASH and the reference server
// writes its cache file.
const HashThreshold = 10 << 20

// BoxCacheThreshold is where box departs from the reference: its worker
// caches uploads above 1 MiB and its head offers hashes from that size, so a
// warm reload sends almost no weights. Against a reference server the head
// pays one extra round trip for each tensor between 1 and 10 MiB.
const BoxCacheThreshold = 1 << 20

// ggml limits at 3.6.0.
const (
	MaxDims     = 4
	MaxSrc      = 10
	MaxOpParams = 64 // bytes
	MaxName     = 64 // bytes, including the terminating NUL
	TypeCount   = 40
	OpCount     = 95
)

// Tensor flags (rpc_tensor.flags). FlagCompute does not exist at 3.6.0 as
// released; servers built from ggml on or after 2026-01-19 (still reporting
// 3.6.0) skip graph nodes without it, and older servers ignore it, so a
// client should set it on every graph node (§11 of the spec).
const (
	FlagInput   = 1
	FlagOutput  = 2
	FlagParam   = 4
	FlagLoss    = 8
	FlagCompute = 16
)

// RequestSize returns the payload size the reference server requires for
// cmd. For fixed-size commands exact is true and n is the only accepted
// size. For SET_TENSOR and GRAPH_COMPUTE exact is false and n is the minimum
// (their decoders do the full check). ok is false for unknown commands.
func (c Cmd) RequestSize() (n uint64, exact, ok bool) {
	switch c {
	case CmdAllocBuffer:
		return 12, true, true
	case CmdGetAlignment, CmdGetMaxSize, CmdGetDeviceMemory, CmdGraphRecompute:
		return 4, true, true
	case CmdBufferGetBase, CmdFreeBuffer:
		return 8, true, true
	case CmdBufferClear:
		return 9, true, true
	case CmdSetTensor:
		return SetTensorHeaderSize, false, true
	case CmdSetTensorHash, CmdGetTensor:
		return TensorSize + 16, true, true
	case CmdCopyTensor:
		return 2 * TensorSize, true, true
	case CmdGraphCompute:
		return 8, false, true
	case CmdInitTensor:
		return TensorSize, true, true
	case CmdGetAllocSize:
		return GetAllocSizeReqSize, true, true
	case CmdHello, CmdDeviceCount:
		return 0, true, true
	}
	return 0, false, false
}

// HasResponse reports whether the server answers cmd at all. SET_TENSOR,
// GRAPH_COMPUTE and GRAPH_RECOMPUTE are fire-and-forget; FREE_BUFFER,
// BUFFER_CLEAR and INIT_TENSOR get a response with an empty payload.
func (c Cmd) HasResponse() bool {
	switch c {
	case CmdSetTensor, CmdGraphCompute, CmdGraphRecompute:
		return false
	}
	return c < CmdCount
}

// ResponseSize returns the exact response payload size for cmd, for every
// command that has a response and whose size does not depend on the request
// (GET_TENSOR answers with the requested size: fixed is false).
func (c Cmd) ResponseSize() (n uint64, fixed bool) {
	switch c {
	case CmdAllocBuffer, CmdGetDeviceMemory:
		return 16, true
	case CmdGetAlignment, CmdGetMaxSize, CmdBufferGetBase, CmdGetAllocSize:
		return 8, true
	case CmdFreeBuffer, CmdBufferClear, CmdInitTensor:
		return 0, true
	case CmdSetTensorHash, CmdCopyTensor:
		return 1, true
	case CmdHello:
		return 3, true
	case CmdDeviceCount:
		return 4, true
	}
	return 0, false
}

// Kinds of ProtocolError. They are short, stable labels suitable for a
// metric dimension. The decoders in this package only produce KindSize,
// KindGraph, KindHello and KindCommand; the others are for servers doing
// semantic validation.
const (
	KindSize    = "size"    // a payload or response has the wrong size
	KindDevice  = "device"  // device index out of range
	KindType    = "type"    // unknown or removed tensor type
	KindBuffer  = "buffer"  // unknown buffer handle
	KindRange   = "range"   // data range outside a buffer or tensor
	KindGraph   = "graph"   // malformed graph (counts, missing ids)
	KindHello   = "hello"   // handshake problem
	KindCommand = "command" // unknown or out-of-order command
	KindShape   = "shape"   // ne/nb inconsistent with the type or buffer
	KindOp      = "op"      // unknown or unsupported op
)

// ProtocolError is a violation of the wire protocol: a malformed request
// payload (returned by the decoders), or a response the client did not
// expect. Kind is one of the Kind* labels.
type ProtocolError struct {
	Cmd  Cmd
	Kind string
	Msg  string
	// Err is an optional underlying cause (for example the I/O error seen
	// during a handshake). It may be nil.
	Err error
}

func (e *ProtocolError) Error() string {
	s := "rpc: " + e.Cmd.String() + ": " + e.Kind + ": " + e.Msg
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *ProtocolError) Unwrap() error { return e.Err }

func protoErr(cmd Cmd, kind, format string, args ...any) *ProtocolError {
	return &ProtocolError{Cmd: cmd, Kind: kind, Msg: fmt.Sprintf(format, args...)}
}

// IsProtocolError reports whether err is (or wraps) a *ProtocolError and
// returns it.
func IsProtocolError(err error) (*ProtocolError, bool) {
	var pe *ProtocolError
	ok := errors.As(err, &pe)
	return pe, ok
}

// ggml_type numbers at 3.6.0. Gaps (4, 5, 31, 32, 33, 36, 37, 38) are
// removed types.
const (
	TypeF32     = 0
	TypeF16     = 1
	TypeQ4_0    = 2
	TypeQ4_1    = 3
	TypeQ5_0    = 6
	TypeQ5_1    = 7
	TypeQ8_0    = 8
	TypeQ8_1    = 9
	TypeQ2_K    = 10
	TypeQ3_K    = 11
	TypeQ4_K    = 12
	TypeQ5_K    = 13
	TypeQ6_K    = 14
	TypeQ8_K    = 15
	TypeIQ2_XXS = 16
	TypeIQ2_XS  = 17
	TypeIQ3_XXS = 18
	TypeIQ1_S   = 19
	TypeIQ4_NL  = 20
	TypeIQ3_S   = 21
	TypeIQ2_S   = 22
	TypeIQ4_XS  = 23
	TypeI8      = 24
	TypeI16     = 25
	TypeI32     = 26
	TypeI64     = 27
	TypeF64     = 28
	TypeIQ1_M   = 29
	TypeBF16    = 30
	TypeTQ1_0   = 34
	TypeTQ2_0   = 35
	TypeMXFP4   = 39
)

type typeTraits struct {
	name string
	blck int // elements per block
	size int // bytes per block
}

// Block sizes and block byte sizes as in ggml's type_traits at 3.6.0
// (derived from the block structs in ggml-common.h; QK_K = 256).
var typeTable = [TypeCount]typeTraits{
	TypeF32:     {"f32", 1, 4},
	TypeF16:     {"f16", 1, 2},
	TypeQ4_0:    {"q4_0", 32, 18},
	TypeQ4_1:    {"q4_1", 32, 20},
	TypeQ5_0:    {"q5_0", 32, 22},
	TypeQ5_1:    {"q5_1", 32, 24},
	TypeQ8_0:    {"q8_0", 32, 34},
	TypeQ8_1:    {"q8_1", 32, 36},
	TypeQ2_K:    {"q2_K", 256, 84},
	TypeQ3_K:    {"q3_K", 256, 110},
	TypeQ4_K:    {"q4_K", 256, 144},
	TypeQ5_K:    {"q5_K", 256, 176},
	TypeQ6_K:    {"q6_K", 256, 210},
	TypeQ8_K:    {"q8_K", 256, 292},
	TypeIQ2_XXS: {"iq2_xxs", 256, 66},
	TypeIQ2_XS:  {"iq2_xs", 256, 74},
	TypeIQ3_XXS: {"iq3_xxs", 256, 98},
	TypeIQ1_S:   {"iq1_s", 256, 50},
	TypeIQ4_NL:  {"iq4_nl", 32, 18},
	TypeIQ3_S:   {"iq3_s", 256, 110},
	TypeIQ2_S:   {"iq2_s", 256, 82},
	TypeIQ4_XS:  {"iq4_xs", 256, 136},
	TypeI8:      {"i8", 1, 1},
	TypeI16:     {"i16", 1, 2},
	TypeI32:     {"i32", 1, 4},
	TypeI64:     {"i64", 1, 8},
	TypeF64:     {"f64", 1, 8},
	TypeIQ1_M:   {"iq1_m", 256, 56},
	TypeBF16:    {"bf16", 1, 2},
	TypeTQ1_0:   {"tq1_0", 256, 54},
	TypeTQ2_0:   {"tq2_0", 256, 66},
	TypeMXFP4:   {"mxfp4", 32, 17},
}

// TypeInfo returns ggml's block size (elements per block) and type size
// (bytes per block) for a ggml_type at 3.6.0. ok is false for removed type
// numbers (4, 5, 31-33, 36-38; block size 0 in ggml, which makes a 3.6.0
// server divide by zero) and for t >= TypeCount.
func TypeInfo(t uint32) (blockSize, typeSize int, ok bool) {
	if t >= TypeCount {
		return 0, 0, false
	}
	tt := typeTable[t]
	if tt.blck == 0 {
		return 0, 0, false
	}
	return tt.blck, tt.size, true
}

// TypeName returns ggml's name of a type ("f32", "q4_K", ...), or
// "type(<n>)" for an unknown or removed type.
func TypeName(t uint32) string {
	if t < TypeCount && typeTable[t].blck != 0 {
		return typeTable[t].name
	}
	return "type(" + strconv.FormatUint(uint64(t), 10) + ")"
}
