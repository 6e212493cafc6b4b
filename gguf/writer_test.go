package gguf

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	parser "github.com/gpustack/gguf-parser-go"
)

func randVals(seed uint64, n int) Slice {
	r := rand.New(rand.NewPCG(seed, 99))
	s := make(Slice, n)
	for i := range s {
		s[i] = float32(r.NormFloat64())
	}
	return s
}

// testFile has every metadata type and tensors whose sizes are not multiples
// of the alignment, so padding between tensors is exercised.
func testFile() *File {
	f := &File{}
	f.AddKV("general.architecture", String("llama"))
	f.AddKV(KeyAlignment, Uint32(32))
	f.AddKV("t.u8", Uint8(200))
	f.AddKV("t.i8", Int8(-100))
	f.AddKV("t.u16", Uint16(60000))
	f.AddKV("t.i16", Int16(-30000))
	f.AddKV("t.u32", Uint32(4000000000))
	f.AddKV("t.i32", Int32(-2000000000))
	f.AddKV("t.f32", Float32(1e-5))
	f.AddKV("t.bool", Bool(true))
	f.AddKV("t.string", String("héllo ▁ world"))
	f.AddKV("t.u64", Uint64(1<<40))
	f.AddKV("t.i64", Int64(-1<<40))
	f.AddKV("t.f64", Float64(math.Pi))
	f.AddKV("t.strings", Strings([]string{"a", "", "<0x0A>"}))
	f.AddKV("t.f32s", Float32s([]float32{0, -1.5, 3}))
	f.AddKV("t.i32s", Int32s([]int32{1, 6, -3}))
	f.AddKV("t.empty", Uint32s(nil))
	f.AddTensor("a.f32", F32, []uint64{5, 3}, randVals(1, 15))     // 60 bytes
	f.AddTensor("b.f16", F16, []uint64{7}, randVals(2, 7))         // 14 bytes
	f.AddTensor("c.q8_0", Q8_0, []uint64{64, 3}, randVals(3, 192)) // 204 bytes
	f.AddTensor("d.ones", F32, []uint64{4, 2, 2, 1}, Const(1))     // 64 bytes
	f.AddTensor("e.f16.large", F16, []uint64{96, 40}, randVals(4, 3840))
	return f
}

func writeTemp(t *testing.T, f *File, opts ...WriteOption) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "m.gguf")
	if err := WriteFile(context.Background(), path, f, opts...); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestWriteParsesWithGGUFParser(t *testing.T) {
	f := testFile()
	layout, err := f.Layout()
	if err != nil {
		t.Fatal(err)
	}
	path := writeTemp(t, f, withChunkElems(50))
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() != layout.Size {
		t.Errorf("file size %d, layout says %d", st.Size(), layout.Size)
	}
	if st.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, want 0644", st.Mode().Perm())
	}

	gf, err := parser.ParseGGUFFile(path)
	if err != nil {
		t.Fatalf("gguf-parser: %v", err)
	}
	if gf.Header.Version != parser.GGUFVersionV3 || gf.Header.Magic != parser.GGUFMagicGGUFLe {
		t.Errorf("header magic %v version %v", gf.Header.Magic, gf.Header.Version)
	}
	if gf.Header.TensorCount != uint64(len(f.Tensors)) || gf.Header.MetadataKVCount != uint64(len(f.KVs)) {
		t.Errorf("counts: tensors %d kv %d", gf.Header.TensorCount, gf.Header.MetadataKVCount)
	}
	if gf.TensorDataStartOffset != layout.DataStart || layout.DataStart%32 != 0 {
		t.Errorf("data start %d, layout %d", gf.TensorDataStartOffset, layout.DataStart)
	}
	if a := gf.Architecture().Architecture; a != "llama" {
		t.Errorf("architecture %q", a)
	}

	kv := gf.Header.MetadataKV
	get := func(key string, typ parser.GGUFMetadataValueType) parser.GGUFMetadataKV {
		t.Helper()
		v, ok := kv.Get(key)
		if !ok {
			t.Fatalf("key %q missing", key)
		}
		if v.ValueType != typ {
			t.Fatalf("key %q has type %v, want %v", key, v.ValueType, typ)
		}
		return v
	}
	checks := []struct {
		key  string
		typ  parser.GGUFMetadataValueType
		got  func(parser.GGUFMetadataKV) any
		want any
	}{
		{"t.u8", parser.GGUFMetadataValueTypeUint8, func(v parser.GGUFMetadataKV) any { return v.ValueUint8() }, uint8(200)},
		{"t.i8", parser.GGUFMetadataValueTypeInt8, func(v parser.GGUFMetadataKV) any { return v.ValueInt8() }, int8(-100)},
		{"t.u16", parser.GGUFMetadataValueTypeUint16, func(v parser.GGUFMetadataKV) any { return v.ValueUint16() }, uint16(60000)},
		{"t.i16", parser.GGUFMetadataValueTypeInt16, func(v parser.GGUFMetadataKV) any { return v.ValueInt16() }, int16(-30000)},
		{"t.u32", parser.GGUFMetadataValueTypeUint32, func(v parser.GGUFMetadataKV) any { return v.ValueUint32() }, uint32(4000000000)},
		{"t.i32", parser.GGUFMetadataValueTypeInt32, func(v parser.GGUFMetadataKV) any { return v.ValueInt32() }, int32(-2000000000)},
		{"t.f32", parser.GGUFMetadataValueTypeFloat32, func(v parser.GGUFMetadataKV) any { return v.ValueFloat32() }, float32(1e-5)},
		{"t.bool", parser.GGUFMetadataValueTypeBool, func(v parser.GGUFMetadataKV) any { return v.ValueBool() }, true},
		{"t.string", parser.GGUFMetadataValueTypeString, func(v parser.GGUFMetadataKV) any { return v.ValueString() }, "héllo ▁ world"},
		{"t.u64", parser.GGUFMetadataValueTypeUint64, func(v parser.GGUFMetadataKV) any { return v.ValueUint64() }, uint64(1 << 40)},
		{"t.i64", parser.GGUFMetadataValueTypeInt64, func(v parser.GGUFMetadataKV) any { return v.ValueInt64() }, int64(-1 << 40)},
		{"t.f64", parser.GGUFMetadataValueTypeFloat64, func(v parser.GGUFMetadataKV) any { return v.ValueFloat64() }, math.Pi},
		{"general.alignment", parser.GGUFMetadataValueTypeUint32, func(v parser.GGUFMetadataKV) any { return v.ValueUint32() }, uint32(32)},
		{"t.strings", parser.GGUFMetadataValueTypeArray, func(v parser.GGUFMetadataKV) any { return fmt.Sprint(v.ValueArray().ValuesString()) }, fmt.Sprint([]string{"a", "", "<0x0A>"})},
		{"t.f32s", parser.GGUFMetadataValueTypeArray, func(v parser.GGUFMetadataKV) any {
			return fmt.Sprint(v.ValueArray().Type, parser.ValuesNumeric[float32](v.ValueArray()))
		}, fmt.Sprint(parser.GGUFMetadataValueTypeFloat32, []float32{0, -1.5, 3})},
		{"t.i32s", parser.GGUFMetadataValueTypeArray, func(v parser.GGUFMetadataKV) any { return fmt.Sprint(v.ValueArray().ValuesInt32()) }, fmt.Sprint([]int32{1, 6, -3})},
		{"t.empty", parser.GGUFMetadataValueTypeArray, func(v parser.GGUFMetadataKV) any { return fmt.Sprint(v.ValueArray().Type, v.ValueArray().Len) }, fmt.Sprint(parser.GGUFMetadataValueTypeUint32, 0)},
	}
	for _, c := range checks {
		if got := c.got(get(c.key, c.typ)); got != c.want {
			t.Errorf("%s = %v, want %v", c.key, got, c.want)
		}
	}

	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(gf.TensorInfos) != len(f.Tensors) {
		t.Fatalf("%d tensor infos", len(gf.TensorInfos))
	}
	for i, ti := range gf.TensorInfos {
		want := f.Tensors[i]
		if ti.Name != want.Name || uint32(ti.Type) != uint32(want.Type) || fmt.Sprint(ti.Dimensions) != fmt.Sprint(want.Dims) {
			t.Errorf("tensor %d: %s %v %v, want %s %v %v", i, ti.Name, ti.Type, ti.Dimensions, want.Name, want.Type, want.Dims)
		}
		if int64(ti.Offset) != layout.Offsets[i] || ti.Offset%32 != 0 {
			t.Errorf("tensor %s: offset %d, layout %d", ti.Name, ti.Offset, layout.Offsets[i])
		}
		if i > 0 { // consecutive: previous offset + padded previous size
			prev := f.Tensors[i-1]
			if exp := pad(uint64(layout.Offsets[i-1])+uint64(prev.Bytes()), 32); ti.Offset != exp {
				t.Errorf("tensor %s: offset %d, want consecutive %d", ti.Name, ti.Offset, exp)
			}
		}
		if ti.Bytes() != uint64(want.Bytes()) {
			t.Errorf("tensor %s: parser size %d, want %d", ti.Name, ti.Bytes(), want.Bytes())
		}
		// Decode the stored data and compare with the source values.
		start := gf.TensorDataStartOffset + int64(ti.Offset)
		data := raw[start : start+want.Bytes()]
		src := make([]float32, want.Elements())
		if err := want.Data.Fill(0, src); err != nil {
			t.Fatal(err)
		}
		got := decode(want.Type, data, len(src))
		for j := range src {
			var tol float64
			switch want.Type {
			case F16:
				tol = math.Abs(float64(src[j])) * math.Ldexp(1, -11)
			case Q8_0:
				tol = 0.05 // |x| < 6 for these normals: step/2 < 0.025, plus f16 scale error
			}
			if d := math.Abs(float64(got[j] - src[j])); d > tol {
				t.Fatalf("tensor %s value %d: stored %g, source %g", ti.Name, j, got[j], src[j])
			}
		}
	}
}

func decode(t TensorType, data []byte, n int) []float32 {
	out := make([]float32, n)
	switch t {
	case F32:
		for i := range out {
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(data[4*i:]))
		}
	case F16:
		for i := range out {
			out[i] = F16ToF32(binary.LittleEndian.Uint16(data[2*i:]))
		}
	case Q8_0:
		DequantizeQ8_0(out, data)
	}
	return out
}

func TestWriteIndependentOfConcurrencyAndChunking(t *testing.T) {
	var ref [32]byte
	for i, opts := range [][]WriteOption{
		{WithConcurrency(1)},
		{WithConcurrency(4), withChunkElems(7)},
		{WithConcurrency(3), withChunkElems(1 << 20)},
	} {
		var buf bytes.Buffer
		n, err := testFile().Write(context.Background(), &buf, opts...)
		if err != nil || n != int64(buf.Len()) {
			t.Fatalf("opts %d: n=%d len=%d err=%v", i, n, buf.Len(), err)
		}
		sum := sha256.Sum256(buf.Bytes())
		if i == 0 {
			ref = sum
		} else if sum != ref {
			t.Errorf("opts %d: output differs", i)
		}
	}
}

func TestWriteProgress(t *testing.T) {
	var last, total int64
	calls := 0
	_, err := testFile().Write(context.Background(), io.Discard, withChunkElems(16), WithProgress(func(d, tot int64) {
		if d < last {
			t.Errorf("progress went back: %d after %d", d, last)
		}
		last, total = d, tot
		calls++
	}))
	if err != nil {
		t.Fatal(err)
	}
	var want int64
	for _, tn := range testFile().Tensors {
		want += tn.Bytes()
	}
	if calls < 5 || total != want || last < total {
		t.Errorf("calls=%d last=%d total=%d want total %d", calls, last, total, want)
	}
}

func TestValidateErrors(t *testing.T) {
	src := Const(0)
	tests := []struct {
		name   string
		mutate func(f *File)
		want   string
	}{
		{"duplicate key", func(f *File) { f.AddKV("t.u8", Uint8(1)) }, `duplicate metadata key "t.u8"`},
		{"empty key", func(f *File) { f.AddKV("", Uint8(1)) }, "empty key"},
		{"zero value", func(f *File) { f.AddKV("x", Value{}) }, `metadata key "x"`},
		{"alignment not u32", func(f *File) { f.KVs[1].Value = Uint64(32) }, "general.alignment must be a u32"},
		{"alignment not power of two", func(f *File) { f.KVs[1].Value = Uint32(48) }, "not a power of two"},
		{"duplicate tensor", func(f *File) { f.AddTensor("a.f32", F32, []uint64{1}, src) }, `duplicate tensor name "a.f32"`},
		{"long name", func(f *File) { f.AddTensor(strings.Repeat("x", 64), F32, []uint64{1}, src) }, "must be 1 to 63 bytes"},
		{"empty name", func(f *File) { f.AddTensor("", F32, []uint64{1}, src) }, "must be 1 to 63 bytes"},
		{"q8_0 row", func(f *File) { f.AddTensor("q", Q8_0, []uint64{48, 2}, src) }, "ne0 = 48 is not a multiple of the q8_0 block size 32"},
		{"bad type", func(f *File) { f.AddTensor("q", TensorType(2), []uint64{32}, src) }, "unsupported type"},
		{"no dims", func(f *File) { f.AddTensor("q", F32, nil, src) }, "0 dimensions"},
		{"five dims", func(f *File) { f.AddTensor("q", F32, []uint64{1, 1, 1, 1, 1}, src) }, "5 dimensions"},
		{"zero dim", func(f *File) { f.AddTensor("q", F32, []uint64{4, 0}, src) }, "bad dimensions"},
		{"no source", func(f *File) { f.AddTensor("q", F32, []uint64{4}, nil) }, "no data source"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := testFile()
			tc.mutate(f)
			err := f.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate() = %v, want error containing %q", err, tc.want)
			}
			path := filepath.Join(t.TempDir(), "bad.gguf")
			if err := WriteFile(context.Background(), path, f); err == nil || !strings.Contains(err.Error(), path) {
				t.Errorf("WriteFile error %v does not name %s", err, path)
			}
			assertOnly(t, filepath.Dir(path))
		})
	}
	if err := testFile().Validate(); err != nil {
		t.Fatalf("valid file: %v", err)
	}
}

// failAfter accepts limit bytes, then fails every write like a full disk.
type failAfter struct {
	w     io.Writer
	limit int64
	n     int64
}

func (f *failAfter) Write(p []byte) (int, error) {
	if f.n+int64(len(p)) > f.limit {
		k := f.limit - f.n
		if k > 0 {
			n, _ := f.w.Write(p[:k])
			f.n += int64(n)
			return n, syscall.ENOSPC
		}
		return 0, syscall.ENOSPC
	}
	n, err := f.w.Write(p)
	f.n += int64(n)
	return n, err
}

// assertOnly fails unless dir holds exactly the named files.
func assertOnly(t *testing.T, dir string, names ...string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
	}
	if fmt.Sprint(got) != fmt.Sprint(names) && !(len(got) == 0 && len(names) == 0) {
		t.Errorf("directory holds %v, want %v", got, names)
	}
}

func TestWriteFileFullDisk(t *testing.T) {
	size, err := testFile().Size()
	if err != nil {
		t.Fatal(err)
	}
	for _, limit := range []int64{0, 10, 300, size - 100, size - 1} {
		t.Run(fmt.Sprint(limit), func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "m.gguf")
			old := []byte("previous model")
			if err := os.WriteFile(path, old, 0o644); err != nil {
				t.Fatal(err)
			}
			err := WriteFile(context.Background(), path, testFile(), withChunkElems(64),
				withWriterWrap(func(w io.Writer) io.Writer { return &failAfter{w: w, limit: limit} }))
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("err = %v, want ENOSPC", err)
			}
			if !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not name the path", err)
			}
			assertOnly(t, dir, "m.gguf")
			if b, _ := os.ReadFile(path); !bytes.Equal(b, old) {
				t.Errorf("destination was modified")
			}
		})
	}
}

func TestWriteFileCancelled(t *testing.T) {
	t.Run("before start", func(t *testing.T) {
		dir := t.TempDir()
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		err := WriteFile(ctx, filepath.Join(dir, "m.gguf"), testFile())
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v", err)
		}
		assertOnly(t, dir)
	})
	t.Run("between tensors", func(t *testing.T) {
		dir := t.TempDir()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		f := testFile()
		var filled atomic.Int32
		// The second tensor cancels the context; the rest must not be written.
		f.Tensors[1].Data = SourceFunc(func(off int64, dst []float32) error {
			cancel()
			return Const(2).Fill(off, dst)
		})
		f.Tensors[4].Data = SourceFunc(func(off int64, dst []float32) error {
			filled.Add(1)
			return nil
		})
		err := WriteFile(ctx, filepath.Join(dir, "m.gguf"), f, WithConcurrency(1), withChunkElems(8))
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v", err)
		}
		assertOnly(t, dir)
		if n := filled.Load(); n > 3 {
			t.Errorf("last tensor filled %d chunks after cancel", n)
		}
	})
}

func TestWriteFileSourceError(t *testing.T) {
	dir := t.TempDir()
	f := testFile()
	boom := errors.New("boom")
	f.Tensors[2].Data = SourceFunc(func(int64, []float32) error { return boom })
	err := WriteFile(context.Background(), filepath.Join(dir, "m.gguf"), f)
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), `"c.q8_0"`) {
		t.Fatalf("err = %v", err)
	}
	assertOnly(t, dir)
}

func TestWriteFileMissingDir(t *testing.T) {
	path := filepath.Join(t.TempDir(), "no", "such", "m.gguf")
	err := WriteFile(context.Background(), path, testFile())
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), path) {
		t.Fatalf("err = %v", err)
	}
}

func TestWriteFileReplaces(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "m.gguf")
	if err := os.WriteFile(path, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(context.Background(), path, testFile()); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil || !bytes.HasPrefix(b, []byte("GGUF\x03\x00\x00\x00")) {
		t.Fatalf("not replaced: %q %v", b[:min(8, len(b))], err)
	}
	assertOnly(t, dir, "m.gguf")
}
