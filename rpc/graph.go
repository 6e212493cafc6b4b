package rpc

// GraphLimits bounds what DecodeGraphCompute accepts. A zero field means "no
// limit other than the payload length" (the decoder never allocates more
// than proportionally to the payload anyway).
type GraphLimits struct {
	MaxNodes   uint32
	MaxTensors uint32
}

// DefaultGraphLimits are generous limits for a worker: llama.cpp graphs use
// at most max(65536, 5 x model tensors) nodes.
var DefaultGraphLimits = GraphLimits{MaxNodes: 1 << 20, MaxTensors: 1 << 21}

// GraphComputeReq is the GRAPH_COMPUTE payload:
//
//	0            device    u32
//	4            n_nodes   u32
//	8            node ids  u64 x n_nodes (execution order)
//	8+8n         n_tensors u32
//	12+8n        tensors   296 x n_tensors
//
// Total 12 + 8*n_nodes + 296*n_tensors bytes.
type GraphComputeReq struct {
	Device  uint32
	Nodes   []uint64
	Tensors []Tensor
}

// Size returns the encoded payload size.
func (g GraphComputeReq) Size() int { return 12 + 8*len(g.Nodes) + TensorSize*len(g.Tensors) }

func (g GraphComputeReq) AppendTo(b []byte) []byte {
	n := len(b)
	b = grow(b, g.Size())
	p := b[n:]
	le.PutUint32(p, g.Device)
	le.PutUint32(p[4:], uint32(len(g.Nodes)))
	p = p[8:]
	for _, id := range g.Nodes {
		le.PutUint64(p, id)
		p = p[8:]
	}
	le.PutUint32(p, uint32(len(g.Tensors)))
	p = p[4:]
	for i := range g.Tensors {
		g.Tensors[i].Put(p)
		p = p[TensorSize:]
	}
	return b
}

func (g GraphComputeReq) Encode() []byte { return g.AppendTo(make([]byte, 0, g.Size())) }

// DecodeGraphCompute decodes a GRAPH_COMPUTE payload.
//
// Checks, in order (all sizes computed in 64 bits, so nothing overflows):
// payload >= 8; n_nodes <= limits.MaxNodes; payload >= 12 + 8*n_nodes;
// n_tensors <= limits.MaxTensors; payload >= 12 + 8*n_nodes +
// 296*n_tensors. Counts are refused before anything is allocated, and the
// slices allocated are bounded by the payload length.
//
// Like the reference server, trailing bytes after the tensor array are
// accepted and ignored (re-encoding drops them).
//
// The decoder checks shape only: node ids that are 0 or absent from the
// tensor array, duplicate ids, types and buffers are for the server to
// validate.
func DecodeGraphCompute(p []byte, limits GraphLimits) (GraphComputeReq, error) {
	if len(p) < 8 {
		return GraphComputeReq{}, protoErr(CmdGraphCompute, KindSize, "payload is %d bytes, want at least 8", len(p))
	}
	size := uint64(len(p))
	dev := le.Uint32(p)
	nNodes := le.Uint32(p[4:])
	if limits.MaxNodes != 0 && nNodes > limits.MaxNodes {
		return GraphComputeReq{}, protoErr(CmdGraphCompute, KindGraph, "n_nodes %d exceeds the limit %d", nNodes, limits.MaxNodes)
	}
	tensorsAt := 12 + 8*uint64(nNodes)
	if size < tensorsAt {
		return GraphComputeReq{}, protoErr(CmdGraphCompute, KindSize, "payload is %d bytes, too short for %d nodes (need %d)", size, nNodes, tensorsAt)
	}
	nTensors := le.Uint32(p[tensorsAt-4:])
	if limits.MaxTensors != 0 && nTensors > limits.MaxTensors {
		return GraphComputeReq{}, protoErr(CmdGraphCompute, KindGraph, "n_tensors %d exceeds the limit %d", nTensors, limits.MaxTensors)
	}
	total := tensorsAt + TensorSize*uint64(nTensors)
	if size < total {
		return GraphComputeReq{}, protoErr(CmdGraphCompute, KindSize, "payload is %d bytes, too short for %d nodes and %d tensors (need %d)", size, nNodes, nTensors, total)
	}
	g := GraphComputeReq{Device: dev}
	if nNodes > 0 {
		g.Nodes = make([]uint64, nNodes)
		q := p[8:]
		for i := range g.Nodes {
			g.Nodes[i] = le.Uint64(q[8*i:])
		}
	}
	if nTensors > 0 {
		g.Tensors = make([]Tensor, nTensors)
		q := p[tensorsAt:]
		for i := range g.Tensors {
			getTensor(&g.Tensors[i], q[TensorSize*i:])
		}
	}
	return g, nil
}
