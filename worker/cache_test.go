package worker

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/boxproj/box/rpc"
)

// rawDialFrom connects from a given loopback source address (another
// tenant of the cache), HELLO done.
func rawDialFrom(t *testing.T, addr, from string) *rawConn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	rc := &rawConn{nc}
	rc.send(rpc.CmdHello, nil)
	io.ReadFull(nc, make([]byte, 11))
	return rc
}

// upload puts data into a fresh buffer of rc and returns the tensor.
func (rc *rawConn) upload(t *testing.T, data []byte) rpc.Tensor {
	t.Helper()
	n := uint64(len(data))
	h, base := rc.alloc(t, n)
	tt := rpc.Tensor{ID: 1, Type: 24, Buffer: h, Data: base, NE: [4]uint32{uint32(n), 1, 1, 1}, NB: [4]uint32{1, uint32(n), uint32(n), uint32(n)}}
	rc.send(rpc.CmdSetTensor, rpc.SetTensorReq{SetTensorHeader: rpc.SetTensorHeader{Tensor: tt}, Data: data}.Encode())
	rc.send(rpc.CmdDeviceCount, nil) // a barrier: the upload is done when this answers
	io.ReadFull(rc.Conn, make([]byte, 12))
	return tt
}

// cached asks SET_TENSOR_HASH for data's hash into tt.
func (rc *rawConn) cached(t *testing.T, tt rpc.Tensor, data []byte) bool {
	t.Helper()
	rc.send(rpc.CmdSetTensorHash, rpc.SetTensorHashReq{Tensor: tt, Hash: rpc.FNV1a64(data)}.Encode())
	var r [9]byte
	if _, err := io.ReadFull(rc.Conn, r[:]); err != nil {
		t.Fatal(err)
	}
	return r[8] == 1
}

func blob(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i)*31 + seed
	}
	return b
}

// The cache is bounded and evicts the least recently used entry; a client
// is served only entries its own network address wrote, unless the cache
// is shared.
func TestCacheBoundsAndTenants(t *testing.T) {
	const mb = 2 << 20
	t.Run("lru", func(t *testing.T) {
		dir := t.TempDir()
		w := startWorker(t, Config{CacheDir: dir, CacheMaxSize: 7 << 20})
		rc := rawDial(t, w.addr, true)
		var ds [][]byte
		var ts []rpc.Tensor
		for i := 0; i < 3; i++ {
			ds = append(ds, blob(mb, byte(i)))
			ts = append(ts, rc.upload(t, ds[i]))
		}
		if !rc.cached(t, ts[0], ds[0]) { // the first is now the most recently used
			t.Fatal("entry 0 not cached")
		}
		time.Sleep(20 * time.Millisecond)
		ds = append(ds, blob(mb, 3))
		ts = append(ts, rc.upload(t, ds[3])) // 4 x 2 MiB > 7 MiB: entry 1 goes
		got := []bool{}
		for i := range ds {
			got = append(got, rc.cached(t, ts[i], ds[i]))
		}
		if want := []bool{true, false, true, true}; !equalBools(got, want) {
			t.Fatalf("cached after eviction: %v, want %v", got, want)
		}
		if s := w.cache.Size(); s > 7<<20 {
			t.Fatalf("cache holds %d bytes, over its 7 MiB", s)
		}
	})
	t.Run("tenants", func(t *testing.T) {
		for _, shared := range []bool{false, true} {
			w := startWorker(t, Config{CacheDir: t.TempDir(), CacheShared: shared})
			// B, from another address, uploads data A will ask for.
			b := rawDialFrom(t, w.addr, "127.0.0.2")
			planted := blob(mb, 9)
			b.upload(t, planted)
			a := rawDialFrom(t, w.addr, "127.0.0.1")
			h, base := a.alloc(t, mb)
			tt := rpc.Tensor{ID: 1, Type: 24, Buffer: h, Data: base, NE: [4]uint32{mb, 1, 1, 1}, NB: [4]uint32{1, mb, mb, mb}}
			if got := a.cached(t, tt, planted); got != shared {
				t.Fatalf("shared %v: A served B's entry: %v", shared, got)
			}
		}
	})
	t.Run("full disk", func(t *testing.T) {
		dir := t.TempDir()
		if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", dir).CombinedOutput(); err != nil {
			t.Fatalf("mount tmpfs: %v %s (this test needs root, as in CI)", err, out)
		}
		t.Cleanup(func() { exec.Command("umount", dir).Run() })
		w := startWorker(t, Config{CacheDir: dir, CacheMaxSize: 100 << 20})
		rc := rawDial(t, w.addr, true)
		for i := 0; i < 2; i++ { // the second entry does not fit the disk
			data := blob(mb, byte(10+i))
			tt := rc.upload(t, data)
			rc.send(rpc.CmdGetTensor, rpc.GetTensorReq{Tensor: tt, Size: mb}.Encode())
			var hdr [8]byte
			io.ReadFull(rc.Conn, hdr[:])
			got := make([]byte, binary.LittleEndian.Uint64(hdr[:]))
			io.ReadFull(rc.Conn, got)
			if !bytes.Equal(got, data) {
				t.Fatalf("upload %d lost with the disk full", i)
			}
		}
		tmps, _ := filepath.Glob(filepath.Join(dir, "*", ".tmp-*"))
		if len(tmps) != 0 {
			t.Fatalf("temp files left: %v", tmps)
		}
		if _, err := os.Stat(dir); err != nil || len(w.Connections()) != 1 {
			t.Fatalf("worker after a full disk: %v %+v", err, w.Connections())
		}
	})
}

func equalBools(a, b []bool) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
