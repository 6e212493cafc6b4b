package cluster

import (
	"math/rand/v2"
	"slices"
	"sort"
	"testing"
)

// llamaDevices is llama.cpp's layer placement (llama_model::load_tensors,
// vendored llama.cpp ec98e2002), in its float32 arithmetic: which device
// each of nLayer blocks and the output layer go to; -1 is the CPU.
func llamaDevices(split []float32, nLayer, nGPULayers int) (blocks []int, output int) {
	splits := make([]float32, len(split))
	var sum float32
	for i, v := range split {
		sum += v
		splits[i] = sum
	}
	for i := range splits {
		splits[i] /= sum
	}
	if nGPULayers < 0 {
		nGPULayers = 999 // llama.ModelParams: negative means all
	}
	start := max(nLayer-nGPULayers, 0)
	act := min(nGPULayers, nLayer+1)
	dev := func(il int) int {
		if il < start || il-start >= act {
			return -1
		}
		x := float32(il-start) / float32(act)
		return sort.Search(len(splits), func(i int) bool { return splits[i] > x }) // std::upper_bound
	}
	for il := range nLayer {
		blocks = append(blocks, dev(il))
	}
	return blocks, dev(nLayer)
}

func TestBlockSplit(t *testing.T) {
	for _, tc := range []struct {
		weights   []float64
		layers    int
		gpuLayers int
		want      []float64
	}{
		{[]float64{1, 1}, 2, -1, []float64{1, 2}}, // the demo: one block each, the output with the second
		{[]float64{1, 1}, 8, -1, []float64{4, 5}},
		{[]float64{1, 3}, 8, -1, []float64{2, 7}},
		{[]float64{1, 1, 1}, 8, -1, []float64{3, 3, 3}},
		{[]float64{1, 0}, 2, -1, []float64{3, 0}},
		{[]float64{0, 1}, 2, -1, []float64{0, 3}},
		{[]float64{1, 1}, 8, 4, []float64{2, 2}}, // 4 blocks on the CPU; the output there too
		{[]float64{3e9, 1e9}, 32, -1, []float64{24, 9}},
	} {
		if got := blockSplit(tc.weights, tc.layers, tc.gpuLayers); !slices.Equal(got, tc.want) {
			t.Errorf("blockSplit(%v, %d, %d) = %v, want %v", tc.weights, tc.layers, tc.gpuLayers, got, tc.want)
		}
	}
}

// TestBlockSplitPlacesWhatItApportions: llama.cpp, given the split, puts on
// each worker exactly the blocks apportioned to it, the output layer with
// the last block (or on the CPU when blocks stay local), for any weights.
func TestBlockSplitPlacesWhatItApportions(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		n := 1 + r.IntN(6)
		weights := make([]float64, n)
		for i := range weights {
			switch r.IntN(4) {
			case 0: // a worker left out
			case 1:
				weights[i] = float64(1 + r.IntN(4)) // --tensor-split
			default:
				weights[i] = float64(r.Int64N(80 << 30)) // free memory
			}
		}
		if slices.Max(weights) == 0 {
			weights[r.IntN(n)] = 1
		}
		layers := 1 + r.IntN(126)
		gpuLayers := -1
		if r.IntN(3) == 0 {
			gpuLayers = r.IntN(layers + 1)
		}
		split := blockSplit(weights, layers, gpuLayers)
		f32 := make([]float32, n)
		for i, v := range split {
			f32[i] = float32(v)
		}
		blocks, output := llamaDevices(f32, layers, gpuLayers)
		offloaded := layers
		if gpuLayers >= 0 {
			offloaded = gpuLayers
		}
		if offloaded == 0 {
			continue
		}
		want := apportion(weights, offloaded)
		got := make([]int, n)
		last := -1
		for _, d := range blocks {
			if d >= 0 {
				got[d]++
				last = d
			}
		}
		if !slices.Equal(got, want) {
			t.Fatalf("weights %v, %d layers, %d offloaded: llama.cpp places %v blocks, apportioned %v (split %v)", weights, layers, gpuLayers, got, want, split)
		}
		wantOut := last
		if gpuLayers >= 0 {
			wantOut = -1
		}
		if output != wantOut {
			t.Fatalf("weights %v, %d layers, %d offloaded: output on %d, want %d (split %v)", weights, layers, gpuLayers, output, wantOut, split)
		}
		for i, w := range weights {
			if w == 0 && got[i] != 0 {
				t.Fatalf("weights %v: worker %d has weight 0 and %d blocks", weights, i, got[i])
			}
		}
	}
}
