package compute

import (
	"errors"
	"fmt"
	"io"

	"github.com/boxproj/box/ggml"
	"github.com/boxproj/box/rpc"
	"github.com/boxproj/box/worker/ctl"
)

func (c *conn) graphCompute(cmd rpc.Cmd, size uint64) error {
	if size > c.ini.MaxGraphBytes {
		return violation(cmd, "size", "graph of %d bytes exceeds the %d-byte limit", size, c.ini.MaxGraphBytes)
	}
	// The payload and its decoded form are memory the client makes the
	// worker hold: granted before a byte of the body is read.
	release, err := c.hold("GRAPH_COMPUTE", size*ctl.GraphCost)
	if err != nil {
		return err
	}
	defer release()
	p := make([]byte, size)
	if _, err := io.ReadFull(c.br, p); err != nil {
		return err
	}
	req, err := rpc.DecodeGraphCompute(p, rpc.GraphLimits{MaxNodes: 1 << 20, MaxTensors: 1 << 20})
	if err != nil {
		return err
	}
	d, _, err := c.openDevice(cmd, req.Device)
	if err != nil {
		return err
	}
	// A stored graph (for GRAPH_RECOMPUTE) is held until replaced.
	keep, err := c.hold("stored graph", uint64(len(req.Tensors))*ctl.StoredTensorCost)
	if err != nil {
		return err
	}
	g, err := c.buildGraph(cmd, d, &req)
	if err != nil {
		keep()
		return err
	}
	g.release = keep
	c.setGraph(d, g)
	return c.compute(cmd, d, g)
}

// buildGraph validates a whole graph message and rebuilds it for device d.
// Only tensors reachable from the nodes are used (and validated).
func (c *conn) buildGraph(cmd rpc.Cmd, d int, req *rpc.GraphComputeReq) (*storedGraph, error) {
	if len(req.Nodes) == 0 {
		return nil, violation(cmd, "graph", "graph has no nodes")
	}
	index := make(map[uint64]int, len(req.Tensors))
	for i := range req.Tensors {
		id := req.Tensors[i].ID
		if id == 0 {
			return nil, violation(cmd, "graph", "tensor %d has id 0", i)
		}
		if _, dup := index[id]; dup {
			return nil, violation(cmd, "graph", "tensor id %#x appears twice", id)
		}
		index[id] = i
	}

	// Walk from the nodes through sources and views without recursion, so a
	// long chain cannot exhaust a stack; order = first visit.
	order := make([]int, 0, len(req.Tensors)) // wire index by spec index
	specOf := make(map[int]int, len(req.Tensors))
	visit := func(id uint64) (int, error) {
		wi, ok := index[id]
		if !ok {
			return 0, violation(cmd, "graph", "tensor id %#x is referenced but not sent", id)
		}
		if si, seen := specOf[wi]; seen {
			return si, nil
		}
		specOf[wi] = len(order)
		order = append(order, wi)
		return specOf[wi], nil
	}
	nodes := make([]int32, len(req.Nodes))
	for i, id := range req.Nodes {
		if id == 0 {
			return nil, violation(cmd, "graph", "node %d has id 0", i)
		}
		si, err := visit(id)
		if err != nil {
			return nil, err
		}
		nodes[i] = int32(si)
	}
	specs := make([]ggml.TensorSpec, 0, len(order))
	var bindings []*binding
	var extents []uint64              // bytes from each tensor's data that ggml may touch
	for k := 0; k < len(order); k++ { // order grows as sources are found
		t := &req.Tensors[order[k]]
		spec, b, ext, err := c.resolveTensor(cmd, t, true)
		if err != nil {
			return nil, err
		}
		extents = append(extents, ext)
		for j, sid := range t.Src {
			if sid == 0 {
				continue
			}
			si, err := visit(sid)
			if err != nil {
				return nil, err
			}
			spec.Src[j] = int32(si)
		}
		if t.ViewSrc != 0 {
			si, err := visit(t.ViewSrc)
			if err != nil {
				return nil, err
			}
			spec.ViewSrc = int32(si)
		}
		specs = append(specs, spec)
		bindings = append(bindings, b)
	}
	if at := cyclic(specs); at >= 0 {
		return nil, violation(cmd, "graph", "tensor sources form a cycle through %q", req.Tensors[order[at]].NameString())
	}

	// Shape rules for nodes, and index tensors to check before compute.
	// Index values are checked unless a node computes them. A node whose op
	// computes nothing (NONE, or a view) still holds whatever the client
	// uploaded, so it counts as an input.
	produced := make(map[int32]bool, len(nodes))
	for _, n := range nodes {
		switch req.Tensors[order[n]].Op {
		case rpc.OpNone, rpc.OpView, rpc.OpReshape, rpc.OpPermute, rpc.OpTranspose:
		default:
			produced[n] = true
		}
	}
	var checks []indexCheck
	for pos, n := range nodes {
		t := &req.Tensors[order[n]]
		var srcs [10]*rpc.Tensor
		for j := range srcs {
			if s := specs[n].Src[j]; s >= 0 {
				srcs[j] = &req.Tensors[order[s]]
			}
		}
		if err := checkOp(t, srcs); err != nil {
			return nil, violation(cmd, "op", "node %q: %v", t.NameString(), err)
		}
		var idx int32 = -1
		var limit uint64
		switch t.Op {
		case rpc.OpGetRows:
			idx, limit = specs[n].Src[1], uint64(srcs[0].NE[1])
		case rpc.OpSetRows:
			idx, limit = specs[n].Src[1], uint64(t.NE[1])
		}
		if idx >= 0 && !produced[idx] {
			it := &req.Tensors[order[idx]]
			if nelements(it) > 0 {
				checks = append(checks, indexCheck{b: bindings[idx], offset: specs[idx].Offset, ne: it.NE, nb: it.NB,
					wide: it.Type == typeI64, limit: limit})
				// Indexes are checked before compute; a node that writes
				// over them before this one runs would change them after
				// the check. Nodes after it may reuse the memory: ggml-alloc
				// hands an input's bytes to a later node once its last
				// reader has run (it does so on GPU buffer types).
				for _, m := range nodes[:pos] {
					if produced[m] && bindings[m] == bindings[idx] &&
						overlaps(specs[m].Offset, extents[m], specs[idx].Offset, extents[idx]) {
						return nil, violation(cmd, "index", "node %q writes over the row indexes %q of node %q",
							req.Tensors[order[m]].NameString(), it.NameString(), t.NameString())
					}
				}
			}
		}
	}
	be := c.devs[d]
	g, err := be.BuildGraph(specs, nodes)
	if err != nil {
		var unsup ggml.ErrUnsupported
		if errors.As(err, &unsup) {
			t := &req.Tensors[order[nodes[unsup.Node]]]
			return nil, violation(cmd, "op", "node %q: op %d is not supported by device %s", t.NameString(), t.Op, be.Device.Name)
		}
		return nil, fmt.Errorf("build graph: %w", err)
	}
	return &storedGraph{g: g, indexes: checks, release: func() {}}, nil
}

// overlaps reports whether [a, a+an) and [b, b+bn) share a byte.
func overlaps(a, an, b, bn uint64) bool { return an > 0 && bn > 0 && a < b+bn && b < a+an }

// cyclic returns the index of a tensor on a cycle of src/view_src links,
// or -1.
func cyclic(specs []ggml.TensorSpec) int {
	const (
		white = iota
		grey
		black
	)
	color := make([]uint8, len(specs))
	type frame struct{ i, next int }
	for root := range specs {
		if color[root] != white {
			continue
		}
		stack := []frame{{root, 0}}
		color[root] = grey
		for len(stack) > 0 {
			f := &stack[len(stack)-1]
			s := &specs[f.i]
			if f.next > 10 {
				color[f.i] = black
				stack = stack[:len(stack)-1]
				continue
			}
			var dep int32
			if f.next < 10 {
				dep = s.Src[f.next]
			} else {
				dep = s.ViewSrc
			}
			f.next++
			// ggml_cast makes a CPY node its own second source (the
			// destination); a self-reference is how ggml says that.
			if dep < 0 || int(dep) == f.i {
				continue
			}
			switch color[dep] {
			case grey:
				return int(dep)
			case white:
				color[dep] = grey
				stack = append(stack, frame{int(dep), 0})
			}
		}
	}
	return -1
}

// compute runs a stored graph on device d. This process serves one
// connection, so nothing else uses the device here; other connections'
// processes time-share it, as any multi-process GPU use does.
func (c *conn) compute(cmd rpc.Cmd, d int, g *storedGraph) error {
	be := c.devs[d]
	for _, ic := range g.indexes {
		if err := ic.verify(); err != nil {
			return violation(cmd, "index", "%v", err)
		}
	}
	if err := be.Compute(g.g); err != nil {
		return violation(cmd, "compute", "%v", err)
	}
	return nil
}
