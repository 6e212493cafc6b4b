package compute

import (
	"testing"

	"github.com/boxproj/box/ggml"
)

func TestCycleDetection(t *testing.T) {
	mk := func(srcs ...int32) ggml.TensorSpec {
		s := ggml.TensorSpec{ViewSrc: -1}
		for i := range s.Src {
			s.Src[i] = -1
		}
		copy(s.Src[:], srcs)
		return s
	}
	// D=0 (B,C), B=1 (A), C=2 (A), A=3
	specs := []ggml.TensorSpec{mk(1, 2), mk(3), mk(3), mk()}
	if cyclic(specs) >= 0 {
		t.Fatal("diamond reported as cycle")
	}
	// A self-reference (ggml_cast's CPY) is not a cycle; a longer loop is.
	if cyclic([]ggml.TensorSpec{mk(1, 0), mk()}) >= 0 {
		t.Fatal("self-reference reported as cycle")
	}
	if cyclic([]ggml.TensorSpec{mk(1), mk(2), mk(0)}) < 0 {
		t.Fatal("three-cycle missed")
	}
	v := mk(3)
	v.ViewSrc = 3
	specs = []ggml.TensorSpec{mk(1, 2), v, mk(3), mk()}
	if cyclic(specs) >= 0 {
		t.Fatal("view reported as cycle")
	}
}
