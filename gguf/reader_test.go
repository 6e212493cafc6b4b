package gguf_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/boxproj/box/gguf"
	"github.com/boxproj/box/synth"
	parser "github.com/gpustack/gguf-parser-go"
)

// ---- a raw GGUF builder, able to write malformed files ----

type bld struct{ b []byte }

func (b *bld) raw(p ...byte) *bld { b.b = append(b.b, p...); return b }
func (b *bld) u8(v uint8) *bld    { return b.raw(v) }
func (b *bld) u32(v uint32) *bld  { b.b = binary.LittleEndian.AppendUint32(b.b, v); return b }
func (b *bld) u64(v uint64) *bld  { b.b = binary.LittleEndian.AppendUint64(b.b, v); return b }
func (b *bld) str(s string) *bld  { b.u64(uint64(len(s))); b.b = append(b.b, s...); return b }

// kv writes a key, a value type and the value bytes written by val.
func (b *bld) kv(key string, typ gguf.ValueType, val func(*bld)) *bld {
	b.str(key).u32(uint32(typ))
	val(b)
	return b
}

type tspec struct {
	name string
	dims []uint64
	typ  uint32
	off  uint64
}

// spec is a small GGUF file; the zero fields of a spec made by baseSpec are
// filled with a valid default, and cases mutate it.
type spec struct {
	magic        string
	version      uint32
	nTensors     *uint64 // override the written count
	nKV          *uint64
	kvs          []func(*bld)
	align        uint64 // for the data padding (does not write a key)
	tensors      []tspec
	dataLen      int // bytes of tensor data written after the padding; -1: exact
	extraPadding int // bytes of extra zeros before the data (breaks the layout)
}

func kvString(k, v string) func(*bld) {
	return func(b *bld) { b.kv(k, gguf.ValueTypeString, func(b *bld) { b.str(v) }) }
}
func kvU32(k string, v uint32) func(*bld) {
	return func(b *bld) { b.kv(k, gguf.ValueTypeUint32, func(b *bld) { b.u32(v) }) }
}
func kvRaw(k string, typ uint32, val ...byte) func(*bld) {
	return func(b *bld) { b.str(k).u32(typ).raw(val...) }
}

// kvArr writes an array of n elements of type et, each written by el.
func kvArr(k string, et gguf.ValueType, n uint64, el func(b *bld, i uint64)) func(*bld) {
	return func(b *bld) {
		b.str(k).u32(uint32(gguf.ValueTypeArray)).u32(uint32(et)).u64(n)
		for i := range n {
			el(b, i)
		}
	}
}

func baseSpec() *spec {
	return &spec{
		magic:   "GGUF",
		version: 3,
		kvs: []func(*bld){
			kvString("general.architecture", "llama"),
			kvU32("general.alignment", 32),
			kvU32("llama.block_count", 2),
			kvArr("t.small", gguf.ValueTypeUint32, 3, func(b *bld, i uint64) { b.u32(uint32(10 + i)) }),
			// [[1 2] [3]] : array of two arrays of i16
			kvArr("t.nested", gguf.ValueTypeArray, 2, func(b *bld, i uint64) {
				b.u32(uint32(gguf.ValueTypeInt16)).u64(2 - i)
				for j := range 2 - i {
					b.u16(uint16(1 + 2*i + j))
				}
			}),
			kvArr("t.strs", gguf.ValueTypeString, 2, func(b *bld, i uint64) { b.str([]string{"a", "bc"}[i]) }),
		},
		align: 32,
		tensors: []tspec{
			{"a", []uint64{8}, 0, 0},         // f32: 32 bytes
			{"b", []uint64{32, 2}, 8, 32},    // q8_0: 68 bytes, padded to 96
			{"c", []uint64{256, 1}, 12, 128}, // q4_K: 144 bytes
		},
		dataLen: -1,
	}
}

func (b *bld) u16(v uint16) *bld { b.b = binary.LittleEndian.AppendUint16(b.b, v); return b }

var testTraits = map[uint32][2]uint64{0: {1, 4}, 1: {1, 2}, 8: {32, 34}, 12: {256, 144}, 2: {32, 18}, 30: {1, 2}, 28: {1, 8}}

func (s *spec) bytes() []byte {
	b := &bld{}
	b.raw([]byte(s.magic)...)
	b.u32(s.version)
	nt, nkv := uint64(len(s.tensors)), uint64(len(s.kvs))
	if s.nTensors != nil {
		nt = *s.nTensors
	}
	if s.nKV != nil {
		nkv = *s.nKV
	}
	b.u64(nt).u64(nkv)
	for _, kv := range s.kvs {
		kv(b)
	}
	end := uint64(0)
	for _, t := range s.tensors {
		b.str(t.name).u32(uint32(len(t.dims)))
		for _, d := range t.dims {
			b.u64(d)
		}
		b.u32(t.typ).u64(t.off)
		if tr, ok := testTraits[t.typ]; ok {
			n := uint64(1)
			for _, d := range t.dims {
				n *= d
			}
			if e := t.off + n/tr[0]*tr[1]; e > end && t.off < 1<<40 && n < 1<<40 {
				end = e
			}
		}
	}
	for len(b.b)%int(s.align) != 0 {
		b.u8(0)
	}
	for range s.extraPadding {
		b.u8(0)
	}
	n := int(end)
	if s.dataLen >= 0 {
		n = s.dataLen
	}
	for i := range n {
		b.u8(byte(i))
	}
	return b.b
}

func decodeBytes(p []byte) (*gguf.Info, error) {
	return gguf.Decode(bytes.NewReader(p), int64(len(p)))
}

func u64p(v uint64) *uint64 { return &v }

// ---- hand-built files ----

func TestDecodeValid(t *testing.T) {
	p := baseSpec().bytes()
	info, err := decodeBytes(p)
	if err != nil {
		t.Fatal(err)
	}
	if info.Version != 3 || info.Alignment != 32 || info.FileSize != int64(len(p)) || info.DataOffset%32 != 0 {
		t.Errorf("header: %+v", info)
	}
	wantKV := map[string]any{
		"general.architecture": "llama",
		"general.alignment":    uint32(32),
		"llama.block_count":    uint32(2),
		"t.small":              []uint32{10, 11, 12},
		"t.nested":             []any{[]int16{1, 2}, []int16{3}},
		"t.strs":               []string{"a", "bc"},
	}
	if !reflect.DeepEqual(info.KV, wantKV) {
		t.Errorf("KV = %#v\nwant %#v", info.KV, wantKV)
	}
	want := []gguf.TensorInfo{
		{Name: "a", Dims: []uint64{8}, Type: gguf.F32, Offset: 0, Bytes: 32},
		{Name: "b", Dims: []uint64{32, 2}, Type: gguf.Q8_0, Offset: 32, Bytes: 68},
		{Name: "c", Dims: []uint64{256, 1}, Type: 12, Offset: 128, Bytes: 144},
	}
	if !reflect.DeepEqual(info.Tensors, want) {
		t.Errorf("tensors = %+v\nwant %+v", info.Tensors, want)
	}
	if info.DataOffset+128+144 != info.FileSize {
		t.Errorf("data offset %d, file size %d", info.DataOffset, info.FileSize)
	}
}

// TestDecodeCases covers valid variants and every class of malformed input.
func TestDecodeCases(t *testing.T) {
	setT := func(i int, f func(*tspec)) func(*spec) { return func(s *spec) { f(&s.tensors[i]) } }
	addKV := func(kv ...func(*bld)) func(*spec) { return func(s *spec) { s.kvs = append(s.kvs, kv...) } }
	long := func(n int) string { return strings.Repeat("k", n) }
	u32Elems := func(b *bld, i uint64) { b.u32(uint32(i)) }

	cases := []struct {
		name  string
		mod   func(*spec)
		raw   []byte // used instead of the spec when non-nil
		err   string // "" for success
		check func(*testing.T, *gguf.Info)
	}{
		{name: "base", mod: func(*spec) {}},
		{name: "version 2", mod: func(s *spec) { s.version = 2 }, check: func(t *testing.T, i *gguf.Info) {
			if i.Version != 2 {
				t.Errorf("version %d", i.Version)
			}
		}},
		{name: "no tensors no kv", mod: func(s *spec) { s.kvs, s.tensors = nil, nil }},
		{name: "trailing bytes after data", mod: func(s *spec) { s.dataLen = 1000 }},
		{name: "alignment 64", mod: func(s *spec) {
			s.kvs[1] = kvU32("general.alignment", 64)
			s.align = 64
			s.tensors[1].off, s.tensors[2].off = 64, 192
		}, check: func(t *testing.T, i *gguf.Info) {
			if i.Alignment != 64 || i.DataOffset%64 != 0 {
				t.Errorf("alignment %d data offset %d", i.Alignment, i.DataOffset)
			}
		}},
		{name: "scalar tensor (0 dims)", mod: func(s *spec) {
			s.tensors = []tspec{{"s", nil, 0, 0}}
		}, check: func(t *testing.T, i *gguf.Info) {
			if ti := i.Tensors[0]; len(ti.Dims) != 0 || ti.Bytes != 4 {
				t.Errorf("%+v", ti)
			}
		}},
		{name: "all scalar value types", mod: addKV(
			kvRaw("v.u8", 0, 200), kvRaw("v.i8", 1, 0x9c), kvRaw("v.u16", 2, 0x60, 0xea), kvRaw("v.i16", 3, 0xd0, 0x8a),
			kvRaw("v.i32", 5, 0xff, 0xff, 0xff, 0xff), kvRaw("v.f32", 6, 0, 0, 0x80, 0x3f), kvRaw("v.bool", 7, 1),
			kvRaw("v.u64", 10, 1, 0, 0, 0, 0, 0, 0, 0x80), kvRaw("v.i64", 11, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff),
			kvRaw("v.f64", 12, 0, 0, 0, 0, 0, 0, 0xf0, 0xbf),
		), check: func(t *testing.T, i *gguf.Info) {
			want := map[string]any{"v.u8": uint8(200), "v.i8": int8(-100), "v.u16": uint16(60000), "v.i16": int16(-30000),
				"v.i32": int32(-1), "v.f32": float32(1), "v.bool": true, "v.u64": uint64(1<<63 + 1), "v.i64": int64(-2), "v.f64": float64(-1)}
			for k, v := range want {
				if !reflect.DeepEqual(i.KV[k], v) {
					t.Errorf("%s = %#v, want %#v", k, i.KV[k], v)
				}
			}
		}},
		{name: "long arrays kept as ArrayInfo", mod: addKV(
			kvArr("l.u32", gguf.ValueTypeUint32, 65, u32Elems),
			kvArr("l.str", gguf.ValueTypeString, 100, func(b *bld, i uint64) { b.str(strings.Repeat("x", int(i))) }),
			kvArr("l.arr", gguf.ValueTypeArray, 70, func(b *bld, i uint64) {
				b.u32(uint32(gguf.ValueTypeString)).u64(1).str("s")
			}),
			kvArr("l.arr2", gguf.ValueTypeArray, 2, func(b *bld, i uint64) { b.u32(uint32(gguf.ValueTypeUint8)).u64(100).raw(make([]byte, 100)...) }),
			kvArr("s.64", gguf.ValueTypeUint8, 64, func(b *bld, i uint64) { b.u8(uint8(i)) }),
		), check: func(t *testing.T, i *gguf.Info) {
			want := map[string]any{
				"l.u32":  gguf.ArrayInfo{Type: gguf.ValueTypeUint32, Len: 65},
				"l.str":  gguf.ArrayInfo{Type: gguf.ValueTypeString, Len: 100},
				"l.arr":  gguf.ArrayInfo{Type: gguf.ValueTypeArray, Len: 70},
				"l.arr2": []any{gguf.ArrayInfo{Type: gguf.ValueTypeUint8, Len: 100}, gguf.ArrayInfo{Type: gguf.ValueTypeUint8, Len: 100}},
			}
			for k, v := range want {
				if !reflect.DeepEqual(i.KV[k], v) {
					t.Errorf("%s = %#v, want %#v", k, i.KV[k], v)
				}
			}
			if a, ok := i.KV["s.64"].([]uint8); !ok || len(a) != 64 || a[63] != 63 {
				t.Errorf("s.64 = %#v", i.KV["s.64"])
			}
		}},
		{name: "small arrays of every type", mod: addKV(
			kvArr("a.u8", 0, 2, func(b *bld, i uint64) { b.u8(uint8(i + 1)) }),
			kvArr("a.i8", 1, 2, func(b *bld, i uint64) { b.u8(0xff) }),
			kvArr("a.u16", 2, 2, func(b *bld, i uint64) { b.u16(uint16(i + 1)) }),
			kvArr("a.i16", 3, 2, func(b *bld, i uint64) { b.u16(0xffff) }),
			kvArr("a.i32", 5, 2, func(b *bld, i uint64) { b.u32(math.MaxUint32) }),
			kvArr("a.f32", 6, 2, func(b *bld, i uint64) { b.u32(math.Float32bits(0.5)) }),
			kvArr("a.bool", 7, 2, func(b *bld, i uint64) { b.u8(uint8(i)) }),
			kvArr("a.u64", 10, 2, func(b *bld, i uint64) { b.u64(i + 1) }),
			kvArr("a.i64", 11, 2, func(b *bld, i uint64) { b.u64(math.MaxUint64) }),
			kvArr("a.f64", 12, 2, func(b *bld, i uint64) { b.u64(math.Float64bits(-0.25)) }),
			kvArr("a.empty.nested", 9, 1, func(b *bld, i uint64) { b.u32(8).u64(0) }),
		), check: func(t *testing.T, i *gguf.Info) {
			want := map[string]any{
				"a.u8": []uint8{1, 2}, "a.i8": []int8{-1, -1}, "a.u16": []uint16{1, 2}, "a.i16": []int16{-1, -1},
				"a.i32": []int32{-1, -1}, "a.f32": []float32{0.5, 0.5}, "a.bool": []bool{false, true},
				"a.u64": []uint64{1, 2}, "a.i64": []int64{-1, -1}, "a.f64": []float64{-0.25, -0.25},
				"a.empty.nested": []any{[]string{}},
			}
			for k, v := range want {
				if !reflect.DeepEqual(i.KV[k], v) {
					t.Errorf("%s = %#v, want %#v", k, i.KV[k], v)
				}
			}
		}},
		{name: "alignment i8 array", mod: func(s *spec) {
			s.kvs[1] = kvArr("general.alignment", gguf.ValueTypeInt8, 1, func(b *bld, _ uint64) { b.u8(32) })
		}, err: `must be a u32, not an array of i8`},
		{name: "alignment nested array", mod: func(s *spec) {
			s.kvs[1] = kvArr("general.alignment", gguf.ValueTypeArray, 0, nil)
		}, err: `must be a u32, not an array of array`},
		{name: "alignment long array", mod: func(s *spec) {
			s.kvs[1] = kvArr("general.alignment", gguf.ValueTypeUint32, 65, u32Elems)
		}, err: `must be a u32, not an array of u32`},
		{name: "empty array", mod: addKV(kvArr("e", gguf.ValueTypeFloat32, 0, nil)), check: func(t *testing.T, i *gguf.Info) {
			if a, ok := i.KV["e"].([]float32); !ok || len(a) != 0 {
				t.Errorf("e = %#v", i.KV["e"])
			}
		}},
		{name: "max key length", mod: addKV(kvU32(long(65535), 1))},

		// Header.
		{name: "empty file", raw: []byte{}, err: "not a GGUF file (0 bytes, too short for the magic)"},
		{name: "wrong magic", mod: func(s *spec) { s.magic = "GGUX" }, err: `not a GGUF file (magic "GGUX")`},
		{name: "binary magic", mod: func(s *spec) { s.magic = "\x00\xff\n\x01" }, err: `not a GGUF file (magic "\x00\xff\n\x01")`},
		{name: "version 1", mod: func(s *spec) { s.version = 1 }, err: "unsupported GGUF version 1 (obsolete"},
		{name: "version 0", mod: func(s *spec) { s.version = 0 }, err: "unsupported GGUF version 0"},
		{name: "version 9", mod: func(s *spec) { s.version = 9 }, err: "unsupported GGUF version 9"},
		{name: "big endian", mod: func(s *spec) { s.version = 3 << 24 }, err: "unsupported GGUF version 50331648 (a big-endian file?"},
		{name: "header cut", raw: []byte("GGUF\x03\x00\x00\x00\x01"), err: "truncated in header (need 8 bytes at offset 8, file is 9 bytes)"},
		{name: "absurd tensor count", mod: func(s *spec) { s.nTensors = u64p(1 << 60) }, err: "tensor count 1152921504606846976 is impossible for a"},
		{name: "absurd kv count", mod: func(s *spec) { s.nKV = u64p(1<<64 - 1) }, err: "key/value count 18446744073709551615 is impossible for a"},
		{name: "counts together impossible", mod: func(s *spec) {
			n := uint64(len(s.bytes())-24) / 24
			s.nTensors, s.nKV = u64p(n), u64p(n/2)
		}, err: "is impossible for a"},
		{name: "more tensors than written", mod: func(s *spec) { s.nTensors = u64p(4) }, err: "tensor info 4 of 4"},

		// Keys and values.
		{name: "duplicate key", mod: addKV(kvU32("llama.block_count", 3)), err: `duplicate key "llama.block_count"`},
		{name: "empty key", mod: addKV(kvU32("", 3)), err: "key/value 7 of 7: empty key"},
		{name: "key not utf-8", mod: addKV(kvU32("a\xffb", 3)), err: `key "a\xffb" is not valid UTF-8`},
		{name: "key too long", mod: addKV(kvU32(long(65536), 1)), err: "key is 65536 bytes long (max 65535)"},
		{name: "key length absurd", mod: addKV(func(b *bld) { b.u64(1 << 62) }), err: "key is 4611686018427387904 bytes long (max 65535)"},
		{name: "key cut", mod: addKV(func(b *bld) { b.u64(60000) }), err: "truncated in key/value 7 of 7 (need 60000 bytes at offset"},
		{name: "invalid value type", mod: addKV(kvRaw("x", 13)), err: `key "x" has invalid value type 13`},
		{name: "invalid array type", mod: addKV(kvRaw("x", 9, 99, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)), err: `key "x" has an array of invalid value type 99`},
		{name: "array absurd length", mod: addKV(kvRaw("x", 9, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10)), err: `key "x" array length 1152921504606846976 (of u32) is impossible for a`},
		{name: "string array absurd length", mod: addKV(kvRaw("x", 9, 8, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0)), err: `key "x" array length 4294967296 (of string) is impossible`},
		{name: "array of arrays of arrays", mod: addKV(kvArr("x", gguf.ValueTypeArray, 1, func(b *bld, _ uint64) {
			b.u32(uint32(gguf.ValueTypeArray)).u64(1).u32(0).u64(0)
		})), err: `key "x" has arrays nested more than 2 deep`},
		{name: "inner array invalid type", mod: addKV(kvArr("x", gguf.ValueTypeArray, 1, func(b *bld, _ uint64) { b.u32(77).u64(0) })), err: `key "x" has an array of invalid value type 77`},
		{name: "string value cut", mod: func(s *spec) {
			s.kvs = append(s.kvs, func(b *bld) { b.str("x").u32(uint32(gguf.ValueTypeString)).u64(60000) })
		}, err: `truncated in key/value 7 of 7 ("x") (need 60000 bytes at offset`},
		{name: "string value too long", mod: func(s *spec) {
			s.kvs = append(s.kvs, func(b *bld) { b.str("x").u32(uint32(gguf.ValueTypeString)).u64(1 << 40) })
		}, err: `key/value 7 of 7 ("x"): string value is 1099511627776 bytes long (max 67108864)`},
		{name: "string element cut", mod: func(s *spec) {
			s.kvs = append(s.kvs, func(b *bld) { b.str("x").u32(9).u32(8).u64(3).str("a").u64(60000) })
		}, err: `truncated in key/value 7 of 7 ("x" element 2 of 3) (need 60000 bytes`},
		{name: "alignment not power of two", mod: func(s *spec) { s.kvs[1] = kvU32("general.alignment", 48) }, err: `key "general.alignment" must be a power of two, not 48`},
		{name: "alignment zero", mod: func(s *spec) { s.kvs[1] = kvU32("general.alignment", 0) }, err: `key "general.alignment" must be a power of two, not 0`},
		{name: "alignment string", mod: func(s *spec) { s.kvs[1] = kvString("general.alignment", "32") }, err: `key "general.alignment" must be a u32, not a string`},
		{name: "alignment u64", mod: func(s *spec) { s.kvs[1] = kvRaw("general.alignment", 10, 32, 0, 0, 0, 0, 0, 0, 0) }, err: `must be a u32, not a u64`},
		{name: "alignment array", mod: func(s *spec) {
			s.kvs[1] = kvArr("general.alignment", gguf.ValueTypeUint32, 1, u32Elems)
		}, err: `must be a u32, not an array of u32`},

		// Tensor infos.
		{name: "7 dims", mod: setT(0, func(t *tspec) { t.dims = []uint64{8, 1, 1, 1, 1, 1, 1} }), err: `tensor "a" has 7 dimensions (max 4)`},
		{name: "absurd dims", mod: setT(0, func(t *tspec) { t.dims = []uint64{8, 1 << 40} }), err: `tensor "a" data [`},
		{name: "dims overflow", mod: setT(0, func(t *tspec) { t.dims = []uint64{1 << 32, 1 << 31} }), err: `tensor "a" element count overflows int64`},
		{name: "dim negative", mod: setT(1, func(t *tspec) { t.dims = []uint64{32, 1 << 63} }), err: `tensor "b" ne[1]=9223372036854775808 is out of range`},
		{name: "dim zero", mod: setT(1, func(t *tspec) { t.dims = []uint64{32, 0} }), err: `tensor "b" ne[1] is 0`},
		{name: "bytes overflow", mod: setT(0, func(t *tspec) { t.typ = 28; t.dims = []uint64{1 << 31, 1 << 31} }), err: `tensor "a" data size overflows int64`},
		{name: "removed type 4", mod: setT(0, func(t *tspec) { t.typ = 4 }), err: `tensor "a" type 4 is not a ggml type`},
		{name: "type 40", mod: setT(0, func(t *tspec) { t.typ = 40 }), err: `tensor "a" type 40 is not a ggml type`},
		{name: "type -1", mod: setT(0, func(t *tspec) { t.typ = math.MaxUint32 }), err: `tensor "a" type 4294967295 is not a ggml type`},
		{name: "block size", mod: setT(1, func(t *tspec) { t.dims = []uint64{33, 2} }), err: `tensor "b" ne[0]=33 is not a multiple of the block size 32 of q8_0`},
		{name: "duplicate tensor", mod: setT(2, func(t *tspec) { t.name = "a" }), err: `duplicate tensor name "a" (tensor infos 1 and 3 of 3)`},
		{name: "empty tensor name", mod: setT(2, func(t *tspec) { t.name = "" }), err: "tensor info 3 of 3: empty tensor name"},
		{name: "NUL in tensor name", mod: setT(2, func(t *tspec) { t.name = "c\x00d" }), err: `tensor name "c\x00d" contains a NUL byte`},
		{name: "tensor name 63", mod: setT(2, func(t *tspec) { t.name = long(63) })},
		{name: "tensor name 64", mod: setT(2, func(t *tspec) { t.name = long(64) }), err: "tensor info 3 of 3: tensor name is 64 bytes long (max 63)"},

		// Data layout.
		{name: "misaligned", mod: setT(1, func(t *tspec) { t.off = 33 }), err: `tensor "b" data offset 33 is not aligned to 32`},
		{name: "overlap", mod: setT(2, func(t *tspec) { t.off = 64 }), err: `tensor "c" data [`},
		{name: "same offset", mod: setT(1, func(t *tspec) { t.off = 0 }), err: `overlaps tensor`},
		{name: "gap", mod: setT(2, func(t *tspec) { t.off = 160 }), err: `tensor "c" data offset 160, but ggml requires 128`},
		{name: "out of order", mod: func(s *spec) { s.tensors[0].off, s.tensors[1].off, s.tensors[2].off = 160, 192, 0 }, err: `tensor "a" data offset 160, but ggml requires 0`},
		{name: "data cut", mod: func(s *spec) { s.dataLen = 128 + 143 }, err: `tensor "c" data [`},
		{name: "no data", mod: func(s *spec) { s.dataLen = 0 }, err: "lies beyond the end of the file"},
		{name: "offset absurd", mod: setT(2, func(t *tspec) { t.off = 1<<64 - 32 }), err: `tensor "c" data offset 18446744073709551584 (file offset`},
		{name: "offset near end", mod: setT(2, func(t *tspec) { t.off = 1<<63 - 32 }), err: `lies beyond the end of the file`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := c.raw
			if p == nil {
				s := baseSpec()
				c.mod(s)
				p = s.bytes()
			}
			info, err := decodeBytes(p)
			if c.err == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				checkInvariants(t, info)
				if c.check != nil {
					c.check(t, info)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want %q", c.err)
			}
			if info != nil {
				t.Errorf("info %v returned with an error", info)
			}
			if !strings.Contains(err.Error(), c.err) {
				t.Errorf("error %q\nwant it to contain %q", err, c.err)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
		})
	}
}

// checkInvariants checks what a successful Decode promises.
func checkInvariants(t testing.TB, info *gguf.Info) {
	t.Helper()
	if info.DataOffset < 0 || info.Alignment == 0 || info.Alignment&(info.Alignment-1) != 0 || uint64(info.DataOffset)%info.Alignment != 0 {
		t.Fatalf("bad header fields: data offset %d alignment %d", info.DataOffset, info.Alignment)
	}
	for _, ti := range info.Tensors {
		if ti.Offset > uint64(info.FileSize) || ti.Bytes > uint64(info.FileSize) ||
			uint64(info.DataOffset)+ti.Offset+ti.Bytes > uint64(info.FileSize) {
			t.Fatalf("tensor %q [%d, +%d) outside the data region [%d, %d)", ti.Name, ti.Offset, ti.Bytes, info.DataOffset, info.FileSize)
		}
		tr, ok := ti.Type.Traits()
		if !ok || len(ti.Dims) > gguf.MaxDims || ti.Bytes != ti.Elements()/tr.BlockSize*tr.TypeSize {
			t.Fatalf("tensor %+v inconsistent", ti)
		}
	}
}

// ---- the type table ----

func TestTraits(t *testing.T) {
	valid := 0
	for i := range uint32(64) {
		tr, ok := gguf.TensorType(i).Traits()
		if !ok {
			continue
		}
		valid++
		pt, pok := parser.GGMLType(i).Trait()
		if !pok || pt.BlockSize != tr.BlockSize || pt.TypeSize != tr.TypeSize {
			t.Errorf("type %d (%s): ours %d/%d, gguf-parser %+v (%v)", i, tr.Name, tr.BlockSize, tr.TypeSize, pt, pok)
		}
		if !strings.EqualFold(tr.Name, parser.GGMLType(i).String()) {
			t.Errorf("type %d: name %q, gguf-parser %q", i, tr.Name, parser.GGMLType(i).String())
		}
	}
	if valid != 32 {
		t.Errorf("%d valid ggml types, want 32 (40 minus 8 removed)", valid)
	}
	for _, removed := range []uint32{4, 5, 31, 32, 33, 36, 37, 38, 40, math.MaxUint32} {
		if _, ok := gguf.TensorType(removed).Traits(); ok {
			t.Errorf("type %d accepted", removed)
		}
	}
	// The writer's own types agree.
	for _, typ := range []gguf.TensorType{gguf.F32, gguf.F16, gguf.Q8_0} {
		tr, _ := typ.Traits()
		if tr.BlockSize != uint64(typ.BlockSize()) || tr.TypeSize != uint64(typ.BlockBytes()) || tr.Name != typ.String() {
			t.Errorf("%v: traits %+v", typ, tr)
		}
	}
}

// ---- the tiny synth model ----

var tinyOnce struct {
	sync.Once
	path string
	err  error
}

// tinyPath writes the tiny synth model once per test binary.
func tinyPath(t testing.TB) string {
	t.Helper()
	tinyOnce.Do(func() {
		dir, err := os.MkdirTemp("", "gguf-reader-test-")
		if err != nil {
			tinyOnce.err = err
			return
		}
		cfg, err := synth.Preset("tiny")
		if err != nil {
			tinyOnce.err = err
			return
		}
		tinyOnce.path = filepath.Join(dir, "tiny.gguf")
		tinyOnce.err = synth.Write(context.Background(), tinyOnce.path, cfg)
	})
	if tinyOnce.err != nil {
		t.Fatal(tinyOnce.err)
	}
	return tinyOnce.path
}

func TestMain(m *testing.M) {
	code := m.Run()
	if tinyOnce.path != "" {
		os.RemoveAll(filepath.Dir(tinyOnce.path))
	}
	os.Exit(code)
}

func TestInspectTiny(t *testing.T) {
	path := tinyPath(t)
	info, err := gguf.Inspect(path)
	if err != nil {
		t.Fatal(err)
	}
	checkInvariants(t, info)
	cfg, _ := synth.Preset("tiny")
	f, err := synth.Build(cfg)
	if err != nil {
		t.Fatal(err)
	}
	layout, err := f.Layout()
	if err != nil {
		t.Fatal(err)
	}
	if info.Version != 3 || info.Alignment != 32 || info.DataOffset != layout.DataStart || info.FileSize != layout.Size {
		t.Errorf("header %d/%d/%d/%d, layout %+v", info.Version, info.Alignment, info.DataOffset, info.FileSize, layout)
	}
	if len(info.Tensors) != len(f.Tensors) || len(info.Tensors) != 21 {
		t.Fatalf("%d tensors, want %d", len(info.Tensors), len(f.Tensors))
	}
	for i, ti := range info.Tensors {
		w := &f.Tensors[i]
		if ti.Name != w.Name || ti.Type != w.Type || !reflect.DeepEqual(ti.Dims, w.Dims) ||
			ti.Offset != uint64(layout.Offsets[i]) || ti.Bytes != uint64(w.Bytes()) {
			t.Errorf("tensor %d: %+v, want %s %v %v at %d (%d bytes)", i, ti, w.Name, w.Type, w.Dims, layout.Offsets[i], w.Bytes())
		}
	}
	if len(info.KV) != len(f.KVs) {
		t.Errorf("%d keys, want %d", len(info.KV), len(f.KVs))
	}
	for _, kv := range f.KVs {
		got := info.KV[kv.Key]
		want := kv.Value.Interface()
		if kv.Value.Type() == gguf.ValueTypeArray && kv.Value.Len() > gguf.MaxInlineArray {
			want = gguf.ArrayInfo{Type: kv.Value.ElemType(), Len: uint64(kv.Value.Len())}
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("key %s = %#v, want %#v", kv.Key, got, want)
		}
	}
	if info.KV["general.architecture"] != "llama" || info.KV["llama.block_count"] != uint32(2) {
		t.Errorf("architecture %v, block count %v", info.KV["general.architecture"], info.KV["llama.block_count"])
	}
	if a, ok := info.KV["tokenizer.ggml.tokens"].(gguf.ArrayInfo); !ok || a.Type != gguf.ValueTypeString || a.Len != uint64(cfg.Vocab) {
		t.Errorf("tokens %#v", info.KV["tokenizer.ggml.tokens"])
	}
}

func TestInspectMatchesGGUFParser(t *testing.T) {
	path := tinyPath(t)
	info, err := gguf.Inspect(path)
	if err != nil {
		t.Fatal(err)
	}
	gf, err := parser.ParseGGUFFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if gf.TensorDataStartOffset != info.DataOffset {
		t.Errorf("data offset %d, gguf-parser %d", info.DataOffset, gf.TensorDataStartOffset)
	}
	if uint32(gf.Header.Version) != info.Version || gf.Header.MetadataKVCount != uint64(len(info.KV)) {
		t.Errorf("version %d kv %d, gguf-parser %d %d", info.Version, len(info.KV), gf.Header.Version, gf.Header.MetadataKVCount)
	}
	if len(gf.TensorInfos) != len(info.Tensors) {
		t.Fatalf("%d tensors, gguf-parser %d", len(info.Tensors), len(gf.TensorInfos))
	}
	for i, pt := range gf.TensorInfos {
		ti := info.Tensors[i]
		if pt.Name != ti.Name || pt.Offset != ti.Offset || uint32(pt.Type) != uint32(ti.Type) || !reflect.DeepEqual(pt.Dimensions, ti.Dims) || pt.Bytes() != ti.Bytes {
			t.Errorf("tensor %d: ours %+v, gguf-parser %s %v %v at %d (%d bytes)", i, ti, pt.Name, pt.Type, pt.Dimensions, pt.Offset, pt.Bytes())
		}
	}
	for _, kv := range gf.Header.MetadataKV {
		if _, ok := info.KV[kv.Key]; !ok {
			t.Errorf("key %s missing", kv.Key)
		}
	}
}

func TestInspectErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := gguf.Inspect(filepath.Join(dir, "missing.gguf")); !errors.Is(err, fs.ErrNotExist) || strings.Contains(err.Error(), dir) {
		t.Errorf("missing file: %v (want ErrNotExist, without the path)", err)
	}
	if _, err := gguf.Inspect(dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("directory: %v", err)
	}
	p := filepath.Join(dir, "x.gguf")
	if err := os.WriteFile(p, []byte("GGUX0000"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := gguf.Inspect(p); err == nil || strings.Contains(err.Error(), p) {
		t.Errorf("bad magic: %v (the error must not name the path)", err)
	}
	if _, err := gguf.Decode(bytes.NewReader(nil), -1); err == nil {
		t.Error("negative size: no error")
	}
}

// TestTruncations cuts the tiny file at every byte of its header, metadata
// and tensor infos (and the padding after them), and at points in the data.
func TestTruncations(t *testing.T) {
	p, err := os.ReadFile(tinyPath(t))
	if err != nil {
		t.Fatal(err)
	}
	info, err := decodeBytes(p)
	if err != nil {
		t.Fatal(err)
	}
	cuts := make([]int, 0, info.DataOffset+16)
	for n := 0; n <= int(info.DataOffset); n++ {
		cuts = append(cuts, n)
	}
	data := len(p) - int(info.DataOffset)
	for _, n := range []int{1, 31, 32, 4096, data / 3, data / 2, data - 4096, data - 33, data - 32, data - 1} {
		cuts = append(cuts, int(info.DataOffset)+n)
	}
	for _, t0 := range info.Tensors { // cut one byte short of each tensor's end
		cuts = append(cuts, int(info.DataOffset)+int(t0.Offset+t0.Bytes)-1)
	}
	// The messages a cut may produce.
	allowed := []string{"truncated in ", "is impossible for a", "lies beyond the end of the file", "not a GGUF file ("}
	for _, n := range cuts {
		q := p[:n:n]
		info, err := decodeBytes(q)
		if err == nil {
			t.Fatalf("cut at %d of %d: no error (%d tensors)", n, len(p), len(info.Tensors))
		}
		ok := false
		for _, a := range allowed {
			ok = ok || strings.Contains(err.Error(), a)
		}
		if !ok || strings.Contains(err.Error(), "\n") {
			t.Fatalf("cut at %d: unexpected error %q", n, err)
		}
	}
	t.Logf("%d cuts, header+infos region %d bytes", len(cuts), info.DataOffset)
	// A sample message.
	_, err = decodeBytes(p[:1000])
	t.Logf("cut at 1000: %v", err)
}

// zeroReader is a sparse file of any size: all zeros but for a header.
type zeroReader struct {
	head []byte
	size int64
}

func (z zeroReader) ReadAt(p []byte, off int64) (int, error) {
	for i := range p {
		p[i] = 0
		if o := off + int64(i); o < int64(len(z.head)) {
			p[i] = z.head[o]
		}
	}
	return len(p), nil
}

// TestHugeCountsLittleMemory decodes sparse terabyte "files" whose headers
// claim billions of entries that the size alone cannot rule out; decoding
// must fail on the first bad entry without reserving memory for the claim.
func TestHugeCountsLittleMemory(t *testing.T) {
	const size = 1 << 40
	hdr := func() *bld { return (&bld{}).raw([]byte("GGUF")...).u32(3) }
	heads := map[string][]byte{
		"kvs":     hdr().u64(0).u64(1 << 36).b,
		"tensors": hdr().u64(1 << 35).u64(0).b,
		// 2^36 strings, the first of them 2^50 bytes long.
		"strings": hdr().u64(0).u64(1).str("k").u32(9).u32(8).u64(1 << 36).u64(1 << 50).b,
		// 2^36 arrays, the first of them of an invalid type.
		"arrays": hdr().u64(0).u64(1).str("k").u32(9).u32(9).u64(1 << 36).u32(13).b,
		// 2^37 u32 (skipped), then 2^30 tensor infos claimed by nobody.
		"u32s": hdr().u64(1 << 30).u64(1).str("k").u32(9).u32(4).u64(1 << 37).b,
	}
	for name, head := range heads {
		t.Run(name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			_, err := gguf.Decode(zeroReader{head, size}, size)
			runtime.ReadMemStats(&after)
			if err == nil {
				t.Fatal("no error")
			}
			if d := after.TotalAlloc - before.TotalAlloc; d > 4<<20 {
				t.Errorf("allocated %d bytes", d)
			}
			t.Logf("%v (allocated %d bytes)", err, after.TotalAlloc-before.TotalAlloc)
		})
	}
}

func TestImpossibleCountSizes(t *testing.T) {
	head := (&bld{}).raw([]byte("GGUF")...).u32(3).u64(1 << 60).u64(0).b
	for size, want := range map[int64]string{
		100:           "for a 100-byte file",
		1_800_000:     "tensor count 1152921504606846976 is impossible for a 1.8 MB file",
		25_500:        "for a 25.5 kB file",
		7_000_000_000: "for a 7.0 GB file",
	} {
		_, err := gguf.Decode(zeroReader{head, size}, size)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("size %d: %v, want %q", size, err, want)
		}
	}
}

// errReader fails every read.
type errReader struct{}

func (errReader) ReadAt([]byte, int64) (int, error) { return 0, os.ErrClosed }

func TestReadErrors(t *testing.T) {
	_, err := gguf.Decode(errReader{}, 100)
	if err == nil || !strings.Contains(err.Error(), "reading header at offset 0") {
		t.Errorf("read error: %v", err)
	}
	p := baseSpec().bytes()
	_, err = gguf.Decode(bytes.NewReader(p[:50]), int64(len(p)))
	if err == nil || !strings.Contains(err.Error(), "file shrank") {
		t.Errorf("shrunk file: %v", err)
	}
}

// ---- fuzzing ----

func FuzzDecode(f *testing.F) {
	p, err := os.ReadFile(tinyPath(f))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(p[:4096])
	f.Add(baseSpec().bytes())
	s := baseSpec()
	s.version = 2
	s.tensors = s.tensors[:1]
	f.Add(s.bytes())
	f.Fuzz(func(t *testing.T, data []byte) {
		info, err := decodeBytes(data)
		if err != nil {
			if info != nil {
				t.Fatalf("info with error %v", err)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("multi-line error %q", err)
			}
			return
		}
		if info.FileSize != int64(len(data)) || info.DataOffset > info.FileSize && len(info.Tensors) > 0 {
			t.Fatalf("file size %d data offset %d for %d bytes", info.FileSize, info.DataOffset, len(data))
		}
		checkInvariants(t, info)
	})
}
