package compute

import (
	"encoding/binary"
	"fmt"
	"math/bits"

	"github.com/boxproj/box/ggml"
	"github.com/boxproj/box/rpc"
)

const (
	typeF32 = 0
	typeI32 = 26
	typeI64 = 27

	// Flags known at 3.6.0; bit 16 (COMPUTE) comes from newer clients and
	// means nothing to this ggml, so it is dropped.
	knownFlags = 1 | 2 | 4 | 8
)

// violation is a protocol error that closes the connection.
func violation(cmd rpc.Cmd, kind, format string, args ...any) *rpc.ProtocolError {
	return &rpc.ProtocolError{Cmd: cmd, Kind: kind, Msg: fmt.Sprintf(format, args...)}
}

// unsupportedError is an op or type the client's protocol has and this
// worker's ggml lacks: the connection ends as unsupported-op, naming it.
type unsupportedError struct{ msg string }

func (e *unsupportedError) Error() string { return e.msg }

// localize turns the client's op id into this ggml's (in place; each wire
// tensor is resolved once), and refuses, by name, an op or type that this
// ggml does not have.
func (c *conn) localize(cmd rpc.Cmd, t *rpc.Tensor) error {
	if !c.ops.Identity() {
		op, ok := c.ops.ToLocal(t.Op)
		if !ok {
			if int(t.Op) < c.ops.Peer.Count() {
				return &unsupportedError{fmt.Sprintf("tensor %q: op %s (%d at protocol %s) is not in this worker's ggml (llama.cpp %s, %d ops)",
					t.NameString(), c.ops.Peer.Name(t.Op), t.Op, c.proto, "ec98e2002", rpc.EmbeddedOps.Count())}
			}
			return violation(cmd, "op", "tensor %q: op %d out of range at protocol %s", t.NameString(), t.Op, c.proto)
		}
		t.Op = op
	}
	if _, _, ok := rpc.TypeInfo(t.Type); !ok {
		if name := rpc.PeerTypeName(c.proto, t.Type); name != rpc.TypeName(t.Type) {
			return &unsupportedError{fmt.Sprintf("tensor %q: type %s (%d at protocol %s) is not in this worker's ggml",
				t.NameString(), name, t.Type, c.proto)}
		}
	}
	return nil
}

// extent is the number of bytes from a tensor's data pointer that ggml may
// touch: ggml_nbytes, widened to contiguous rows, because many kernels read
// a row as ne[0] packed elements whatever nb[0] says.
func extent(t *rpc.Tensor, blck, tsize uint64) (uint64, bool) {
	for _, n := range t.NE {
		if n == 0 {
			return 0, true
		}
	}
	var ggmlN, rows uint64
	var carry uint64
	add := func(acc *uint64, v uint64) {
		var c uint64
		*acc, c = bits.Add64(*acc, v, 0)
		carry |= c
	}
	mul := func(a, b uint64) uint64 {
		hi, lo := bits.Mul64(a, b)
		carry |= hi
		return lo
	}
	ne0, nb0 := uint64(t.NE[0]), uint64(t.NB[0])
	if blck == 1 {
		add(&ggmlN, tsize)
		add(&ggmlN, mul(ne0-1, nb0))
	} else {
		add(&ggmlN, mul(ne0, nb0)/blck)
	}
	add(&rows, mul(ne0/blck, tsize))
	for i := 1; i < 4; i++ {
		step := mul(uint64(t.NE[i])-1, uint64(t.NB[i]))
		add(&ggmlN, step)
		add(&rows, step)
	}
	return max(ggmlN, rows), carry == 0
}

// resolveTensor validates one wire tensor against the connection's buffers
// and turns it into a spec whose data lies inside a buffer it owns.
func (c *conn) resolveTensor(cmd rpc.Cmd, t *rpc.Tensor, needBuffer bool) (ggml.TensorSpec, *binding, uint64, error) {
	spec := ggml.TensorSpec{ViewSrc: -1}
	for i := range spec.Src {
		spec.Src[i] = -1
	}
	if err := c.localize(cmd, t); err != nil {
		return spec, nil, 0, err
	}
	blck, tsize, ok := rpc.TypeInfo(t.Type)
	if !ok {
		return spec, nil, 0, violation(cmd, "type", "tensor %q: type %d is not a ggml type at protocol 3.6.0", t.NameString(), t.Type)
	}
	if t.NE[0]%uint32(blck) != 0 {
		return spec, nil, 0, violation(cmd, "shape", "tensor %q: ne[0]=%d is not a multiple of the block size %d", t.NameString(), t.NE[0], blck)
	}
	if t.Op >= rpc.OpCount {
		return spec, nil, 0, violation(cmd, "op", "tensor %q: op %d out of range", t.NameString(), t.Op)
	}
	n, ok := extent(t, uint64(blck), uint64(tsize))
	if !ok {
		return spec, nil, 0, violation(cmd, "shape", "tensor %q: size overflows", t.NameString())
	}
	var b *binding
	if t.Buffer != 0 {
		b = c.buffers[t.Buffer]
		if b == nil {
			return spec, nil, 0, violation(cmd, "buffer", "tensor %q names buffer %#x, which this connection does not own", t.NameString(), t.Buffer)
		}
		if t.Data < b.vbase || t.Data-b.vbase > b.size || n > b.size-(t.Data-b.vbase) {
			return spec, nil, 0, violation(cmd, "range", "tensor %q: %d bytes at %#x lie outside its buffer [%#x, %#x)", t.NameString(), n, t.Data, b.vbase, b.vbase+b.size)
		}
		// Elements cannot outnumber what the buffer could hold densely: a
		// stride-0 tensor of 2^32 rows over a few bytes would be a valid
		// extent but keep a device busy for hours.
		if hi, dense := bits.Mul64(nelements(t)/uint64(blck), uint64(tsize)); hi != 0 || dense > b.size {
			return spec, nil, 0, violation(cmd, "shape", "tensor %q: %d elements do not fit its %d-byte buffer", t.NameString(), nelements(t), b.size)
		}
		if b.buf == nil && needBuffer {
			return spec, nil, 0, violation(cmd, "buffer", "tensor %q is in buffer %#x, which has size 0", t.NameString(), t.Buffer)
		}
		spec.Buffer = b.buf
		spec.Offset = t.Data - b.vbase
	} else {
		if t.Data != 0 {
			return spec, nil, 0, violation(cmd, "buffer", "tensor %q has a data address but no buffer", t.NameString())
		}
		if needBuffer {
			return spec, nil, 0, violation(cmd, "buffer", "tensor %q has no buffer", t.NameString())
		}
	}
	spec.Type = t.Type
	for d := 0; d < 4; d++ {
		spec.NE[d] = int64(t.NE[d])
		spec.NB[d] = uint64(t.NB[d])
	}
	spec.Op = t.Op
	spec.OpParams = t.OpParams
	spec.Flags = t.Flags & knownFlags
	spec.ViewOffs = t.ViewOffs
	spec.Name = t.Name
	return spec, b, n, nil
}

// nelements counts a tensor's elements, saturating instead of wrapping.
func nelements(t *rpc.Tensor) uint64 {
	n := uint64(1)
	for _, ne := range t.NE {
		hi, lo := bits.Mul64(n, uint64(ne))
		if hi != 0 {
			return ^uint64(0)
		}
		n = lo
	}
	return n
}

func sameShape(a, b *rpc.Tensor) bool { return a.NE == b.NE }

// canRepeat reports whether b broadcasts over a (ggml_can_repeat(b, a)).
func canRepeat(b, a *rpc.Tensor) bool {
	for d := 0; d < 4; d++ {
		if b.NE[d] == 0 || a.NE[d]%b.NE[d] != 0 {
			return false
		}
	}
	return true
}

func opParam(t *rpc.Tensor, i int) int32 { return int32(binary.LittleEndian.Uint32(t.OpParams[4*i:])) }

// indexCheck is a GET_ROWS/SET_ROWS index tensor that is an input of the
// graph (not computed in it): its values are checked before every compute,
// since the CPU kernels assert that each index is in range.
type indexCheck struct {
	b      *binding
	offset uint64
	ne     [4]uint32
	nb     [4]uint32
	wide   bool   // i64
	limit  uint64 // exclusive
}

func (ic indexCheck) verify() error {
	if !ic.b.buf.IsHost() {
		return nil // device kernels do not abort the process
	}
	// The tensor's extent was checked against the buffer when the graph
	// was accepted, and buffers of a stored graph cannot be freed under it.
	var ext uint64
	for d := 0; d < 4; d++ {
		ext += uint64(ic.ne[d]-1) * uint64(ic.nb[d])
	}
	if ic.wide {
		ext += 8
	} else {
		ext += 4
	}
	data := ic.b.buf.HostBytes(ic.offset, ext)
	for i3 := uint64(0); i3 < uint64(ic.ne[3]); i3++ {
		for i2 := uint64(0); i2 < uint64(ic.ne[2]); i2++ {
			for i1 := uint64(0); i1 < uint64(ic.ne[1]); i1++ {
				for i0 := uint64(0); i0 < uint64(ic.ne[0]); i0++ {
					o := i0*uint64(ic.nb[0]) + i1*uint64(ic.nb[1]) + i2*uint64(ic.nb[2]) + i3*uint64(ic.nb[3])
					var v int64
					if ic.wide {
						v = int64(binary.LittleEndian.Uint64(data[o:]))
					} else {
						v = int64(int32(binary.LittleEndian.Uint32(data[o:])))
					}
					if v < 0 || uint64(v) >= ic.limit {
						return fmt.Errorf("row index %d at [%d,%d,%d,%d] is outside [0, %d)", v, i0, i1, i2, i3, ic.limit)
					}
				}
			}
		}
	}
	return nil
}
