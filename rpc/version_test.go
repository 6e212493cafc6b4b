package rpc

import (
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"
)

// Every op table round-trips by name through box's: an op both have maps
// there and back to itself, one that box's ggml lacks maps nowhere.
func TestOpTablesRoundTripByName(t *testing.T) {
	for _, v := range []Version{V3_6, {3, 6, 1}, {4, 0, 0}, {4, 0, 1}, {4, 0, 2}, {4, 0, 3}, {4, 0, 4}, {5, 0, 0}, {5, 0, 1}, {5, 1, 0}, {6, 0, 0}, V7_0} {
		tab, ok := OpTableFor(v)
		if !ok {
			t.Fatalf("%s: no op table", v)
		}
		m := NewOpMap(tab, EmbeddedOps)
		missing := 0
		for id, name := range tab.Names {
			l, ok := m.ToLocal(uint32(id))
			if !ok {
				missing++
				if _, has := EmbeddedOps.ID(name); has {
					t.Errorf("%s: %s not mapped though box has it", v, name)
				}
				continue
			}
			if EmbeddedOps.Name(l) != name {
				t.Errorf("%s: %s maps to %s", v, name, EmbeddedOps.Name(l))
			}
			if back, ok := m.ToPeer(l); !ok || back != uint32(id) {
				t.Errorf("%s: %s does not map back (%d, %v)", v, name, back, ok)
			}
		}
		if got := tab.Count() - missing; got != EmbeddedOps.Count() {
			t.Errorf("%s: %d of box's %d ops in common", v, got, EmbeddedOps.Count())
		}
	}
	// The ids that moved: FLASH_ATTN_EXT is 73 at 3.6.0 and 4.0.3, 74 at
	// 4.0.1 (COL2IM_1D went in before it), 75 at 7.0.
	for _, c := range []struct {
		v    Version
		name string
		id   uint32
	}{{V3_6, "FLASH_ATTN_EXT", 73}, {Version{4, 0, 1}, "FLASH_ATTN_EXT", 74}, {V7_0, "FLASH_ATTN_EXT", 74},
		{V3_6, "GLU", 94}, {Version{4, 0, 0}, "GLU", 95}, {V7_0, "GLU", 100}, {Version{4, 0, 4}, "FLASH_ATTN_EXT_BANDED", 75}} {
		tab, _ := OpTableFor(c.v)
		if id, ok := tab.ID(c.name); !ok || id != c.id {
			t.Errorf("%s: %s is %d (%v), want %d", c.v, c.name, id, ok, c.id)
		}
	}
	if _, ok := OpTableFor(Version{4, 0, 9}); ok {
		t.Error("4.0.9 has a table")
	}
}

func TestVersionRules(t *testing.T) {
	for _, c := range []struct {
		v                       Version
		caps, memset, use, flag bool
		freeReplies             bool
		hdr                     int
	}{
		{V3_6, false, false, false, false, true, 304},
		{Version{4, 0, 3}, true, false, false, false, true, 304},
		{Version{5, 0, 0}, true, true, false, false, true, 304},
		{Version{5, 1, 0}, true, true, true, false, true, 304},
		{Version{6, 0, 0}, true, true, true, false, false, 304},
		{V7_0, true, true, true, true, false, 305},
	} {
		if c.v.Caps() != c.caps || c.v.HasMemset() != c.memset || c.v.HasUseCount() != c.use || c.v.CacheFlag() != c.flag ||
			c.v.Replies(CmdFreeBuffer) != c.freeReplies || c.v.SetTensorHeaderSize() != c.hdr {
			t.Errorf("%s: rules wrong", c.v)
		}
		if c.v.Known(CmdMemsetTensor) != c.memset || !c.v.Replies(CmdGetTensor) || c.v.Replies(CmdGraphCompute) {
			t.Errorf("%s: command rules wrong", c.v)
		}
	}
	for in, want := range map[string]Version{"7": V7_0, "6": {6, 0, 0}, "5": {5, 1, 0}, "4": {4, 0, 4}, "4.0.2": {4, 0, 2}, "3.6.1": {3, 6, 1}} {
		if v, err := ParseVersion(in); err != nil || v != want {
			t.Errorf("ParseVersion(%q) = %v, %v", in, v, err)
		}
	}
	for _, in := range []string{"8", "4.1", "x", "", "4.0.9"} {
		if _, err := ParseVersion(in); err == nil {
			t.Errorf("ParseVersion(%q) accepted", in)
		}
	}
}

func TestSetTensorAndMemsetLayouts(t *testing.T) {
	tn := Tensor{ID: 7, Type: TypeF32, Buffer: 3, Data: 0x1000, NE: [4]uint32{4, 1, 1, 1}, NB: [4]uint32{4, 16, 16, 16}}
	b := AppendSetTensorHeader(nil, V7_0, &tn, true, 12)
	if len(b) != 305 || b[TensorSize] != 1 || le.Uint64(b[TensorSize+1:]) != 12 {
		t.Fatalf("7.0 header: %d bytes, flag %d", len(b), b[TensorSize])
	}
	h, cache, err := DecodeSetTensorHeaderAt(b, V7_0)
	if err != nil || !cache || h.Offset != 12 || h.Tensor.ID != 7 {
		t.Fatalf("decode 7.0: %+v %v %v", h, cache, err)
	}
	b = AppendSetTensorHeader(nil, Version{6, 0, 0}, &tn, true, 12)
	if len(b) != 304 || le.Uint64(b[TensorSize:]) != 12 {
		t.Fatalf("6.0 header: %d bytes", len(b))
	}
	m := MemsetTensorReq{Tensor: tn, Offset: 4, Size: 8, Value: 0xab}.Encode()
	if len(m) != 313 || m[312] != 0xab {
		t.Fatalf("memset: %d bytes", len(m))
	}
	if r, err := DecodeMemsetTensor(m); err != nil || r.Offset != 4 || r.Size != 8 || r.Value != 0xab {
		t.Fatalf("decode memset: %+v %v", r, err)
	}
	tn.UseCount = 3
	if UseCount(tn.Encode()) != 3 {
		t.Fatal("use_count not written")
	}
}

// A dial that gives up on HELLO resets the connection: a reference
// rpc-server that reaches it later reads an error instead of writing an
// answer into a closed socket (SIGPIPE).
func TestAbandonedDialResets(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	// Nobody accepts yet: the connection waits in the backlog, as with a
	// busy rpc-server.
	_, err = Dial(testCtx(t), ln.Addr().String(), WithHandshakeTimeout(300*time.Millisecond), WithHello(false))
	if err == nil {
		t.Fatal("dial succeeded")
	}
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.ReadFull(c, make([]byte, RequestHeaderSize)) // the HELLO, still queued
	var rerr error
	for i := 0; i < 10 && rerr == nil; i++ {
		_, rerr = c.Write(make([]byte, 11))
		if rerr == nil {
			_, rerr = c.Read(make([]byte, 1))
		}
	}
	if !errors.Is(rerr, syscall.ECONNRESET) && !errors.Is(rerr, syscall.EPIPE) {
		t.Fatalf("server side saw %v, want a reset", rerr)
	}
}
