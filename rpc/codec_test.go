package rpc

import (
	"bytes"
	"errors"
	"io"
	"math"
	"reflect"
	"runtime"
	"testing"
	"time"
)

func sampleTensor(seed byte) Tensor {
	t := Tensor{
		ID:       0x1122334455667700 | uint64(seed),
		Type:     TypeQ8_0,
		Buffer:   0xdeadbeef00000000 | uint64(seed),
		NE:       [4]uint32{64, 3, 2, 1},
		NB:       [4]uint32{34, 68, 204, 408},
		Op:       29,
		Flags:    FlagOutput | FlagCompute,
		ViewSrc:  7,
		ViewOffs: 1 << 40,
		Data:     math.MaxUint64 - uint64(seed),
	}
	for i := range t.OpParams {
		t.OpParams[i] = byte(i) ^ seed
	}
	for i := range t.Src {
		t.Src[i] = uint64(i+1) << (4 * i)
	}
	t.SetName("blk.0.attn_q.weight")
	return t
}

// TestRequestRoundTrips encodes every request type, frames it, reads the
// frame back and decodes it with DecodeRequest.
func TestRequestRoundTrips(t *testing.T) {
	var srcs [MaxSrc]Tensor
	for i := range srcs[:3] {
		srcs[i] = sampleTensor(byte(10 + i))
	}
	tests := []struct {
		cmd Cmd
		msg Message
	}{
		{CmdAllocBuffer, AllocBufferReq{Device: 3, Size: 1 << 62}},
		{CmdGetAlignment, DeviceReq{1}},
		{CmdGetMaxSize, DeviceReq{2}},
		{CmdBufferGetBase, BufferReq{0xfeedface}},
		{CmdFreeBuffer, BufferReq{math.MaxUint64}},
		{CmdBufferClear, BufferClearReq{Handle: 42, Value: 0xab}},
		{CmdSetTensor, SetTensorReq{SetTensorHeader{sampleTensor(1), 8}, []byte("hello tensor")}},
		{CmdSetTensor, SetTensorReq{SetTensorHeader: SetTensorHeader{sampleTensor(1), 0}}},
		{CmdSetTensorHash, SetTensorHashReq{sampleTensor(2), 16, 0x86fa320a4d504445}},
		{CmdGetTensor, GetTensorReq{sampleTensor(3), 4, 1 << 33}},
		{CmdCopyTensor, CopyTensorReq{Src: sampleTensor(4), Dst: sampleTensor(5)}},
		{CmdGraphCompute, specGraph(0x7f0000000000)},
		{CmdGraphCompute, GraphComputeReq{Device: 9}},
		{CmdGetDeviceMemory, DeviceReq{0}},
		{CmdInitTensor, InitTensorReq{sampleTensor(6)}},
		{CmdGetAllocSize, GetAllocSizeReq{Device: 1, Tensor: sampleTensor(7), Srcs: srcs}},
		{CmdHello, HelloReq{}},
		{CmdDeviceCount, DeviceCountReq{}},
		{CmdGraphRecompute, DeviceReq{5}},
	}
	seen := map[Cmd]bool{}
	for _, tc := range tests {
		t.Run(tc.cmd.String(), func(t *testing.T) {
			seen[tc.cmd] = true
			payload := tc.msg.AppendTo(nil)
			if n, exact, ok := tc.cmd.RequestSize(); !ok || (exact && uint64(len(payload)) != n) || uint64(len(payload)) < n {
				t.Errorf("payload %d bytes vs RequestSize %d exact=%v ok=%v", len(payload), n, exact, ok)
			}
			frame := reqFrame(t, tc.cmd, payload)
			r := bytes.NewReader(frame)
			cmd, size, err := ReadRequestHeader(r)
			if err != nil || cmd != tc.cmd || size != uint64(len(payload)) {
				t.Fatalf("header: %v %d %v", cmd, size, err)
			}
			p, _ := io.ReadAll(r)
			got, err := DecodeRequest(cmd, p, DefaultGraphLimits)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(normalize(got), normalize(tc.msg)) {
				t.Errorf("round trip:\n got %+v\nwant %+v", got, tc.msg)
			}
			if again := got.AppendTo(nil); !bytes.Equal(again, payload) {
				t.Errorf("re-encoding differs")
			}
		})
	}
	for c := Cmd(0); c < CmdCount; c++ {
		if !seen[c] {
			t.Errorf("no round trip for %v", c)
		}
	}
}

// normalize maps empty slices to nil so DeepEqual compares content.
func normalize(m Message) Message {
	switch v := m.(type) {
	case SetTensorReq:
		if len(v.Data) == 0 {
			v.Data = nil
		}
		return v
	case GraphComputeReq:
		if len(v.Nodes) == 0 {
			v.Nodes = nil
		}
		if len(v.Tensors) == 0 {
			v.Tensors = nil
		}
		return v
	}
	return m
}

func TestResponseRoundTrips(t *testing.T) {
	if r, err := DecodeAllocBufferResp(AllocBufferResp{1, 2}.Encode()); err != nil || r != (AllocBufferResp{1, 2}) {
		t.Error("AllocBufferResp", r, err)
	}
	if r, err := DecodeDeviceMemoryResp(DeviceMemoryResp{3, 4}.Encode()); err != nil || r != (DeviceMemoryResp{3, 4}) {
		t.Error("DeviceMemoryResp", r, err)
	}
	if r, err := DecodeDeviceCountResp(DeviceCountResp{7}.Encode()); err != nil || r.Count != 7 {
		t.Error("DeviceCountResp", r, err)
	}
	if r, err := DecodeU64Resp(U64Resp{math.MaxUint64}.Encode()); err != nil || r.Value != math.MaxUint64 {
		t.Error("U64Resp", r, err)
	}
	if r, err := DecodeResultResp(ResultResp{1}.Encode()); err != nil || !r.OK() {
		t.Error("ResultResp", r, err)
	}
	if r, err := DecodeHelloResp(HelloResp{3, 6, 0}.Encode()); err != nil || r != (HelloResp{3, 6, 0}) {
		t.Error("HelloResp", r, err)
	}
	for _, f := range []func([]byte) error{
		func(p []byte) error { _, err := DecodeAllocBufferResp(p); return err },
		func(p []byte) error { _, err := DecodeDeviceMemoryResp(p); return err },
		func(p []byte) error { _, err := DecodeDeviceCountResp(p); return err },
		func(p []byte) error { _, err := DecodeU64Resp(p); return err },
		func(p []byte) error { _, err := DecodeResultResp(p); return err },
		func(p []byte) error { _, err := DecodeHelloResp(p); return err },
	} {
		if err := f(make([]byte, 17)); err == nil {
			t.Error("17-byte response accepted")
		}
	}
}

// TestDecodeRefusesWrongSizes feeds every fixed-size command a payload one
// byte short and one byte long.
func TestDecodeRefusesWrongSizes(t *testing.T) {
	for c := Cmd(0); c < CmdCount; c++ {
		n, exact, _ := c.RequestSize()
		var sizes []uint64
		if n > 0 {
			sizes = append(sizes, n-1, 0)
		}
		if exact {
			sizes = append(sizes, n+1)
		}
		for _, sz := range sizes {
			_, err := DecodeRequest(c, make([]byte, sz), GraphLimits{})
			pe, ok := IsProtocolError(err)
			if !ok {
				t.Errorf("%v with %d bytes: err %v, want *ProtocolError", c, sz, err)
				continue
			}
			wantKind := KindSize
			if c == CmdHello {
				wantKind = KindHello
			}
			if pe.Kind != wantKind || pe.Cmd != c {
				t.Errorf("%v with %d bytes: kind %q cmd %v", c, sz, pe.Kind, pe.Cmd)
			}
		}
	}
	// SET_TENSOR accepts any length >= 304.
	for _, sz := range []int{304, 305, 4096} {
		r, err := DecodeRequest(CmdSetTensor, make([]byte, sz), GraphLimits{})
		if err != nil || len(r.(SetTensorReq).Data) != sz-304 {
			t.Errorf("SET_TENSOR %d bytes: %v", sz, err)
		}
	}
	if _, err := DecodeSetTensorHeader(make([]byte, 303)); err == nil {
		t.Error("303-byte SET_TENSOR header accepted")
	}
	if h, err := DecodeSetTensorHeader(SetTensorReq{SetTensorHeader{sampleTensor(1), 99}, []byte{1, 2}}.Encode()); err != nil || h.Offset != 99 || h.Tensor != sampleTensor(1) {
		t.Errorf("header from whole payload: %+v %v", h, err)
	}
	// Unknown commands.
	for _, c := range []Cmd{CmdCount, 100, 255} {
		_, err := DecodeRequest(c, nil, GraphLimits{})
		if pe, ok := IsProtocolError(err); !ok || pe.Kind != KindCommand || pe.Cmd != c {
			t.Errorf("cmd %d: %v", c, err)
		}
	}
	if _, err := DecodeTensor(make([]byte, 295)); err == nil {
		t.Error("295-byte tensor accepted")
	}
	if _, err := DecodeTensor(make([]byte, 297)); err == nil {
		t.Error("297-byte tensor accepted")
	}
}

func graphPayload(dev, nNodes uint32, nodes []uint64, nTensors uint32, tensors []Tensor, extra int) []byte {
	b := le.AppendUint32(nil, dev)
	b = le.AppendUint32(b, nNodes)
	for _, n := range nodes {
		b = le.AppendUint64(b, n)
	}
	b = le.AppendUint32(b, nTensors)
	for i := range tensors {
		b = tensors[i].AppendTo(b)
	}
	return append(b, make([]byte, extra)...)
}

func TestDecodeGraphComputeRefusals(t *testing.T) {
	g := specGraph(0x7f0000000000)
	tests := []struct {
		name    string
		payload []byte
		limits  GraphLimits
		kind    string // "" = accepted
	}{
		{"spec graph", g.Encode(), DefaultGraphLimits, ""},
		{"trailing bytes accepted", append(g.Encode(), 1, 2, 3), DefaultGraphLimits, ""},
		{"empty graph", graphPayload(0, 0, nil, 0, nil, 0), DefaultGraphLimits, ""},
		{"7 bytes", make([]byte, 7), GraphLimits{}, KindSize},
		{"8 bytes, n_nodes 0, no n_tensors", make([]byte, 8), GraphLimits{}, KindSize},
		{"one tensor short", g.Encode()[:907], GraphLimits{}, KindSize},
		{"nodes cut", graphPayload(0, 2, []uint64{1}, 0, nil, 0)[:16], GraphLimits{}, KindSize},
		{"n_nodes 2^32-1 in 20 bytes", graphPayload(0, math.MaxUint32, []uint64{1}, 0, nil, 0), GraphLimits{}, KindSize},
		{"n_nodes 2^32-1 over limit", graphPayload(0, math.MaxUint32, []uint64{1}, 0, nil, 0), DefaultGraphLimits, KindGraph},
		{"n_tensors 2^32-1", graphPayload(0, 1, []uint64{1}, math.MaxUint32, nil, 0), GraphLimits{}, KindSize},
		{"n_tensors 2^32-1 over limit", graphPayload(0, 1, []uint64{1}, math.MaxUint32, nil, 0), DefaultGraphLimits, KindGraph},
		{"nodes at limit", graphPayload(0, 2, []uint64{1, 2}, 0, nil, 0), GraphLimits{MaxNodes: 2, MaxTensors: 1}, ""},
		{"nodes over limit", graphPayload(0, 3, []uint64{1, 2, 3}, 0, nil, 0), GraphLimits{MaxNodes: 2, MaxTensors: 1}, KindGraph},
		{"tensors over limit", g.Encode(), GraphLimits{MaxNodes: 2, MaxTensors: 2}, KindGraph},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecodeGraphCompute(tc.payload, tc.limits)
			if tc.kind == "" {
				if err != nil {
					t.Fatal(err)
				}
				if got.Size() > len(tc.payload) {
					t.Errorf("decoded size %d > payload %d", got.Size(), len(tc.payload))
				}
				return
			}
			pe, ok := IsProtocolError(err)
			if !ok || pe.Kind != tc.kind || pe.Cmd != CmdGraphCompute {
				t.Fatalf("err = %v, want kind %q", err, tc.kind)
			}
		})
	}
}

// TestDecodeGraphComputeNoBigAllocation checks that absurd counts in a tiny
// payload are refused quickly and without allocating for the counts.
func TestDecodeGraphComputeNoBigAllocation(t *testing.T) {
	payloads := [][]byte{
		graphPayload(0, math.MaxUint32, []uint64{1}, 0, nil, 0),             // 20 bytes
		graphPayload(0, 1, []uint64{1}, math.MaxUint32, nil, 0),             // n_tensors huge
		graphPayload(0, 1<<20, nil, 0, nil, 0),                              // 12 bytes
		graphPayload(0, 0, nil, math.MaxUint32, nil, 8*TensorSize),          // 8 tensors present of 4G
		append(graphPayload(0, 1<<28, nil, 0, nil, 0), make([]byte, 64)...), // nodes mostly missing
	}
	for _, limits := range []GraphLimits{{}, DefaultGraphLimits} {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		start := time.Now()
		const rounds = 100
		for i := 0; i < rounds; i++ {
			for _, p := range payloads {
				if _, err := DecodeGraphCompute(p, limits); err == nil {
					t.Fatalf("payload %x accepted", p)
				}
			}
		}
		elapsed := time.Since(start)
		runtime.ReadMemStats(&after)
		perCall := (after.TotalAlloc - before.TotalAlloc) / uint64(rounds*len(payloads))
		if perCall > 1024 {
			t.Errorf("limits %+v: %d bytes allocated per refused decode", limits, perCall)
		}
		if elapsed > time.Second {
			t.Errorf("limits %+v: refusals took %v", limits, elapsed)
		}
	}
	// An accepted decode allocates in proportion to the payload.
	g := GraphComputeReq{Nodes: make([]uint64, 1000), Tensors: make([]Tensor, 1000)}
	p := g.Encode()
	allocs := testing.AllocsPerRun(10, func() { DecodeGraphCompute(p, DefaultGraphLimits) })
	if allocs > 2 {
		t.Errorf("%v allocations per decode", allocs)
	}
}

func TestTypeInfo(t *testing.T) {
	want := map[uint32][2]int{
		TypeF32: {1, 4}, TypeF16: {1, 2}, TypeQ4_0: {32, 18}, TypeQ4_1: {32, 20},
		TypeQ5_0: {32, 22}, TypeQ5_1: {32, 24}, TypeQ8_0: {32, 34}, TypeQ8_1: {32, 36},
		TypeQ2_K: {256, 84}, TypeQ3_K: {256, 110}, TypeQ4_K: {256, 144}, TypeQ5_K: {256, 176},
		TypeQ6_K: {256, 210}, TypeQ8_K: {256, 292},
		TypeIQ2_XXS: {256, 66}, TypeIQ2_XS: {256, 74}, TypeIQ3_XXS: {256, 98}, TypeIQ1_S: {256, 50},
		TypeIQ4_NL: {32, 18}, TypeIQ3_S: {256, 110}, TypeIQ2_S: {256, 82}, TypeIQ4_XS: {256, 136},
		TypeI8: {1, 1}, TypeI16: {1, 2}, TypeI32: {1, 4}, TypeI64: {1, 8}, TypeF64: {1, 8},
		TypeIQ1_M: {256, 56}, TypeBF16: {1, 2}, TypeTQ1_0: {256, 54}, TypeTQ2_0: {256, 66},
		TypeMXFP4: {32, 17},
	}
	for typ := uint32(0); typ < 300; typ++ {
		blck, size, ok := TypeInfo(typ)
		w, known := want[typ]
		if ok != known || blck != w[0] || size != w[1] {
			t.Errorf("TypeInfo(%d) = %d, %d, %v; want %v (known %v)", typ, blck, size, ok, w, known)
		}
	}
	for _, removed := range []uint32{4, 5, 31, 32, 33, 36, 37, 38, 40, math.MaxUint32} {
		if _, _, ok := TypeInfo(removed); ok {
			t.Errorf("type %d accepted", removed)
		}
	}
	if len(want) != 32 {
		t.Errorf("%d types listed, want 32 (40 minus 8 removed)", len(want))
	}
	if TypeName(TypeQ4_K) != "q4_K" || TypeName(4) != "type(4)" {
		t.Errorf("TypeName: %q %q", TypeName(TypeQ4_K), TypeName(4))
	}
}

func TestNbytes(t *testing.T) {
	f32 := func(ne, nb [4]uint32) Tensor { return Tensor{Type: TypeF32, NE: ne, NB: nb} }
	tests := []struct {
		name string
		t    Tensor
		want uint64
		ok   bool
	}{
		{"f32 4x1x1x1", f32([4]uint32{4, 1, 1, 1}, [4]uint32{4, 16, 16, 16}), 16, true},
		{"f32 4x3x2x1", f32([4]uint32{4, 3, 2, 1}, [4]uint32{4, 16, 48, 96}), 96, true},
		{"f16 10x2", Tensor{Type: TypeF16, NE: [4]uint32{10, 2, 1, 1}, NB: [4]uint32{2, 20, 40, 40}}, 40, true},
		{"q8_0 64x2", Tensor{Type: TypeQ8_0, NE: [4]uint32{64, 2, 1, 1}, NB: [4]uint32{34, 68, 136, 136}}, 136, true},
		{"q4_K 512x3", Tensor{Type: TypeQ4_K, NE: [4]uint32{512, 3, 1, 1}, NB: [4]uint32{144, 288, 864, 864}}, 864, true},
		// ne[0] not a multiple of the block: ggml's integer division.
		{"q8_0 40 elements", Tensor{Type: TypeQ8_0, NE: [4]uint32{40, 1, 1, 1}, NB: [4]uint32{34, 42, 42, 42}}, 40 * 34 / 32, true},
		// Transposed view of a 4x3 f32 matrix: ne (3,4), nb (16,4).
		{"f32 transposed view", f32([4]uint32{3, 4, 1, 1}, [4]uint32{16, 4, 48, 48}), 4 + 2*16 + 3*4, true},
		// Row view: 2 rows of a 4-wide matrix with row stride 16.
		{"f32 row view", f32([4]uint32{4, 2, 1, 1}, [4]uint32{4, 16, 64, 64}), 32, true},
		// Strides of size-1 dimensions do not count.
		{"size-1 strides ignored", f32([4]uint32{4, 1, 1, 1}, [4]uint32{4, 1 << 31, 1 << 31, 1 << 31}), 16, true},
		{"zero ne0", f32([4]uint32{0, 1, 1, 1}, [4]uint32{4, 0, 0, 0}), 0, true},
		{"zero ne3", f32([4]uint32{4, 5, 6, 0}, [4]uint32{4, 16, 80, 480}), 0, true},
		{"zero dims, unknown type", Tensor{Type: 99}, 0, false},
		{"removed type 4", Tensor{Type: 4, NE: [4]uint32{32, 1, 1, 1}}, 0, false},
		{"type 40", Tensor{Type: 40, NE: [4]uint32{1, 1, 1, 1}}, 0, false},
		{"largest without overflow", f32([4]uint32{math.MaxUint32, 1, 1, 1}, [4]uint32{math.MaxUint32, 0, 0, 0}),
			4 + (math.MaxUint32-1)*math.MaxUint32, true},
		{"overflow", f32([4]uint32{math.MaxUint32, math.MaxUint32, math.MaxUint32, 1}, [4]uint32{math.MaxUint32, math.MaxUint32, math.MaxUint32, 0}), 0, false},
		{"block overflow", Tensor{Type: TypeQ8_0, NE: [4]uint32{math.MaxUint32, math.MaxUint32, math.MaxUint32, math.MaxUint32},
			NB: [4]uint32{math.MaxUint32, math.MaxUint32, math.MaxUint32, math.MaxUint32}}, 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := tc.t.Nbytes()
			if got != tc.want || ok != tc.ok {
				t.Errorf("Nbytes = %d, %v; want %d, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestTensorNameAndPadding(t *testing.T) {
	var tn Tensor
	long := string(bytes.Repeat([]byte("x"), 100))
	tn.SetName(long)
	if got := tn.NameString(); len(got) != 63 {
		t.Errorf("long name kept %d bytes, want 63", len(got))
	}
	// A wire name with no NUL in 64 bytes: the server forces termination.
	for i := range tn.Name {
		tn.Name[i] = 'y'
	}
	if got := tn.NameString(); len(got) != 63 {
		t.Errorf("unterminated name gives %d bytes", len(got))
	}
	b := tn.Encode()
	for i := 292; i < 296; i++ {
		if b[i] != 0 {
			t.Errorf("padding byte %d = %x", i, b[i])
		}
	}
	// Decoding ignores the padding (5.1.0's use_count).
	b[292] = 9
	if back, err := DecodeTensor(b); err != nil || back != tn {
		t.Errorf("padding not ignored: %v", err)
	}
	if !(&Tensor{}).IsZero() || tn.IsZero() {
		t.Error("IsZero")
	}
}

func TestCmd(t *testing.T) {
	names := map[Cmd]string{CmdAllocBuffer: "ALLOC_BUFFER", CmdGraphCompute: "GRAPH_COMPUTE", CmdHello: "HELLO",
		CmdGraphRecompute: "GRAPH_RECOMPUTE", CmdMemsetTensor: "MEMSET_TENSOR", 18: "CMD_18", CmdNone: "NONE"}
	for c, want := range names {
		if c.String() != want {
			t.Errorf("%d.String() = %q, want %q", uint8(c), c.String(), want)
		}
	}
	if CmdCount != 17 || CmdGraphRecompute != 16 || Cmd(17).Valid() || !CmdGraphRecompute.Valid() {
		t.Error("command range")
	}
	noResp := map[Cmd]bool{CmdSetTensor: true, CmdGraphCompute: true, CmdGraphRecompute: true}
	for c := Cmd(0); c < CmdCount; c++ {
		if c.HasResponse() == noResp[c] {
			t.Errorf("%v HasResponse = %v", c, c.HasResponse())
		}
		if _, fixed := c.ResponseSize(); fixed != (c.HasResponse() && c != CmdGetTensor) {
			t.Errorf("%v ResponseSize fixed = %v", c, fixed)
		}
	}
	if Cmd(200).HasResponse() {
		t.Error("unknown command has a response")
	}
}

func TestFraming(t *testing.T) {
	// Multi-part request: header + concatenated parts, small and large.
	for _, n := range []int{0, 10, smallFrame, smallFrame + 1, 1 << 20} {
		data := bytes.Repeat([]byte{0x5a}, n)
		hdr := SetTensorHeader{sampleTensor(1), 3}.Encode()
		var buf bytes.Buffer
		if err := WriteRequest(&buf, CmdSetTensor, hdr, nil, data); err != nil {
			t.Fatal(err)
		}
		cmd, size, err := ReadRequestHeader(&buf)
		if err != nil || cmd != CmdSetTensor || size != uint64(len(hdr)+n) || uint64(buf.Len()) != size {
			t.Fatalf("n=%d: %v %d %v (rest %d)", n, cmd, size, err, buf.Len())
		}
		req, err := DecodeSetTensor(buf.Bytes())
		if err != nil || req.Offset != 3 || !bytes.Equal(req.Data, data) {
			t.Fatalf("n=%d: decode %v", n, err)
		}

		buf.Reset()
		if err := WriteResponse(&buf, data[:n/2], data[n/2:]); err != nil {
			t.Fatal(err)
		}
		rs, err := ReadResponseHeader(&buf)
		if err != nil || rs != uint64(n) || buf.Len() != n {
			t.Fatalf("response n=%d: %d %v", n, rs, err)
		}
	}
	// Clean EOF vs torn header.
	if _, _, err := ReadRequestHeader(bytes.NewReader(nil)); err != io.EOF {
		t.Errorf("empty stream: %v", err)
	}
	if _, _, err := ReadRequestHeader(bytes.NewReader([]byte{14, 0, 0})); err != io.ErrUnexpectedEOF {
		t.Errorf("torn header: %v", err)
	}
	if _, err := ReadResponseHeader(bytes.NewReader([]byte{1})); err != io.ErrUnexpectedEOF {
		t.Errorf("torn response header: %v", err)
	}
	// Write errors propagate.
	if err := WriteRequest(errWriter{}, CmdHello); err == nil {
		t.Error("write error lost")
	}
	if err := WriteResponse(errWriter{}, make([]byte, 1<<16)); err == nil {
		t.Error("write error lost (large)")
	}
}

type errWriter struct{}

func (errWriter) Write([]byte) (int, error) { return 0, errors.New("boom") }

func TestProtocolErrorText(t *testing.T) {
	_, err := DecodeGetTensor(make([]byte, 5))
	pe, ok := IsProtocolError(err)
	if !ok || pe.Kind != KindSize || pe.Cmd != CmdGetTensor {
		t.Fatalf("%v", err)
	}
	if got := err.Error(); got != "rpc: GET_TENSOR: size: payload is 5 bytes, want 312" {
		t.Errorf("text %q", got)
	}
	cause := errors.New("eof")
	e := &ProtocolError{Cmd: CmdHello, Kind: KindHello, Msg: "closed", Err: cause}
	if !errors.Is(e, cause) {
		t.Error("Unwrap")
	}
}
