package remote

/*
#include <stdlib.h>
#include "glue.h"
*/
import "C"

import (
	"unsafe"

	"github.com/boxproj/box/rpc"
)

// wireTensor describes t for the worker. Tensors outside our buffers get
// buffer 0 and data 0 (a worker refuses them in graphs, as it should).
// node sets the COMPUTE flag newer servers need (a 3.6.0 worker ignores it).
// The op is numbered as the worker's protocol numbers it (m).
func wireTensor(t *C.struct_ggml_tensor, node bool, m *rpc.OpMap) rpc.Tensor {
	var w rpc.Tensor
	w.ID = uint64(uintptr(unsafe.Pointer(t)))
	w.Type = uint32(t._type)
	if t.buffer != nil {
		if _, ours := ourBufts.Load(t.buffer.buft); ours {
			w.Buffer = uint64((*C.box_rbuf)(t.buffer.context).remote)
			w.Data = uint64(uintptr(t.data))
		}
	}
	for i := 0; i < 4; i++ {
		w.NE[i] = uint32(t.ne[i])
		w.NB[i] = uint32(t.nb[i])
	}
	w.Op = uint32(t.op)
	if m != nil && !m.Identity() {
		// Ops the peer lacks are never placed there (supports_op), so a
		// missing one is a leaf's op, which the worker does not run.
		if op, ok := m.ToPeer(w.Op); ok {
			w.Op = op
		}
	}
	params := unsafe.Slice((*byte)(unsafe.Pointer(&t.op_params[0])), len(w.OpParams))
	copy(w.OpParams[:], params)
	w.Flags = int32(t.flags)
	if node {
		w.Flags |= rpc.FlagCompute
	}
	for j := 0; j < rpc.MaxSrc; j++ {
		if s := t.src[j]; s != nil {
			w.Src[j] = uint64(uintptr(unsafe.Pointer(s)))
		}
	}
	if t.view_src != nil {
		w.ViewSrc = uint64(uintptr(unsafe.Pointer(t.view_src)))
	}
	w.ViewOffs = uint64(t.view_offs)
	name := unsafe.Slice((*byte)(unsafe.Pointer(&t.name[0])), len(w.Name)-1)
	copy(w.Name[:], name)
	return w
}

// serializeGraph lists g's nodes and every tensor reachable from them
// through sources and views, sources first, each once.
// With useCount (5.1 and later) each tensor carries how many nodes use it.
func serializeGraph(g *C.struct_ggml_cgraph, m *rpc.OpMap, useCount bool) ([]uint64, []rpc.Tensor) {
	n := int(C.ggml_graph_n_nodes(g))
	nodes := make([]uint64, 0, n)
	isNode := make(map[*C.struct_ggml_tensor]bool, n)
	for i := 0; i < n; i++ {
		isNode[C.ggml_graph_node(g, C.int(i))] = true
	}
	uses := map[*C.struct_ggml_tensor]int32{}
	if useCount {
		for i := 0; i < n; i++ {
			t := C.ggml_graph_node(g, C.int(i))
			for j := 0; j < rpc.MaxSrc; j++ {
				if s := t.src[j]; s != nil {
					uses[s]++
				}
			}
		}
	}
	seen := make(map[*C.struct_ggml_tensor]bool, 2*n)
	tensors := make([]rpc.Tensor, 0, 2*n)
	var add func(t *C.struct_ggml_tensor)
	add = func(t *C.struct_ggml_tensor) {
		if t == nil || seen[t] {
			return
		}
		seen[t] = true
		for j := 0; j < rpc.MaxSrc; j++ {
			add(t.src[j])
		}
		add(t.view_src)
		w := wireTensor(t, isNode[t], m)
		w.UseCount = uses[t]
		tensors = append(tensors, w)
	}
	for i := 0; i < n; i++ {
		t := C.ggml_graph_node(g, C.int(i))
		add(t)
		nodes = append(nodes, uint64(uintptr(unsafe.Pointer(t))))
	}
	return nodes, tensors
}
