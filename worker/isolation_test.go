package worker

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/boxproj/box/api"
	"github.com/boxproj/box/rpc"
)

// bystander is a client that holds 16 MiB and checks, whenever asked, that
// its buffers are still bound and that its a+b graph still computes right.
type bystander struct {
	t    *testing.T
	w    *testWorker
	c    *rpc.Client
	a, b rpc.Tensor
	sum  rpc.Tensor
	id   uint64
}

func newBystander(t *testing.T, w *testWorker) *bystander {
	t.Helper()
	ctx := context.Background()
	c := dial(t, w.addr)
	const size = 16 << 20
	h, _, err := c.AllocBuffer(ctx, 0, size)
	if err != nil || h == 0 {
		t.Fatal(err)
	}
	base, _ := c.BufferGetBase(ctx, h)
	bs := &bystander{t: t, w: w, c: c, a: f32t(1, h, base, 4), b: f32t(2, h, base+16, 4), sum: f32t(3, h, base+32, 4)}
	bs.sum.Op, bs.sum.Src[0], bs.sum.Src[1] = rpc.OpAdd, 1, 2
	bs.check("before")
	conns := w.Connections()
	bs.id = conns[len(conns)-1].ID
	return bs
}

func (bs *bystander) check(when string) {
	bs.t.Helper()
	ctx := context.Background()
	x := rand.Float32()
	if err := bs.c.SetTensor(ctx, bs.a, 0, f32bytes([]float32{1, 2, 3, x})); err != nil {
		bs.t.Fatalf("bystander %s: %v", when, err)
	}
	bs.c.SetTensor(ctx, bs.b, 0, f32bytes([]float32{10, 20, 30, 40}))
	if err := bs.c.GraphCompute(ctx, 0, []uint64{3}, []rpc.Tensor{bs.a, bs.b, bs.sum}); err != nil {
		bs.t.Fatalf("bystander %s: compute: %v", when, err)
	}
	got, err := bs.c.GetTensor(ctx, bs.sum, 0, 16)
	if want := fmt.Sprint([]float32{11, 22, 33, 40 + x}); err != nil || fmt.Sprint(bytesF32(got)) != want {
		bs.t.Fatalf("bystander %s: a+b = %v (%v), want %s", when, bytesF32(got), err, want)
	}
	if bs.id != 0 {
		for _, ci := range bs.w.Connections() {
			if ci.ID == bs.id && ci.Bytes == 16<<20 && len(ci.Buffers) == 1 {
				return
			}
		}
		bs.t.Fatalf("bystander %s: its 16 MiB are no longer bound: %+v", when, bs.w.Connections())
	}
}

func i32t(id, buf, data uint64, n uint32) rpc.Tensor {
	return rpc.Tensor{ID: id, Type: tI32, Buffer: buf, Data: data, NE: [4]uint32{n, 1, 1, 1}, NB: [4]uint32{4, 4 * n, 4 * n, 4 * n}}
}

// endOf waits for the event that ended connection id (disconnect or crashed).
func endOf(t *testing.T, w *testWorker, peer string) Event {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, e := range w.events.since(0) {
			if e.Peer == peer && (e.Kind == api.EventDisconnect || e.Kind == api.EventCrashed) {
				return e
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no end event for %s: %+v", peer, w.events.since(0))
	return Event{}
}

// The attacks that aborted the single-process worker, as real messages over
// TCP: each ends only its own connection, with a clear reason; the
// supervisor stays up and a bystander keeps its memory and its results.
func TestAttacksEndOnlyTheirConnection(t *testing.T) {
	cacheDir := t.TempDir()
	w := startWorker(t, Config{CacheDir: cacheDir})
	bs := newBystander(t, w)
	for _, tc := range []struct {
		name string
		want api.Reason // ReasonViolation: validation stops it first
		kind string     // violation kind
		run  func(t *testing.T, rc *rawConn)
	}{
		{"get_rows index overwritten by an earlier node", api.ReasonViolation, "index", func(t *testing.T, rc *rawConn) {
			h, base := rc.alloc(t, 4096)
			emb := f32t(1, h, base, 4, 2)
			idx := i32t(2, h, base+64, 1)  // checked before compute: 0 is a valid row
			bad := i32t(3, h, base+128, 1) // 2^20: far outside the 2 rows
			over := i32t(4, h, base+64, 1) // a DUP of bad written over idx
			over.Op, over.Src[0] = rpc.OpDup, 3
			rows := f32t(5, h, base+256, 4, 1)
			rows.Op, rows.Src[0], rows.Src[1] = rpc.OpGetRows, 1, 2
			rc.send(rpc.CmdSetTensor, rpc.SetTensorReq{SetTensorHeader: rpc.SetTensorHeader{Tensor: idx}, Data: binary.LittleEndian.AppendUint32(nil, 0)}.Encode())
			rc.send(rpc.CmdSetTensor, rpc.SetTensorReq{SetTensorHeader: rpc.SetTensorHeader{Tensor: bad}, Data: binary.LittleEndian.AppendUint32(nil, 1<<20)}.Encode())
			rc.send(rpc.CmdGraphCompute, graphMsg([]uint64{4, 5}, emb, idx, bad, over, rows))
		}},
		{"mul_mat whose src0 rows overlap", api.ReasonViolation, "op", func(t *testing.T, rc *rawConn) {
			h, base := rc.alloc(t, 1<<16)
			a := f32t(1, h, base, 64, 4)
			a.NB[1] = 4 // rows one element apart: lda < k
			a.NB[2], a.NB[3] = 1024, 1024
			b := f32t(2, h, base+4096, 64, 1)
			y := f32t(3, h, base+8192, 4, 1)
			y.Op, y.Src[0], y.Src[1] = rpc.OpMulMat, 1, 2
			rc.send(rpc.CmdGraphCompute, graphMsg([]uint64{3}, a, b, y))
		}},
		{"mul_mat whose result rows overlap", api.ReasonViolation, "op", func(t *testing.T, rc *rawConn) {
			h, base := rc.alloc(t, 1<<16)
			a := f32t(1, h, base, 64, 4)
			b := f32t(2, h, base+4096, 64, 2)
			y := f32t(3, h, base+8192, 4, 2)
			y.NB[1] = 4 // ldc < m
			y.Op, y.Src[0], y.Src[1] = rpc.OpMulMat, 1, 2
			rc.send(rpc.CmdGraphCompute, graphMsg([]uint64{3}, a, b, y))
		}},
		{"set_tensor_hash of a cached entry longer than the tensor", api.ReasonViolation, "range", func(t *testing.T, rc *rawConn) {
			const n = rpc.BoxCacheThreshold + 4096
			h, base := rc.alloc(t, n+4096)
			big := rpc.Tensor{ID: 1, Type: 24, Buffer: h, Data: base, NE: [4]uint32{n, 1, 1, 1}, NB: [4]uint32{1, n, n, n}}
			data := make([]byte, n)
			for i := range data {
				data[i] = byte(i * 13)
			}
			rc.send(rpc.CmdSetTensor, rpc.SetTensorReq{SetTensorHeader: rpc.SetTensorHeader{Tensor: big}, Data: data}.Encode())
			small := rpc.Tensor{ID: 2, Type: 24, Buffer: h, Data: base + n, NE: [4]uint32{1024, 1, 1, 1}, NB: [4]uint32{1, 1024, 1024, 1024}}
			rc.send(rpc.CmdSetTensorHash, rpc.SetTensorHashReq{Tensor: small, Hash: rpc.FNV1a64(data)}.Encode())
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := rawDial(t, w.addr, true)
			tc.run(t, rc)
			if !rc.closedByPeer(10 * time.Second) {
				t.Fatal("the attacking connection is still open")
			}
			e := endOf(t, w, rc.LocalAddr().String())
			if e.Reason != tc.want || e.Violation != tc.kind {
				t.Fatalf("ended with %s/%s (%s), want %s/%s", e.Reason, e.Violation, e.Detail, tc.want, tc.kind)
			}
			t.Logf("%s: %s", e.Reason, e.Detail)
			bs.check("after " + tc.name)
		})
	}
}

// Whatever kills a compute process (here SIGABRT, as a ggml assertion
// does), only its connection ends: the supervisor reports "crashed" with
// the peer, the signal and the command it was in, and gives the memory back.
func TestCrashedProcessEndsOnlyItsConnection(t *testing.T) {
	w := startWorker(t, Config{})
	bs := newBystander(t, w)
	victim := rawDial(t, w.addr, true)
	victim.alloc(t, 8<<20)
	var pid int
	for _, c := range w.Connections() {
		if c.ID != bs.id {
			pid = c.PID
		}
	}
	if pid == 0 || syscall.Kill(pid, syscall.SIGABRT) != nil {
		t.Fatalf("no compute process to crash (pid %d)", pid)
	}
	e := endOf(t, w, victim.LocalAddr().String())
	if e.Kind != api.EventCrashed || e.Reason != api.ReasonCrashed || e.PID != pid || e.Bytes != 8<<20 ||
		!strings.Contains(e.Detail, "SIGABRT") {
		t.Fatalf("crash reported as %+v", e)
	}
	waitBound(t, w, 16<<20, 2*time.Second)
	if !victim.closedByPeer(2 * time.Second) {
		t.Fatal("the crashed connection is still open")
	}
	bs.check("after the crash")
}

// hugeGraph sends one valid graph whose single 1 MiB ADD node is listed
// 2^20 times: minutes of work in one message.
func hugeGraph(t *testing.T, rc *rawConn) {
	t.Helper()
	const n = 1 << 18 // floats per tensor
	h, base := rc.alloc(t, 3*4*n)
	a, b, c := f32t(1, h, base, n), f32t(2, h, base+4*n, n), f32t(3, h, base+8*n, n)
	c.Op, c.Src[0], c.Src[1] = rpc.OpAdd, 1, 2
	nodes := make([]uint64, 1<<20)
	for i := range nodes {
		nodes[i] = 3
	}
	if err := rc.send(rpc.CmdGraphCompute, graphMsg(nodes, a, b, c)); err != nil {
		t.Fatal(err)
	}
}

// waitBusy waits until connection id's process is computing.
func waitBusy(t *testing.T, w *testWorker, peer string) ConnInfo {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, c := range w.Connections() {
			if c.Peer == peer && c.Command == "GRAPH_COMPUTE" {
				return c
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("no GRAPH_COMPUTE running: %+v", w.Connections())
	return ConnInfo{}
}

// A graph that would run for minutes holds nothing up: an operator close
// answers within a second with its memory already given back, a compute
// time limit ends it on time, and SIGTERM finishes within --grace. Other
// clients are served meanwhile.
func TestHugeGraphIsBounded(t *testing.T) {
	t.Run("operator close", func(t *testing.T) {
		w := startWorker(t, Config{})
		bs := newBystander(t, w)
		rc := rawDial(t, w.addr, true)
		hugeGraph(t, rc)
		ci := waitBusy(t, w, rc.LocalAddr().String())
		bs.check("during the huge graph")
		t0 := time.Now()
		resp, err := http.Post(w.admin+"/v1/connections/"+strconv.FormatUint(ci.ID, 10)+"/close", "application/json", nil)
		if err != nil {
			t.Fatal(err)
		}
		var body map[string]any
		json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		took := time.Since(t0)
		if resp.StatusCode != 200 || took > time.Second {
			t.Fatalf("close answered %d %v after %v", resp.StatusCode, body, took)
		}
		// "closed" is true when it says so: the buffers and the process are gone.
		if got := w.BoundBytes(); got != 16<<20 || processAlive(ci.PID) {
			t.Fatalf("after close: bound %d, process %d alive %v", got, ci.PID, processAlive(ci.PID))
		}
		t.Logf("closed in %v", took.Round(time.Millisecond))
	})
	t.Run("max compute time", func(t *testing.T) {
		w := startWorker(t, Config{MaxComputeTime: 5 * time.Second})
		rc := rawDial(t, w.addr, true)
		hugeGraph(t, rc)
		waitBusy(t, w, rc.LocalAddr().String())
		t0 := time.Now()
		e := endOf(t, w, rc.LocalAddr().String())
		took := time.Since(t0)
		if e.Reason != api.ReasonComputeTimeout || took < 4*time.Second || took > 6*time.Second {
			t.Fatalf("ended by %s after %v, want compute-timeout at 5s ± 1", e.Reason, took)
		}
		t.Logf("compute-timeout after %v", took.Round(10*time.Millisecond))
	})
	t.Run("sigterm", func(t *testing.T) {
		w := startWorker(t, Config{Grace: 2 * time.Second})
		rc := rawDial(t, w.addr, true)
		hugeGraph(t, rc)
		ci := waitBusy(t, w, rc.LocalAddr().String())
		t0 := time.Now()
		w.stop()
		took := time.Since(t0)
		if took > 3*time.Second || processAlive(ci.PID) || w.BoundBytes() != 0 {
			t.Fatalf("shutdown took %v (grace 2s), process alive %v, bound %d", took, processAlive(ci.PID), w.BoundBytes())
		}
		t.Logf("stopped in %v with a graph running", took.Round(10*time.Millisecond))
	})
}

// 200 client processes holding 50 MiB each are killed at random moments
// (during the upload or after): every byte comes back, no compute process
// is left, and the supervisor's own memory does not grow.
func TestManyKilledClientsLeaveNothing(t *testing.T) {
	w := startWorker(t, Config{})
	start := rss(t)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 200; i++ {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "BOX_TEST_CLIENT=hold50", "BOX_TEST_ADDR="+w.addr)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(rng.IntN(80)) * time.Millisecond)
		cmd.Process.Kill()
		cmd.Wait()
	}
	waitConns(t, w, 0, 10*time.Second)
	waitBound(t, w, 0, time.Second)
	if kids := children(t); len(kids) != 0 {
		t.Fatalf("compute processes left: %v", kids)
	}
	if end := rss(t); end > start+10<<20 {
		t.Fatalf("supervisor RSS %d MiB after 200 kills, %d MiB at start", end>>20, start>>20)
	}
	var started float64
	for _, e := range w.events.since(0) {
		if e.Kind == api.EventDisconnect && e.PID != 0 {
			started++
		}
	}
	t.Logf("%v of 200 clients got as far as a compute process", started)
}

// children lists this process's live child processes.
func children(t *testing.T) []int {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	self := strconv.Itoa(os.Getpid())
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		_, rest, _ := strings.Cut(string(b), ") ")
		f := strings.Fields(rest)
		if len(f) > 1 && f[1] == self && f[0] != "Z" {
			out = append(out, pid)
		}
	}
	return out
}
