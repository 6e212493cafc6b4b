package rpc

// Payload codecs. Every request and response layout has a struct with
// AppendTo (append the payload to a buffer) and Encode (a fresh payload),
// and a DecodeXxx function that checks the size exactly (or the minimum for
// SET_TENSOR) and returns a *ProtocolError of kind "size" otherwise.
//
// The decoders copy what they return, except where documented (the data of
// SetTensorReq aliases the payload).

// Message is implemented by every payload struct.
type Message interface {
	AppendTo(b []byte) []byte
}

func sizeErr(cmd Cmd, got, want int) error {
	return protoErr(cmd, KindSize, "payload is %d bytes, want %d", got, want)
}

func encode(m Message, n int) []byte { return m.AppendTo(make([]byte, 0, n)) }

// ---- ALLOC_BUFFER ----

// AllocBufferReq is the ALLOC_BUFFER request (12 bytes).
type AllocBufferReq struct {
	Device uint32
	Size   uint64
}

func (r AllocBufferReq) AppendTo(b []byte) []byte {
	b = le.AppendUint32(b, r.Device)
	return le.AppendUint64(b, r.Size)
}
func (r AllocBufferReq) Encode() []byte { return encode(r, 12) }

// DecodeAllocBuffer decodes an ALLOC_BUFFER request payload.
func DecodeAllocBuffer(p []byte) (AllocBufferReq, error) {
	if len(p) != 12 {
		return AllocBufferReq{}, sizeErr(CmdAllocBuffer, len(p), 12)
	}
	return AllocBufferReq{Device: le.Uint32(p), Size: le.Uint64(p[4:])}, nil
}

// AllocBufferResp is the ALLOC_BUFFER response (16 bytes). Handle 0 and Size
// 0 mean the allocation failed (the connection stays usable).
type AllocBufferResp struct {
	Handle uint64
	Size   uint64
}

func (r AllocBufferResp) AppendTo(b []byte) []byte {
	b = le.AppendUint64(b, r.Handle)
	return le.AppendUint64(b, r.Size)
}
func (r AllocBufferResp) Encode() []byte { return encode(r, 16) }

// DecodeAllocBufferResp decodes an ALLOC_BUFFER response payload.
func DecodeAllocBufferResp(p []byte) (AllocBufferResp, error) {
	if len(p) != 16 {
		return AllocBufferResp{}, sizeErr(CmdAllocBuffer, len(p), 16)
	}
	return AllocBufferResp{Handle: le.Uint64(p), Size: le.Uint64(p[8:])}, nil
}

// ---- device-only requests ----

// DeviceReq is the 4-byte request of GET_ALIGNMENT, GET_MAX_SIZE,
// GET_DEVICE_MEMORY and GRAPH_RECOMPUTE.
type DeviceReq struct {
	Device uint32
}

func (r DeviceReq) AppendTo(b []byte) []byte { return le.AppendUint32(b, r.Device) }
func (r DeviceReq) Encode() []byte           { return encode(r, 4) }

// DecodeDeviceReq decodes a 4-byte device payload. Its errors carry CmdNone;
// DecodeRequest sets the actual command.
func DecodeDeviceReq(p []byte) (DeviceReq, error) {
	if len(p) != 4 {
		return DeviceReq{}, sizeErr(CmdNone, len(p), 4)
	}
	return DeviceReq{Device: le.Uint32(p)}, nil
}

// ---- buffer-handle requests ----

// BufferReq is the 8-byte request of BUFFER_GET_BASE and FREE_BUFFER.
type BufferReq struct {
	Handle uint64
}

func (r BufferReq) AppendTo(b []byte) []byte { return le.AppendUint64(b, r.Handle) }
func (r BufferReq) Encode() []byte           { return encode(r, 8) }

// DecodeBufferReq decodes an 8-byte buffer handle payload. Its errors carry
// CmdNone; DecodeRequest sets the actual command.
func DecodeBufferReq(p []byte) (BufferReq, error) {
	if len(p) != 8 {
		return BufferReq{}, sizeErr(CmdNone, len(p), 8)
	}
	return BufferReq{Handle: le.Uint64(p)}, nil
}

// BufferClearReq is the BUFFER_CLEAR request (9 bytes).
type BufferClearReq struct {
	Handle uint64
	Value  uint8
}

func (r BufferClearReq) AppendTo(b []byte) []byte {
	return append(le.AppendUint64(b, r.Handle), r.Value)
}
func (r BufferClearReq) Encode() []byte { return encode(r, 9) }

// DecodeBufferClear decodes a BUFFER_CLEAR request payload.
func DecodeBufferClear(p []byte) (BufferClearReq, error) {
	if len(p) != 9 {
		return BufferClearReq{}, sizeErr(CmdBufferClear, len(p), 9)
	}
	return BufferClearReq{Handle: le.Uint64(p), Value: p[8]}, nil
}

// ---- tensor requests ----

// SetTensorHeader is the fixed first SetTensorHeaderSize (304) bytes of a
// SET_TENSOR payload; the data (request_size - 304 bytes) follows it.
type SetTensorHeader struct {
	Tensor
	Offset uint64
}

func (r SetTensorHeader) AppendTo(b []byte) []byte {
	b = r.Tensor.AppendTo(b)
	return le.AppendUint64(b, r.Offset)
}
func (r SetTensorHeader) Encode() []byte { return encode(r, SetTensorHeaderSize) }

// DecodeSetTensorHeader decodes the first 304 bytes of a SET_TENSOR
// payload. p may be just the header or the whole payload (len(p) >= 304);
// anything after the header is the data and is ignored here. A server can
// thus read the header first and stream the data.
func DecodeSetTensorHeader(p []byte) (SetTensorHeader, error) {
	if len(p) < SetTensorHeaderSize {
		return SetTensorHeader{}, protoErr(CmdSetTensor, KindSize,
			"payload is %d bytes, want at least %d", len(p), SetTensorHeaderSize)
	}
	var h SetTensorHeader
	getTensor(&h.Tensor, p)
	h.Offset = le.Uint64(p[TensorSize:])
	return h, nil
}

// SetTensorReq is a whole SET_TENSOR payload. Data aliases the decoded
// payload.
type SetTensorReq struct {
	SetTensorHeader
	Data []byte
}

func (r SetTensorReq) AppendTo(b []byte) []byte {
	return append(r.SetTensorHeader.AppendTo(b), r.Data...)
}
func (r SetTensorReq) Encode() []byte { return encode(r, SetTensorHeaderSize+len(r.Data)) }

// DecodeSetTensor decodes a whole SET_TENSOR payload; Data aliases p.
func DecodeSetTensor(p []byte) (SetTensorReq, error) {
	h, err := DecodeSetTensorHeader(p)
	if err != nil {
		return SetTensorReq{}, err
	}
	return SetTensorReq{SetTensorHeader: h, Data: p[SetTensorHeaderSize:]}, nil
}

// SetTensorHashReq is the SET_TENSOR_HASH request (312 bytes).
type SetTensorHashReq struct {
	Tensor
	Offset uint64
	Hash   uint64
}

func (r SetTensorHashReq) AppendTo(b []byte) []byte {
	b = r.Tensor.AppendTo(b)
	b = le.AppendUint64(b, r.Offset)
	return le.AppendUint64(b, r.Hash)
}
func (r SetTensorHashReq) Encode() []byte { return encode(r, TensorSize+16) }

// DecodeSetTensorHash decodes a SET_TENSOR_HASH request payload.
func DecodeSetTensorHash(p []byte) (SetTensorHashReq, error) {
	if len(p) != TensorSize+16 {
		return SetTensorHashReq{}, sizeErr(CmdSetTensorHash, len(p), TensorSize+16)
	}
	var r SetTensorHashReq
	getTensor(&r.Tensor, p)
	r.Offset = le.Uint64(p[TensorSize:])
	r.Hash = le.Uint64(p[TensorSize+8:])
	return r, nil
}

// GetTensorReq is the GET_TENSOR request (312 bytes).
type GetTensorReq struct {
	Tensor
	Offset uint64
	Size   uint64
}

func (r GetTensorReq) AppendTo(b []byte) []byte {
	b = r.Tensor.AppendTo(b)
	b = le.AppendUint64(b, r.Offset)
	return le.AppendUint64(b, r.Size)
}
func (r GetTensorReq) Encode() []byte { return encode(r, TensorSize+16) }

// DecodeGetTensor decodes a GET_TENSOR request payload.
func DecodeGetTensor(p []byte) (GetTensorReq, error) {
	if len(p) != TensorSize+16 {
		return GetTensorReq{}, sizeErr(CmdGetTensor, len(p), TensorSize+16)
	}
	var r GetTensorReq
	getTensor(&r.Tensor, p)
	r.Offset = le.Uint64(p[TensorSize:])
	r.Size = le.Uint64(p[TensorSize+8:])
	return r, nil
}

// CopyTensorReq is the COPY_TENSOR request (592 bytes).
type CopyTensorReq struct {
	Src Tensor
	Dst Tensor
}

func (r CopyTensorReq) AppendTo(b []byte) []byte {
	b = r.Src.AppendTo(b)
	return r.Dst.AppendTo(b)
}
func (r CopyTensorReq) Encode() []byte { return encode(r, 2*TensorSize) }

// DecodeCopyTensor decodes a COPY_TENSOR request payload.
func DecodeCopyTensor(p []byte) (CopyTensorReq, error) {
	if len(p) != 2*TensorSize {
		return CopyTensorReq{}, sizeErr(CmdCopyTensor, len(p), 2*TensorSize)
	}
	var r CopyTensorReq
	getTensor(&r.Src, p)
	getTensor(&r.Dst, p[TensorSize:])
	return r, nil
}

// InitTensorReq is the INIT_TENSOR request (296 bytes).
type InitTensorReq struct {
	Tensor
}

func (r InitTensorReq) AppendTo(b []byte) []byte { return r.Tensor.AppendTo(b) }
func (r InitTensorReq) Encode() []byte           { return encode(r, TensorSize) }

// DecodeInitTensor decodes an INIT_TENSOR request payload.
func DecodeInitTensor(p []byte) (InitTensorReq, error) {
	if len(p) != TensorSize {
		return InitTensorReq{}, sizeErr(CmdInitTensor, len(p), TensorSize)
	}
	var r InitTensorReq
	getTensor(&r.Tensor, p)
	return r, nil
}

// GetAllocSizeReq is the GET_ALLOC_SIZE request (3260 bytes): device u32,
// the tensor, then MaxSrc source tensors (all-zero = absent).
type GetAllocSizeReq struct {
	Device uint32
	Tensor Tensor
	Srcs   [MaxSrc]Tensor
}

func (r GetAllocSizeReq) AppendTo(b []byte) []byte {
	b = le.AppendUint32(b, r.Device)
	b = r.Tensor.AppendTo(b)
	for i := range r.Srcs {
		b = r.Srcs[i].AppendTo(b)
	}
	return b
}
func (r GetAllocSizeReq) Encode() []byte { return encode(r, GetAllocSizeReqSize) }

// DecodeGetAllocSize decodes a GET_ALLOC_SIZE request payload.
func DecodeGetAllocSize(p []byte) (GetAllocSizeReq, error) {
	if len(p) != GetAllocSizeReqSize {
		return GetAllocSizeReq{}, sizeErr(CmdGetAllocSize, len(p), GetAllocSizeReqSize)
	}
	var r GetAllocSizeReq
	r.Device = le.Uint32(p)
	getTensor(&r.Tensor, p[4:])
	for i := range r.Srcs {
		getTensor(&r.Srcs[i], p[4+TensorSize*(1+i):])
	}
	return r, nil
}

// ---- empty requests ----

// HelloReq is the (empty) HELLO request payload.
type HelloReq struct{}

func (HelloReq) AppendTo(b []byte) []byte { return b }

// DeviceCountReq is the (empty) DEVICE_COUNT request payload.
type DeviceCountReq struct{}

func (DeviceCountReq) AppendTo(b []byte) []byte { return b }

// ---- small responses ----

// HelloResp is the HELLO response (3 bytes: major, minor, patch).
type HelloResp struct {
	Major, Minor, Patch uint8
}

func (r HelloResp) AppendTo(b []byte) []byte { return append(b, r.Major, r.Minor, r.Patch) }
func (r HelloResp) Encode() []byte           { return encode(r, 3) }

// DecodeHelloResp decodes a HELLO response payload.
func DecodeHelloResp(p []byte) (HelloResp, error) {
	if len(p) != 3 {
		return HelloResp{}, protoErr(CmdHello, KindHello, "response is %d bytes, want 3", len(p))
	}
	return HelloResp{p[0], p[1], p[2]}, nil
}

// DeviceCountResp is the DEVICE_COUNT response (u32).
type DeviceCountResp struct {
	Count uint32
}

func (r DeviceCountResp) AppendTo(b []byte) []byte { return le.AppendUint32(b, r.Count) }
func (r DeviceCountResp) Encode() []byte           { return encode(r, 4) }

// DecodeDeviceCountResp decodes a DEVICE_COUNT response payload.
func DecodeDeviceCountResp(p []byte) (DeviceCountResp, error) {
	if len(p) != 4 {
		return DeviceCountResp{}, sizeErr(CmdDeviceCount, len(p), 4)
	}
	return DeviceCountResp{le.Uint32(p)}, nil
}

// U64Resp is the u64 response of GET_ALIGNMENT, GET_MAX_SIZE,
// BUFFER_GET_BASE and GET_ALLOC_SIZE.
type U64Resp struct {
	Value uint64
}

func (r U64Resp) AppendTo(b []byte) []byte { return le.AppendUint64(b, r.Value) }
func (r U64Resp) Encode() []byte           { return encode(r, 8) }

// DecodeU64Resp decodes an 8-byte response payload (errors carry CmdNone).
func DecodeU64Resp(p []byte) (U64Resp, error) {
	if len(p) != 8 {
		return U64Resp{}, sizeErr(CmdNone, len(p), 8)
	}
	return U64Resp{le.Uint64(p)}, nil
}

// ResultResp is the 1-byte response of SET_TENSOR_HASH and COPY_TENSOR:
// non-zero means done (the reference client converts the byte to bool).
type ResultResp struct {
	Result uint8
}

// OK reports whether the server did the work (Result != 0).
func (r ResultResp) OK() bool                 { return r.Result != 0 }
func (r ResultResp) AppendTo(b []byte) []byte { return append(b, r.Result) }
func (r ResultResp) Encode() []byte           { return []byte{r.Result} }

// DecodeResultResp decodes a 1-byte response payload (errors carry CmdNone).
func DecodeResultResp(p []byte) (ResultResp, error) {
	if len(p) != 1 {
		return ResultResp{}, sizeErr(CmdNone, len(p), 1)
	}
	return ResultResp{p[0]}, nil
}

// DeviceMemoryResp is the GET_DEVICE_MEMORY response (16 bytes).
type DeviceMemoryResp struct {
	Free  uint64
	Total uint64
}

func (r DeviceMemoryResp) AppendTo(b []byte) []byte {
	b = le.AppendUint64(b, r.Free)
	return le.AppendUint64(b, r.Total)
}
func (r DeviceMemoryResp) Encode() []byte { return encode(r, 16) }

// DecodeDeviceMemoryResp decodes a GET_DEVICE_MEMORY response payload.
func DecodeDeviceMemoryResp(p []byte) (DeviceMemoryResp, error) {
	if len(p) != 16 {
		return DeviceMemoryResp{}, sizeErr(CmdGetDeviceMemory, len(p), 16)
	}
	return DeviceMemoryResp{Free: le.Uint64(p), Total: le.Uint64(p[8:])}, nil
}

// ---- dispatch ----

// DecodeRequest decodes the payload of any 3.6.0 request and returns one of:
// AllocBufferReq, DeviceReq (GET_ALIGNMENT, GET_MAX_SIZE, GET_DEVICE_MEMORY,
// GRAPH_RECOMPUTE), BufferReq (BUFFER_GET_BASE, FREE_BUFFER),
// BufferClearReq, SetTensorReq (Data aliases payload), SetTensorHashReq,
// GetTensorReq, CopyTensorReq, GraphComputeReq, InitTensorReq,
// GetAllocSizeReq, HelloReq, DeviceCountReq.
//
// Errors are *ProtocolError with Cmd set to cmd: kind "command" for an
// unknown command, "size" for a wrong payload size, "hello" for a HELLO with
// a payload, "graph" for graph counts above limits.
func DecodeRequest(cmd Cmd, payload []byte, limits GraphLimits) (Message, error) {
	m, err := decodeRequest(cmd, payload, limits)
	if err != nil {
		if pe, ok := err.(*ProtocolError); ok {
			pe.Cmd = cmd
		}
		return nil, err
	}
	return m, nil
}

func decodeRequest(cmd Cmd, p []byte, limits GraphLimits) (Message, error) {
	switch cmd {
	case CmdAllocBuffer:
		return DecodeAllocBuffer(p)
	case CmdGetAlignment, CmdGetMaxSize, CmdGetDeviceMemory, CmdGraphRecompute:
		return DecodeDeviceReq(p)
	case CmdBufferGetBase, CmdFreeBuffer:
		return DecodeBufferReq(p)
	case CmdBufferClear:
		return DecodeBufferClear(p)
	case CmdSetTensor:
		return DecodeSetTensor(p)
	case CmdSetTensorHash:
		return DecodeSetTensorHash(p)
	case CmdGetTensor:
		return DecodeGetTensor(p)
	case CmdCopyTensor:
		return DecodeCopyTensor(p)
	case CmdGraphCompute:
		return DecodeGraphCompute(p, limits)
	case CmdInitTensor:
		return DecodeInitTensor(p)
	case CmdGetAllocSize:
		return DecodeGetAllocSize(p)
	case CmdHello:
		if len(p) != 0 {
			return nil, protoErr(cmd, KindHello, "HELLO carries %d payload bytes, want 0 (a 4.x or newer client?)", len(p))
		}
		return HelloReq{}, nil
	case CmdDeviceCount:
		if len(p) != 0 {
			return nil, sizeErr(cmd, len(p), 0)
		}
		return DeviceCountReq{}, nil
	}
	return nil, protoErr(cmd, KindCommand, "unknown command %d", uint8(cmd))
}
