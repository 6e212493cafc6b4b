package rpc

import (
	"bytes"
	"math/big"
	"reflect"
	"testing"
)

// Seed corpora live in testdata/fuzz/<FuzzName>/; the f.Add seeds below
// cover the same ground so the targets are meaningful without them.

// nbytesRef is an arbitrary-precision ggml_nbytes used to check Nbytes.
func nbytesRef(t Tensor) (*big.Int, bool) {
	blck, size, ok := TypeInfo(t.Type)
	if !ok {
		return nil, false
	}
	for _, ne := range t.NE {
		if ne == 0 {
			return new(big.Int), true
		}
	}
	n := new(big.Int)
	first := 0
	if blck == 1 {
		n.SetInt64(int64(size))
	} else {
		n.Mul(big.NewInt(int64(t.NE[0])), big.NewInt(int64(t.NB[0])))
		n.Div(n, big.NewInt(int64(blck)))
		first = 1
	}
	for i := first; i < MaxDims; i++ {
		term := new(big.Int).Mul(big.NewInt(int64(t.NE[i])-1), big.NewInt(int64(t.NB[i])))
		n.Add(n, term)
	}
	return n, true
}

func FuzzDecodeTensor(f *testing.F) {
	f.Add(tensorC().Encode())
	f.Add(sampleTensor(3).Encode())
	f.Add(make([]byte, TensorSize))
	f.Add(make([]byte, TensorSize-1))
	f.Fuzz(func(t *testing.T, b []byte) {
		tn, err := DecodeTensor(b)
		if len(b) != TensorSize {
			if err == nil {
				t.Fatalf("%d bytes accepted", len(b))
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		// decode -> encode reproduces the input, padding zeroed.
		want := append([]byte(nil), b...)
		copy(want[292:], []byte{0, 0, 0, 0})
		enc := tn.Encode()
		if !bytes.Equal(enc, want) {
			t.Fatalf("re-encoding differs:\n%x\n%x", enc, want)
		}
		if again, err := DecodeTensor(enc); err != nil || again != tn {
			t.Fatal("decode(encode(decode)) unstable")
		}
		// Nbytes agrees with an arbitrary-precision computation.
		n, ok := tn.Nbytes()
		ref, refOK := nbytesRef(tn)
		switch {
		case !refOK:
			if ok {
				t.Fatalf("type %d: Nbytes ok", tn.Type)
			}
		case ref.IsUint64():
			if !ok || n != ref.Uint64() {
				t.Fatalf("Nbytes = %d %v, want %v", n, ok, ref)
			}
		default:
			if ok {
				t.Fatalf("Nbytes = %d ok, but the exact value %v overflows", n, ref)
			}
		}
		if name := tn.NameString(); len(name) > MaxName-1 || bytes.IndexByte([]byte(name), 0) >= 0 {
			t.Fatalf("bad name %q", name)
		}
	})
}

func FuzzDecodeGraphCompute(f *testing.F) {
	spec := specGraph(0x7f0000000000).Encode()
	f.Add(spec)
	f.Add(append(append([]byte(nil), spec...), 0xff, 0xff))
	f.Add(graphPayload(0, 0xffffffff, []uint64{1}, 0, nil, 0))
	f.Add(graphPayload(1, 2, []uint64{1, 2}, 1, []Tensor{sampleTensor(1)}, 0))
	f.Add(graphPayload(0, 0, nil, 0, nil, 0))
	limits := GraphLimits{MaxNodes: 1000, MaxTensors: 100}
	f.Fuzz(func(t *testing.T, b []byte) {
		g, err := DecodeGraphCompute(b, GraphLimits{})
		gl, errl := DecodeGraphCompute(b, limits)
		if err != nil {
			if pe, ok := IsProtocolError(err); !ok || pe.Kind != KindSize || pe.Cmd != CmdGraphCompute {
				t.Fatalf("unexpected error %v", err)
			}
			if errl == nil {
				t.Fatal("accepted with limits but refused without")
			}
			return
		}
		size := g.Size()
		if size > len(b) {
			t.Fatalf("decoded %d bytes from %d", size, len(b))
		}
		enc := g.Encode()
		if !bytes.Equal(enc, zeroPadding(CmdGraphCompute, b[:size])) {
			t.Fatal("re-encoding differs from the payload prefix")
		}
		again, err := DecodeGraphCompute(enc, GraphLimits{})
		if err != nil || !reflect.DeepEqual(normalize(again), normalize(g)) {
			t.Fatal("decode(encode(decode)) unstable")
		}
		if errl == nil {
			if !reflect.DeepEqual(gl, g) {
				t.Fatal("limits changed the result")
			}
			if len(gl.Nodes) > int(limits.MaxNodes) || len(gl.Tensors) > int(limits.MaxTensors) {
				t.Fatal("limits not enforced")
			}
		} else if pe, ok := IsProtocolError(errl); !ok || pe.Kind != KindGraph {
			t.Fatalf("limit error %v", errl)
		}
	})
}

var knownKinds = map[string]bool{KindSize: true, KindDevice: true, KindType: true, KindBuffer: true,
	KindRange: true, KindGraph: true, KindHello: true, KindCommand: true}

func FuzzDecodeRequests(f *testing.F) {
	for _, s := range requestSeeds() {
		f.Add(byte(s.cmd), s.payload)
	}
	f.Fuzz(func(t *testing.T, cmd byte, payload []byte) {
		m, err := DecodeRequest(Cmd(cmd), payload, DefaultGraphLimits)
		if err != nil {
			pe, ok := IsProtocolError(err)
			if !ok || pe.Cmd != Cmd(cmd) || !knownKinds[pe.Kind] {
				t.Fatalf("error %#v", err)
			}
			if m != nil {
				t.Fatal("message with error")
			}
			if n, exact, ok := Cmd(cmd).RequestSize(); ok && exact && uint64(len(payload)) == n {
				t.Fatalf("%v: right size %d refused: %v", Cmd(cmd), n, err)
			}
			return
		}
		if !Cmd(cmd).Valid() {
			t.Fatalf("unknown command %d accepted", cmd)
		}
		enc := m.AppendTo(nil)
		want := zeroPadding(Cmd(cmd), payload)
		if Cmd(cmd) == CmdGraphCompute {
			if !bytes.HasPrefix(want, enc) {
				t.Fatal("graph re-encoding is not a prefix of the payload")
			}
		} else if !bytes.Equal(enc, want) {
			t.Fatalf("%v: re-encoding differs", Cmd(cmd))
		}
		again, err := DecodeRequest(Cmd(cmd), enc, DefaultGraphLimits)
		if err != nil || !reflect.DeepEqual(normalize(again), normalize(m)) {
			t.Fatalf("%v: decode(encode(decode)) unstable: %v", Cmd(cmd), err)
		}
	})
}

// zeroPadding returns a copy of a valid request payload with the 4 padding
// bytes of every serialized tensor zeroed (encoders always write zeros there
// and decoders ignore them).
func zeroPadding(cmd Cmd, p []byte) []byte {
	p = append([]byte(nil), p...)
	var offs []int
	switch cmd {
	case CmdSetTensor, CmdSetTensorHash, CmdGetTensor, CmdInitTensor:
		offs = []int{0}
	case CmdCopyTensor:
		offs = []int{0, TensorSize}
	case CmdGetAllocSize:
		for i := 0; i <= MaxSrc; i++ {
			offs = append(offs, 4+TensorSize*i)
		}
	case CmdGraphCompute:
		at := 12 + 8*int(le.Uint32(p[4:]))
		for i := 0; i < int(le.Uint32(p[at-4:])); i++ {
			offs = append(offs, at+TensorSize*i)
		}
	}
	for _, o := range offs {
		copy(p[o+292:o+TensorSize], []byte{0, 0, 0, 0})
	}
	return p
}

type requestSeed struct {
	cmd     Cmd
	payload []byte
}

func requestSeeds() []requestSeed {
	var srcs [MaxSrc]Tensor
	srcs[0] = sampleTensor(1)
	return []requestSeed{
		{CmdAllocBuffer, AllocBufferReq{0, 1024}.Encode()},
		{CmdGetAlignment, DeviceReq{0}.Encode()},
		{CmdGetMaxSize, DeviceReq{1}.Encode()},
		{CmdBufferGetBase, BufferReq{remotePtr}.Encode()},
		{CmdFreeBuffer, BufferReq{remotePtr}.Encode()},
		{CmdBufferClear, BufferClearReq{remotePtr, 0}.Encode()},
		{CmdSetTensor, SetTensorReq{SetTensorHeader{tensorC(), 0}, f32bytes(1, 2, 3, 4)}.Encode()},
		{CmdSetTensorHash, SetTensorHashReq{tensorC(), 0, 0x86fa320a4d504445}.Encode()},
		{CmdGetTensor, GetTensorReq{tensorC(), 0, 16}.Encode()},
		{CmdCopyTensor, CopyTensorReq{tensorC(), sampleTensor(2)}.Encode()},
		{CmdGraphCompute, specGraph(0x7f0000000000).Encode()},
		{CmdGetDeviceMemory, DeviceReq{0}.Encode()},
		{CmdInitTensor, InitTensorReq{sampleTensor(4)}.Encode()},
		{CmdGetAllocSize, GetAllocSizeReq{0, tensorC(), srcs}.Encode()},
		{CmdHello, nil},
		{CmdDeviceCount, nil},
		{CmdGraphRecompute, DeviceReq{0}.Encode()},
		{CmdHello, make([]byte, 24)},       // a 4.x HELLO
		{CmdGetAlignment, make([]byte, 8)}, // §12 failure probe
		{17, nil},                          // unknown command
		{CmdGraphCompute, graphPayload(0, 0xffffffff, []uint64{1}, 0, nil, 0)},
	}
}
