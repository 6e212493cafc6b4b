package cluster

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"

	parser "github.com/gpustack/gguf-parser-go"

	"github.com/boxproj/box/api"
)

// PlanOptions are what the split depends on.
type PlanOptions struct {
	CtxSize  int // tokens per slot
	Parallel int // slots
	// Split gives each remote device (in --rpc order), then the local CPU
	// unless NoLocal, its share. Empty: proportional to free memory.
	Split   []float64
	NoLocal bool
	// LocalFree is the local device's free memory (for the default split).
	LocalFree uint64
}

// Share is what the plan puts on one worker.
type Share = api.PlanShare

// Plan is how a model is spread: what to pass llama.cpp and what each
// worker is expected to hold.
type Plan struct {
	Devices     []string  // remote ggml devices, one per worker device
	TensorSplit []float32 // their shares: block counts (blockSplit)
	GPULayers   int       // layers offloaded to them; -1 = all (and the output layer)
	LocalLayers int
	Shares      []Share
}

// FitError says which worker cannot take its share.
type FitError struct{ Share Share }

func (e *FitError) Error() string {
	s := e.Share
	return fmt.Sprintf("worker %s cannot take its share: it needs %s (%d layers: weights %s, KV cache %s, compute %s) but has %s free; give it less with --tensor-split, free memory there, or add workers",
		s.Addr, mib(s.Need), s.Layers, mib(s.Weights), mib(s.KV), mib(s.Compute), mib(s.Free))
}

func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// Plan asks every worker for its free memory, splits the model, estimates
// each worker's share with gguf-parser-go and refuses, before anything is
// allocated, if a share does not fit.
func (c *Cluster) Plan(ctx context.Context, modelPath string, o PlanOptions) (*Plan, error) {
	if err := c.Err(); err != nil {
		return nil, err
	}
	// Only the first device of each worker is used for now: box workers
	// expose one device per process (run one worker per GPU).
	free := make([]uint64, len(c.nodes))
	for i, n := range c.nodes {
		f, _, err := n.Memory(ctx, 0)
		if err != nil {
			return nil, err
		}
		free[i] = f
	}
	nRemote := len(c.nodes)
	weights := make([]float64, 0, nRemote+1)
	switch {
	case len(o.Split) > 0:
		want := nRemote
		if !o.NoLocal {
			want++
		}
		if len(o.Split) != want {
			return nil, fmt.Errorf("--tensor-split has %d values; want %d (one per worker%s)", len(o.Split), want, map[bool]string{true: "", false: ", then the local CPU"}[o.NoLocal])
		}
		for _, v := range o.Split {
			if v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
				return nil, errors.New("--tensor-split values must be non-negative numbers")
			}
		}
		weights = append(weights, o.Split...)
	default:
		for _, f := range free {
			weights = append(weights, float64(f))
		}
		if !o.NoLocal {
			weights = append(weights, float64(o.LocalFree))
		}
	}
	// The vocabulary and other large arrays are not read: only their
	// lengths count for the estimate.
	f, err := parser.ParseGGUFFile(modelPath, parser.SkipLargeMetadata(), parser.UseMMap())
	if err != nil {
		return nil, fmt.Errorf("read %s for planning: %w", modelPath, err)
	}
	layers := int(f.Architecture().BlockCount)

	total := 0.0
	for _, w := range weights {
		total += w
	}
	remoteTotal := 0.0
	for _, w := range weights[:nRemote] {
		remoteTotal += w
	}
	if total <= 0 || remoteTotal <= 0 {
		return nil, errors.New("the split gives the workers nothing")
	}

	p := &Plan{GPULayers: -1}
	if !o.NoLocal && layers > 0 {
		p.LocalLayers = int(math.Round(float64(layers) * weights[nRemote] / total))
		if p.LocalLayers > 0 {
			p.GPULayers = layers - p.LocalLayers
		}
	}
	split := blockSplit(weights[:nRemote], layers, p.GPULayers)
	splitTotal := 0.0
	for _, v := range split {
		splitTotal += v
	}
	for i, n := range c.nodes {
		p.Devices = append(p.Devices, n.Devices()[0].Name)
		p.TensorSplit = append(p.TensorSplit, float32(split[i]))
	}

	cum := make([]float64, nRemote)
	acc := 0.0
	for i := range cum {
		acc += split[i]
		cum[i] = acc / splitTotal
	}
	cum[nRemote-1] = 1
	addrs := make([]string, nRemote)
	for i, n := range c.nodes {
		addrs[i] = n.Addr
	}
	offload := uint64(layers + 1)
	if p.GPULayers >= 0 {
		offload = uint64(p.GPULayers)
	}
	est := f.EstimateLLaMACppRun(
		parser.WithLLaMACppContextSize(int32(o.CtxSize*max(o.Parallel, 1))),
		parser.WithRPCServers(addrs),
		parser.WithTensorSplitFraction(cum),
		parser.WithLLaMACppOffloadLayers(offload),
	)
	for i, n := range c.nodes {
		s := Share{Endpoint: c.Endpoints[i], Fraction: weights[i] / total, Free: free[i]}
		for _, d := range est.Devices {
			if d.Remote && d.Endpoint == n.Addr {
				s.Layers = int(d.HandleLayers)
				s.Output = d.HandleOutputLayer
				s.Weights = uint64(d.Weight.Sum())
				s.KV = uint64(d.KVCache.Sum())
				// One compute buffer per slot context.
				s.Compute = uint64(d.Computation.Sum()) * uint64(max(o.Parallel, 1))
				break
			}
		}
		s.Need = s.Weights + s.KV + s.Compute
		p.Shares = append(p.Shares, s)
	}
	for _, s := range p.Shares {
		if s.Need > s.Free {
			return p, &FitError{Share: s}
		}
	}
	return p, nil
}

// blockSplit is the tensor split to hand llama.cpp (and gguf-parser-go) for
// the given worker weights: each worker's number of blocks, apportioned by
// largest remainder, the output layer counted on the worker with the last
// block when it is offloaded (gpuLayers < 0).
//
// Both cut the offloaded layers at the split's cumulative fractions, and an
// offloaded output layer counts as one layer more, so weights as fractions
// do not give the blocks asked for: 1,1 over 2 blocks gave the first worker
// both blocks and the second only the output layer (8 blocks: 5 and 3). With
// whole counts the cut points fall exactly between blocks (layer i of n goes
// to the first device whose cumulative count / n exceeds i / n, compared in
// the same floating-point operations), so 1,1 gives 1 and 1, 4 and 4.
func blockSplit(weights []float64, layers, gpuLayers int) []float64 {
	blocks := layers
	if gpuLayers >= 0 {
		blocks = gpuLayers
	}
	split := make([]float64, len(weights))
	if blocks <= 0 {
		copy(split, weights)
		return split
	}
	last := 0
	for i, n := range apportion(weights, blocks) {
		split[i] = float64(n)
		if n > 0 {
			last = i
		}
	}
	if gpuLayers < 0 {
		split[last]++
	}
	return split
}

// apportion divides n items by the weights (not all zero): each gets the
// floor of its exact share, and what is left goes to the largest
// remainders, the first on ties.
func apportion(weights []float64, n int) []int {
	total := 0.0
	for _, w := range weights {
		total += w
	}
	out := make([]int, len(weights))
	rem := make([]float64, len(weights))
	left := n
	for i, w := range weights {
		exact := float64(n) * w / total
		out[i] = int(math.Floor(exact))
		rem[i] = exact - float64(out[i])
		left -= out[i]
	}
	for ; left > 0; left-- {
		best := 0
		for i := range rem {
			if rem[i] > rem[best] {
				best = i
			}
		}
		out[best]++
		rem[best] = -1
	}
	return out
}

// String summarises a plan for the log.
func (p *Plan) String() string {
	var parts []string
	for _, s := range p.Shares {
		parts = append(parts, fmt.Sprintf("%s: %d layers, ~%s of %s free", s.Addr, s.Layers, mib(s.Need), mib(s.Free)))
	}
	if p.LocalLayers > 0 {
		parts = append(parts, fmt.Sprintf("local: %d layers", p.LocalLayers))
	}
	return strings.Join(parts, "; ")
}
