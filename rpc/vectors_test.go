package rpc

import (
	"bytes"
	"encoding/hex"
	"strings"
	"testing"
)

// hx parses a hex string with optional spaces, '|' separators and "00xN"
// runs (N zero bytes), as written in §12 of the spec.
func hx(t testing.TB, s string) []byte {
	t.Helper()
	var out []byte
	for _, f := range strings.Fields(strings.ReplaceAll(s, "|", " ")) {
		if i := strings.Index(f, "x"); i > 0 {
			var n int
			for _, c := range f[i+1:] {
				n = n*10 + int(c-'0')
			}
			b, err := hex.DecodeString(f[:i])
			if err != nil {
				t.Fatalf("bad hex %q: %v", f, err)
			}
			out = append(out, bytes.Repeat(b, n)...)
			continue
		}
		b, err := hex.DecodeString(f)
		if err != nil {
			t.Fatalf("bad hex %q: %v", f, err)
		}
		out = append(out, b...)
	}
	return out
}

func reqFrame(t testing.TB, cmd Cmd, payload ...[]byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := WriteRequest(&buf, cmd, payload...); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func respFrame(t testing.TB, payload ...[]byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := WriteResponse(&buf, payload...); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

const remotePtr = 0x0000555500001000

func TestSpecVectorsSmallCommands(t *testing.T) {
	handle := le.AppendUint64(nil, remotePtr)
	tests := []struct {
		name string
		got  []byte
		want string
	}{
		{"HELLO request", reqFrame(t, CmdHello), "0e 00 00 00 00 00 00 00 00"},
		{"HELLO response", respFrame(t, HelloResp{3, 6, 0}.Encode()), "03 00 00 00 00 00 00 00 03 06 00"},
		{"HELLO response 3.6.1", respFrame(t, HelloResp{3, 6, 1}.Encode()), "03 00 00 00 00 00 00 00 03 06 01"},
		{"DEVICE_COUNT request", reqFrame(t, CmdDeviceCount, DeviceCountReq{}.AppendTo(nil)), "0f 00x8"},
		{"DEVICE_COUNT response", respFrame(t, DeviceCountResp{1}.Encode()), "04 00 00 00 00 00 00 00 01 00 00 00"},
		{"GET_ALIGNMENT request", reqFrame(t, CmdGetAlignment, DeviceReq{0}.Encode()), "01 04 00 00 00 00 00 00 00 00 00 00 00"},
		{"GET_ALIGNMENT response", respFrame(t, U64Resp{32}.Encode()), "08 00x7 20 00 00 00 00 00 00 00"},
		{"GET_MAX_SIZE response payload", U64Resp{1<<64 - 1}.Encode(), "ff ff ff ff ff ff ff ff"},
		{"ALLOC_BUFFER request", reqFrame(t, CmdAllocBuffer, AllocBufferReq{Device: 0, Size: 1024}.Encode()),
			"00 0c 00 00 00 00 00 00 00 | 00 00 00 00 | 00 04 00 00 00 00 00 00"},
		{"ALLOC_BUFFER response", respFrame(t, AllocBufferResp{Handle: remotePtr, Size: 1024}.Encode()),
			"10 00x7 " + hex.EncodeToString(handle) + " 00 04 00 00 00 00 00 00"},
		{"FREE_BUFFER request", reqFrame(t, CmdFreeBuffer, BufferReq{remotePtr}.Encode()), "04 08 00x7 " + hex.EncodeToString(handle)},
		{"FREE_BUFFER response", respFrame(t), "00x8"},
		{"GRAPH_RECOMPUTE request", reqFrame(t, CmdGraphRecompute, DeviceReq{0}.Encode()), "10 04 00x7 00 00 00 00"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			want := hx(t, tc.want)
			if !bytes.Equal(tc.got, want) {
				t.Errorf("got  %x\nwant %x", tc.got, want)
			}
		})
	}
}

// TestSpecVectorsParse reads the §12 frames back with the framing functions
// and decoders (the worker's direction).
func TestSpecVectorsParse(t *testing.T) {
	frame := hx(t, "00 0c 00 00 00 00 00 00 00 | 00 00 00 00 | 00 04 00 00 00 00 00 00")
	r := bytes.NewReader(frame)
	cmd, n, err := ReadRequestHeader(r)
	if err != nil || cmd != CmdAllocBuffer || n != 12 {
		t.Fatalf("header = %v %d %v", cmd, n, err)
	}
	p := make([]byte, n)
	r.Read(p)
	req, err := DecodeAllocBuffer(p)
	if err != nil || req != (AllocBufferReq{Device: 0, Size: 1024}) {
		t.Fatalf("decode = %+v %v", req, err)
	}

	resp := bytes.NewReader(hx(t, "03 00 00 00 00 00 00 00 03 06 00"))
	rn, err := ReadResponseHeader(resp)
	if err != nil || rn != 3 {
		t.Fatalf("response header = %d %v", rn, err)
	}
	p = make([]byte, 3)
	resp.Read(p)
	h, err := DecodeHelloResp(p)
	if err != nil || h != (HelloResp{3, 6, 0}) {
		t.Fatalf("hello = %+v %v", h, err)
	}
}

func TestSpecSizes(t *testing.T) {
	var tensor Tensor
	sizes := []struct {
		name string
		got  int
		want int
	}{
		{"tensor", len(tensor.Encode()), 296},
		{"TensorSize", TensorSize, 296},
		{"SET_TENSOR 0 data", len(SetTensorReq{}.Encode()), 304},
		{"SET_TENSOR 5 data", len(SetTensorReq{Data: make([]byte, 5)}.Encode()), 309},
		{"GET_TENSOR", len(GetTensorReq{}.Encode()), 312},
		{"SET_TENSOR_HASH", len(SetTensorHashReq{}.Encode()), 312},
		{"COPY_TENSOR", len(CopyTensorReq{}.Encode()), 592},
		{"GET_ALLOC_SIZE", len(GetAllocSizeReq{}.Encode()), 3260},
		{"INIT_TENSOR", len(InitTensorReq{}.Encode()), 296},
		{"BUFFER_CLEAR", len(BufferClearReq{}.Encode()), 9},
		{"HashThreshold", HashThreshold, 10485760},
	}
	for _, s := range sizes {
		if s.got != s.want {
			t.Errorf("%s: %d, want %d", s.name, s.got, s.want)
		}
	}
}

// tensorC is tensor "c" of §12.
func tensorC() Tensor {
	t := Tensor{
		ID:     0x3000,
		Type:   TypeF32,
		Buffer: remotePtr,
		NE:     [4]uint32{4, 1, 1, 1},
		NB:     [4]uint32{4, 16, 16, 16},
		Op:     2, // ADD
		Data:   0x00007f0000000020,
	}
	t.Src[0] = 0x1000
	t.Src[1] = 0x2000
	t.SetName("c")
	return t
}

func TestSpecTensorC(t *testing.T) {
	want := make([]byte, TensorSize)
	put := func(off int, s string) { copy(want[off:], hx(t, s)) }
	put(0x00, "00 30 00 00 00 00 00 00")
	put(0x08, "00 00 00 00")
	put(0x0c, "00 10 00 00 55 55 00 00")
	put(0x14, "04 00 00 00 01 00 00 00 01 00 00 00 01 00 00 00")
	put(0x24, "04 00 00 00 10 00 00 00 10 00 00 00 10 00 00 00")
	put(0x34, "02 00 00 00")
	put(0x7c, "00 10 00 00 00 00 00 00")
	put(0x84, "00 20 00 00 00 00 00 00")
	put(0xdc, "20 00 00 00 00 7f 00 00")
	put(0xe4, "63")

	c := tensorC()
	got := make([]byte, TensorSize)
	for i := range got {
		got[i] = 0xee // Put must overwrite everything, padding included
	}
	c.Put(got)
	if !bytes.Equal(got, want) {
		for i := range got {
			if got[i] != want[i] {
				t.Errorf("offset %#x: got %02x want %02x", i, got[i], want[i])
			}
		}
	}
	back, err := DecodeTensor(want)
	if err != nil || back != c {
		t.Fatalf("decode: %+v %v", back, err)
	}
	if back.NameString() != "c" {
		t.Errorf("name %q", back.NameString())
	}
	if n, ok := back.Nbytes(); !ok || n != 16 {
		t.Errorf("nbytes = %d %v, want 16", n, ok)
	}
}

// specGraph returns the §12 graph c = a + b: tensors a, b, c in one buffer
// whose base is base.
func specGraph(base uint64) GraphComputeReq {
	mk := func(id, data uint64, name string) Tensor {
		t := Tensor{ID: id, Type: TypeF32, Buffer: remotePtr, NE: [4]uint32{4, 1, 1, 1}, NB: [4]uint32{4, 16, 16, 16}, Data: data}
		t.SetName(name)
		return t
	}
	c := tensorC()
	c.Data = base + 32
	return GraphComputeReq{
		Device:  0,
		Nodes:   []uint64{0x3000},
		Tensors: []Tensor{mk(0x1000, base, "a"), mk(0x2000, base+16, "b"), c},
	}
}

func TestSpecGraphCompute(t *testing.T) {
	g := specGraph(0x00007f0000000000)
	payload := g.Encode()
	if len(payload) != 908 {
		t.Fatalf("payload %d bytes, want 908", len(payload))
	}
	frame := reqFrame(t, CmdGraphCompute, payload)
	if len(frame) != 917 {
		t.Fatalf("frame %d bytes, want 917", len(frame))
	}
	start := hx(t, "0a 8c 03 00 00 00 00 00 00 | 00 00 00 00 | 01 00 00 00 | 00 30 00 00 00 00 00 00 | 03 00 00 00")
	if !bytes.Equal(frame[:len(start)], start) {
		t.Errorf("frame start %x, want %x", frame[:len(start)], start)
	}
	for i, off := range []int{29, 325, 621} {
		want := g.Tensors[i].Encode()
		if !bytes.Equal(frame[off:off+TensorSize], want) {
			t.Errorf("tensor %d not at frame offset %d", i, off)
		}
	}
	// c at 621 is exactly the §12 "c" serialization.
	if !bytes.Equal(frame[621:621+TensorSize], tensorC().Encode()) {
		t.Errorf("tensor c differs from the §12 layout")
	}
	back, err := DecodeGraphCompute(payload, DefaultGraphLimits)
	if err != nil {
		t.Fatal(err)
	}
	if back.Device != 0 || len(back.Nodes) != 1 || back.Nodes[0] != 0x3000 || len(back.Tensors) != 3 {
		t.Fatalf("decoded %+v", back)
	}
	for i := range back.Tensors {
		if back.Tensors[i] != g.Tensors[i] {
			t.Errorf("tensor %d differs", i)
		}
	}
}

func TestFNV1a(t *testing.T) {
	tests := []struct {
		in   string
		want uint64
	}{
		{"", 0xcbf29ce484222325},
		{"a", 0xaf63dc4c8601ec8c},
		{"foobar", 0x85944171f73967e8},
	}
	for _, tc := range tests {
		if got := FNV1a64([]byte(tc.in)); got != tc.want {
			t.Errorf("FNV1a64(%q) = %x, want %x", tc.in, got, tc.want)
		}
	}

	big := make([]byte, 10485764)
	for i := range big {
		big[i] = byte(7 * i)
	}
	const want uint64 = 0x86fa320a4d504445
	if got := FNV1a64(big); got != want {
		t.Errorf("10,485,764-byte vector: %x, want %x", got, want)
	}
	if got := CacheName(FNV1a64(big)); got != "86fa320a4d504445" {
		t.Errorf("CacheName = %q", got)
	}
	if got := CacheName(0xab); got != "00000000000000ab" {
		t.Errorf("CacheName pads: %q", got)
	}
	// Incremental, in uneven chunks.
	h := NewFNV1a()
	for rest, n := big, 1; len(rest) > 0; n = n*3 + 1 {
		k := min(n, len(rest))
		h.Write(rest[:k])
		rest = rest[k:]
	}
	if h.Sum64() != want {
		t.Errorf("incremental: %x, want %x", h.Sum64(), want)
	}
	if FNV1a64Update(FNV1a64Update(FNV1a64Offset, []byte("foo")), []byte("bar")) != 0x85944171f73967e8 {
		t.Error("FNV1a64Update chaining")
	}
	h.Reset()
	if h.Sum64() != FNV1a64Offset {
		t.Error("Reset")
	}
}
