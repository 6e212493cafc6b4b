package rpc

import (
	"fmt"
	"strconv"
	"strings"
)

// Version is a ggml RPC protocol version (the HELLO answer).
//
// What changes with it (see docs/protocol.md):
//
//	3.6.x  HELLO has no payload, its answer is 3 bytes
//	4.0    HELLO carries 24 bytes of transport caps; the answer is 28 bytes
//	       (major, minor, patch, a pad byte, 24 bytes of caps)
//	5.0    MEMSET_TENSOR (17): tensor, offset u64, size u64, value u8
//	5.1    the 4 bytes after a tensor's name are its use_count (i32)
//	6.0    FREE_BUFFER, BUFFER_CLEAR, INIT_TENSOR and MEMSET_TENSOR get no
//	       answer; a client sends commands ahead of reading answers
//	7.0    a SET_TENSOR carries a cache flag (u8) between the tensor and
//	       the offset
//
// The op enum is renumbered by some patch releases, which the protocol
// does not check: see OpTableFor.
type Version struct {
	Major, Minor, Patch uint8
}

// Versions box knows by name.
var (
	V3_6 = Version{3, 6, 0}
	V7_0 = Version{7, 0, 0}
	// Newest is the version a box worker answers a 4.0-or-newer HELLO with
	// unless told otherwise (--protocol).
	Newest = V7_0
)

func (v Version) String() string { return fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Patch) }

// Less orders versions.
func (v Version) Less(w Version) bool {
	if v.Major != w.Major {
		return v.Major < w.Major
	}
	if v.Minor != w.Minor {
		return v.Minor < w.Minor
	}
	return v.Patch < w.Patch
}

func (v Version) atLeast(major, minor uint8) bool {
	return v.Major > major || (v.Major == major && v.Minor >= minor)
}

// Caps reports whether HELLO carries transport caps (4.0 and later).
func (v Version) Caps() bool { return v.Major >= 4 }

// HasMemset reports whether MEMSET_TENSOR exists (5.0 and later).
func (v Version) HasMemset() bool { return v.Major >= 5 }

// HasUseCount reports whether a tensor carries its use count (5.1 and later).
func (v Version) HasUseCount() bool { return v.atLeast(5, 1) }

// CacheFlag reports whether SET_TENSOR carries a cache flag (7.0 and later).
func (v Version) CacheFlag() bool { return v.Major >= 7 }

// Known reports whether cmd exists at v.
func (v Version) Known(cmd Cmd) bool {
	return cmd < CmdCount || (cmd == CmdMemsetTensor && v.HasMemset())
}

// Replies reports whether the server answers cmd at v.
func (v Version) Replies(cmd Cmd) bool {
	switch cmd {
	case CmdSetTensor, CmdGraphCompute, CmdGraphRecompute:
		return false
	case CmdFreeBuffer, CmdBufferClear, CmdInitTensor, CmdMemsetTensor:
		return v.Major < 6
	}
	return v.Known(cmd)
}

// SetTensorHeaderSize is the fixed part of a SET_TENSOR payload at v.
func (v Version) SetTensorHeaderSize() int {
	if v.CacheFlag() {
		return SetTensorHeaderSize + 1
	}
	return SetTensorHeaderSize
}

// HelloRespSize is the size of the HELLO answer at v.
func (v Version) HelloRespSize() int {
	if v.Caps() {
		return 4 + ConnCapsSize
	}
	return 3
}

// Supported reports whether box speaks v: 3.6.x, 4.0.x, 5.0.x, 5.1.x, 6.0.x
// and 7.0.x (for 3.6 and 4.0 up to the patches whose op tables it has).
func (v Version) Supported() bool {
	_, ok := OpTableFor(v)
	return ok
}

// SupportedVersions names the versions box speaks, for people (box
// version, docs): every version Supported accepts, patch ranges folded.
func SupportedVersions() []string {
	var out []string
	for _, mm := range [][2]uint8{{3, 6}, {4, 0}, {5, 0}, {5, 1}, {6, 0}, {7, 0}} {
		var patches []uint8
		for p := 0; p < 16; p++ {
			if (Version{mm[0], mm[1], uint8(p)}).Supported() {
				patches = append(patches, uint8(p))
			}
		}
		switch {
		case len(patches) == 0:
		case mm[0] >= 5 && len(patches) == 16:
			out = append(out, fmt.Sprintf("%d.%d.x", mm[0], mm[1]))
		case len(patches) == 1:
			out = append(out, Version{mm[0], mm[1], patches[0]}.String())
		default:
			out = append(out, fmt.Sprintf("%d.%d.%d-%d.%d.%d", mm[0], mm[1], patches[0], mm[0], mm[1], patches[len(patches)-1]))
		}
	}
	return out
}

// ParseVersion reads "7", "5.1", "4.0.3" (missing parts are 0, except that
// a bare 4 means 4.0.4, the newest 4.0 op table, and a bare 5 means 5.1.0).
func ParseVersion(s string) (Version, error) {
	parts := strings.Split(strings.TrimSpace(s), ".")
	if len(parts) > 3 || parts[0] == "" {
		return Version{}, fmt.Errorf("protocol version %q: want MAJOR[.MINOR[.PATCH]]", s)
	}
	var n [3]uint8
	for i, p := range parts {
		x, err := strconv.ParseUint(p, 10, 8)
		if err != nil {
			return Version{}, fmt.Errorf("protocol version %q: %q is not a number", s, p)
		}
		n[i] = uint8(x)
	}
	v := Version{n[0], n[1], n[2]}
	if len(parts) == 1 {
		switch v.Major {
		case 3:
			v = V3_6
		case 4:
			v = Version{4, 0, 4}
		case 5:
			v = Version{5, 1, 0}
		}
	}
	if !v.Supported() {
		return Version{}, fmt.Errorf("protocol version %s: box speaks 3.6.0, 3.6.1, 4.0.0 to 4.0.4, 5.0.0, 5.0.1, 5.1.x, 6.0.x and 7.0.x", v)
	}
	return v, nil
}

// ConnCapsSize is the size of the transport caps in HELLO (4.0 and later).
// All zero means TCP only.
const ConnCapsSize = 24

// CmdMemsetTensor fills part of a tensor with a byte (5.0 and later).
const CmdMemsetTensor Cmd = 17

// MemsetTensorReqSize is the size of a MEMSET_TENSOR payload.
const MemsetTensorReqSize = TensorSize + 8 + 8 + 1

// MemsetTensorReq is the MEMSET_TENSOR request (313 bytes).
type MemsetTensorReq struct {
	Tensor
	Offset uint64
	Size   uint64
	Value  uint8
}

func (r MemsetTensorReq) AppendTo(b []byte) []byte {
	b = r.Tensor.AppendTo(b)
	b = le.AppendUint64(b, r.Offset)
	b = le.AppendUint64(b, r.Size)
	return append(b, r.Value)
}
func (r MemsetTensorReq) Encode() []byte { return encode(r, MemsetTensorReqSize) }

// DecodeMemsetTensor decodes a MEMSET_TENSOR request payload.
func DecodeMemsetTensor(p []byte) (MemsetTensorReq, error) {
	if len(p) != MemsetTensorReqSize {
		return MemsetTensorReq{}, sizeErr(CmdMemsetTensor, len(p), MemsetTensorReqSize)
	}
	var r MemsetTensorReq
	getTensor(&r.Tensor, p)
	r.Offset = le.Uint64(p[TensorSize:])
	r.Size = le.Uint64(p[TensorSize+8:])
	r.Value = p[TensorSize+16]
	return r, nil
}

// AppendSetTensorHeader appends the fixed part of a SET_TENSOR payload in
// v's layout: the tensor, at 7.0 and later the cache flag, then the offset.
func AppendSetTensorHeader(b []byte, v Version, t *Tensor, cache bool, off uint64) []byte {
	b = t.AppendTo(b)
	if v.CacheFlag() {
		var f byte
		if cache {
			f = 1
		}
		b = append(b, f)
	}
	return le.AppendUint64(b, off)
}

// DecodeSetTensorHeaderAt decodes the fixed part of a SET_TENSOR payload in
// v's layout (p is at least v.SetTensorHeaderSize() bytes); cache is the
// 7.0 cache flag (false before 7.0).
func DecodeSetTensorHeaderAt(p []byte, v Version) (h SetTensorHeader, cache bool, err error) {
	n := v.SetTensorHeaderSize()
	if len(p) < n {
		return h, false, protoErr(CmdSetTensor, KindSize, "payload is %d bytes, want at least %d", len(p), n)
	}
	getTensor(&h.Tensor, p)
	if v.CacheFlag() {
		cache = p[TensorSize] != 0
	}
	h.Offset = le.Uint64(p[n-8:])
	return h, cache, nil
}

// UseCount returns the use count of a serialized tensor (5.1 and later;
// before that the bytes are padding).
func UseCount(b []byte) int32 { return int32(le.Uint32(b[292:])) }

// ---- op tables ----

// OpTable is the op enum of one ggml version: Names[id] is the op's name.
type OpTable struct {
	Names []string
	ids   map[string]uint32
}

func newOpTable(names []string) *OpTable {
	t := &OpTable{Names: names, ids: make(map[string]uint32, len(names))}
	for i, n := range names {
		t.ids[n] = uint32(i)
	}
	return t
}

// Name is the name of op id, or "op(<n>)" when the table has no such id.
func (t *OpTable) Name(id uint32) string {
	if int(id) < len(t.Names) {
		return t.Names[id]
	}
	return "op(" + strconv.FormatUint(uint64(id), 10) + ")"
}

// ID is the id of the op named name in this table.
func (t *OpTable) ID(name string) (uint32, bool) {
	id, ok := t.ids[name]
	return id, ok
}

// Count is the number of ops (GGML_OP_COUNT).
func (t *OpTable) Count() int { return len(t.Names) }

var (
	tab95         = newOpTable(ops95)
	tab96         = newOpTable(ops96)
	tab97         = newOpTable(ops97)
	tab98         = newOpTable(ops98)
	tab101        = newOpTable(ops101)
	tab102banded  = newOpTable(ops102banded)
	tab102convrot = newOpTable(ops102convrot)
)

// EmbeddedOps is the op table of the ggml box embeds: the numbers box's own
// code (OpMulMat, ...) and its ggml use.
var EmbeddedOps = tab95

// OpTableFor is the op table of a peer that answers HELLO with v. Upstream
// renumbered ops within 3.6 and 4.0 by patch (the client never compares
// patches), so those are chosen by patch; 5.1, 6.0 and 7.0 share 5.1's
// table (101 ops, as their headers assert). ok is false for a version box
// has no table for.
func OpTableFor(v Version) (*OpTable, bool) {
	switch {
	case v.Major == 3 && v.Minor == 6:
		switch v.Patch {
		case 0:
			return tab95, true
		case 1:
			return tab96, true
		}
	case v.Major == 4 && v.Minor == 0:
		switch v.Patch {
		case 0:
			return tab96, true
		case 1:
			return tab97, true
		case 2:
			return tab98, true
		case 3:
			return tab101, true
		case 4:
			return tab102banded, true
		}
	case v.Major == 5 && v.Minor == 0:
		switch v.Patch {
		case 0:
			return tab101, true
		case 1:
			return tab102convrot, true
		}
	case v.Major == 5 && v.Minor == 1, v.Major == 6 && v.Minor == 0, v.Major == 7 && v.Minor == 0:
		return tab101, true
	}
	return nil, false
}

// OpMap translates op ids between a peer's table and box's, by name.
type OpMap struct {
	Peer, Local *OpTable
	toLocal     []int32 // -1: box's ggml has no such op
	toPeer      []int32 // -1: the peer has no such op
}

// NewOpMap maps peer ids to local ids and back.
func NewOpMap(peer, local *OpTable) *OpMap {
	m := &OpMap{Peer: peer, Local: local, toLocal: make([]int32, len(peer.Names)), toPeer: make([]int32, len(local.Names))}
	for i, n := range peer.Names {
		m.toLocal[i] = -1
		if id, ok := local.ID(n); ok {
			m.toLocal[i] = int32(id)
		}
	}
	for i, n := range local.Names {
		m.toPeer[i] = -1
		if id, ok := peer.ID(n); ok {
			m.toPeer[i] = int32(id)
		}
	}
	return m
}

// ToLocal translates a peer op id; ok is false when box's ggml lacks it.
func (m *OpMap) ToLocal(id uint32) (uint32, bool) {
	if int(id) >= len(m.toLocal) || m.toLocal[id] < 0 {
		return 0, false
	}
	return uint32(m.toLocal[id]), true
}

// ToPeer translates a local op id; ok is false when the peer lacks it.
func (m *OpMap) ToPeer(id uint32) (uint32, bool) {
	if int(id) >= len(m.toPeer) || m.toPeer[id] < 0 {
		return 0, false
	}
	return uint32(m.toPeer[id]), true
}

// Identity reports whether both tables are the same.
func (m *OpMap) Identity() bool { return m.Peer == m.Local }

// ---- types ----

// Types that newer ggml versions added and box's ggml lacks, by number
// (upstream appends types, so numbers never move).
const (
	TypeNVFP4 = 40 // 4.0.0 and later
	TypeQ1_0  = 41 // 4.0.0 and later
	TypeQ2_0  = 42 // 4.0.2 and later
)

// PeerTypeName names a type number as a peer at v knows it; for a type
// box's ggml has, it is TypeName.
func PeerTypeName(v Version, t uint32) string {
	newer := v.Major >= 5 || (v.Major == 4 && (t < TypeQ2_0 || v.Patch >= 2))
	switch {
	case t == TypeNVFP4 && newer:
		return "nvfp4"
	case t == TypeQ1_0 && newer:
		return "q1_0"
	case t == TypeQ2_0 && newer:
		return "q2_0"
	}
	return TypeName(t)
}
