package worker

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/boxproj/box/api"
	"github.com/boxproj/box/rpc"
	"github.com/boxproj/box/worker/ctl"
)

// A sender that never finishes its message is reaped by the message
// deadline, whatever it declared, and what it held comes back.
func TestSlowSendersAreReaped(t *testing.T) {
	w := startWorker(t, Config{MessageTimeout: time.Second, MessageMinRate: 1 << 30})
	for _, tc := range []struct {
		name string
		run  func(t *testing.T, rc *rawConn)
	}{
		{"half a header", func(t *testing.T, rc *rawConn) {
			rc.Write(rpc.AppendRequestHeader(nil, rpc.CmdDeviceCount, 0)[:5])
		}},
		{"set_tensor trickle", func(t *testing.T, rc *rawConn) {
			h, base := rc.alloc(t, 50<<20)
			tt := rpc.Tensor{ID: 1, Type: 24, Buffer: h, Data: base, NE: [4]uint32{50 << 20, 1, 1, 1}, NB: [4]uint32{1, 50 << 20, 50 << 20, 50 << 20}}
			rc.Write(rpc.AppendRequestHeader(nil, rpc.CmdSetTensor, rpc.SetTensorHeaderSize+50<<20))
			rc.Write(rpc.SetTensorHeader{Tensor: tt}.Encode())
			for range 3 {
				rc.Write([]byte{1})
				time.Sleep(300 * time.Millisecond)
			}
		}},
		{"graph header then silence", func(t *testing.T, rc *rawConn) {
			rc.alloc(t, 1<<20)
			rc.Write(rpc.AppendRequestHeader(nil, rpc.CmdGraphCompute, 256<<20))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := rawDial(t, w.addr, true)
			t0 := time.Now()
			tc.run(t, rc)
			if !rc.closedByPeer(5 * time.Second) {
				t.Fatal("still open")
			}
			e := endOf(t, w, rc.LocalAddr().String())
			if e.Reason != api.ReasonMessageTimeout || time.Since(t0) > 4*time.Second {
				t.Fatalf("ended by %s (%s) after %v, want message-timeout after about 1s", e.Reason, e.Detail, time.Since(t0))
			}
			waitBound(t, w, 0, time.Second)
			if h := w.HostBytes(); h != 0 {
				t.Fatalf("host bytes %d after the end", h)
			}
		})
	}
}

// A client never reads a byte an earlier client wrote, for buffers of any
// size.
func TestFreshBuffersHoldNoEarlierBytes(t *testing.T) {
	w := startWorker(t, Config{})
	sizes := []uint64{1, 7, 4096, 256<<10 - 1, 256 << 10, 1 << 20, 64 << 20}
	ctx := context.Background()
	tensor := func(h, base, n uint64) rpc.Tensor {
		return rpc.Tensor{ID: 1, Type: 24, Buffer: h, Data: base, NE: [4]uint32{uint32(n), 1, 1, 1}, NB: [4]uint32{1, uint32(n), uint32(n), uint32(n)}}
	}
	for round := 0; round < 3; round++ {
		a := dial(t, w.addr)
		for _, n := range sizes {
			h, _, err := a.AllocBuffer(ctx, 0, n)
			if err != nil || h == 0 {
				t.Fatal(err)
			}
			base, _ := a.BufferGetBase(ctx, h)
			secret := make([]byte, n)
			for i := range secret {
				secret[i] = 0xA5
			}
			if err := a.SetTensor(ctx, tensor(h, base, n), 0, secret); err != nil {
				t.Fatal(err)
			}
		}
		a.Close()
		waitBound(t, w, 0, 2*time.Second)
		b := dial(t, w.addr)
		for _, n := range sizes {
			h, _, err := b.AllocBuffer(ctx, 0, n)
			if err != nil || h == 0 {
				t.Fatal(err)
			}
			base, _ := b.BufferGetBase(ctx, h)
			got, err := b.GetTensor(ctx, tensor(h, base, n), 0, n)
			if err != nil {
				t.Fatal(err)
			}
			for i, v := range got {
				if v != 0 {
					t.Fatalf("round %d: a fresh %d-byte buffer holds byte %#x at %d", round, n, v, i)
				}
			}
		}
		b.Close()
		waitBound(t, w, 0, 2*time.Second)
	}
}

// pipelineAllocFree sends n ALLOC_BUFFER(size) + FREE_BUFFER pairs without
// waiting (a connection's handles are 1, 2, 3, ...), then one DEVICE_COUNT,
// and reads every answer.
func pipelineAllocFree(t *testing.T, rc *rawConn, n int, size uint64, first uint64) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		bw := bufio.NewWriterSize(rc.Conn, 1<<20)
		for i := 0; i < n; i++ {
			rpc.WriteRequest(bw, rpc.CmdAllocBuffer, rpc.AllocBufferReq{Size: size}.Encode())
			rpc.WriteRequest(bw, rpc.CmdFreeBuffer, rpc.BufferReq{Handle: first + uint64(i)}.Encode())
		}
		rpc.WriteRequest(bw, rpc.CmdDeviceCount)
		errc <- bw.Flush()
	}()
	br := bufio.NewReaderSize(rc.Conn, 1<<20)
	// 24 bytes per alloc answer, 8 per free answer, 12 for the count.
	if _, err := io.CopyN(io.Discard, br, int64(n)*32+12); err != nil {
		t.Fatalf("after %d pairs: %v", n, err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// Zero-size and one-byte buffers cost quota like any other and are really
// freed: the compute process's memory stays flat over many cycles.
func TestTinyBufferCyclesStayFlat(t *testing.T) {
	const cycles = 50000
	for _, size := range []uint64{0, 1} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			w := startWorker(t, Config{})
			rc := rawDial(t, w.addr, true)
			// Warm up (the process, its heap, Go's GC target), then two
			// equal runs: a leak grows the second as much as the first.
			pipelineAllocFree(t, rc, cycles/2, size, 1)
			pid := w.Connections()[0].PID
			r0 := pidRSS(t, pid)
			t0 := time.Now()
			pipelineAllocFree(t, rc, cycles, size, 1+cycles/2)
			r1 := pidRSS(t, pid)
			pipelineAllocFree(t, rc, cycles, size, 1+cycles/2+cycles)
			r2 := pidRSS(t, pid)
			t.Logf("2 x %d alloc/free cycles of %d bytes in %v; compute process RSS %d, %d, %d KiB", cycles, size,
				time.Since(t0).Round(time.Millisecond), r0>>10, r1>>10, r2>>10)
			if r2 > r1+1<<20 {
				t.Fatalf("RSS grew from %d to %d KiB over %d more cycles", r1>>10, r2>>10, cycles)
			}
			// The process's last frees reach the supervisor on their own.
			deadline := time.Now().Add(2 * time.Second)
			for w.BoundBytes() != 0 || w.HostBytes() != ctl.ProcessOverhead {
				if time.Now().After(deadline) {
					t.Fatalf("bound %d, host %d after the cycles; want 0 and one process", w.BoundBytes(), w.HostBytes())
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
}

// Buffers are bounded in number, and each costs quota even at size 0.
func TestBufferCountAndOverheadAreBounded(t *testing.T) {
	w := startWorker(t, Config{MaxBuffersPerConn: 100, MaxMemoryPerConn: 64 << 10})
	ctx := context.Background()
	c := dial(t, w.addr)
	var got int
	for i := 0; i < 200; i++ {
		h, _, err := c.AllocBuffer(ctx, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		if h != 0 {
			got++
		}
	}
	// 64 KiB per connection at 1 KiB of overhead a buffer: 64 of them.
	if got != 64 {
		t.Fatalf("%d zero-size buffers granted, want 64 (the per-connection quota)", got)
	}
	w2 := startWorker(t, Config{MaxBuffersPerConn: 100})
	c2 := dial(t, w2.addr)
	got = 0
	for i := 0; i < 200; i++ {
		if h, _, _ := c2.AllocBuffer(ctx, 0, 1); h != 0 {
			got++
		}
	}
	if got != 100 {
		t.Fatalf("%d buffers granted, want --max-buffers-per-conn 100", got)
	}
}

// Connections are bounded in all and per peer.
func TestConnectionsAreBounded(t *testing.T) {
	w := startWorker(t, Config{MaxConnsPerPeer: 3, MaxConns: 5})
	var open []*rawConn
	for i := 0; i < 3; i++ {
		open = append(open, rawDial(t, w.addr, true))
	}
	waitConns(t, w, 3, time.Second)
	extra := rawDial(t, w.addr, false)
	if !extra.closedByPeer(2 * time.Second) {
		t.Fatal("a fourth connection from one peer was accepted")
	}
	found := false
	for _, e := range w.events.since(0) {
		found = found || e.Kind == api.EventRefused && strings.Contains(e.Detail, "max-conns-per-peer")
	}
	if !found || len(w.Connections()) != 3 {
		t.Fatalf("refusal not recorded: %+v", w.events.since(0))
	}
	open[0].Close()
	waitConns(t, w, 2, 2*time.Second)
	rawDial(t, w.addr, true) // room again
}

// memCgroup makes a memory cgroup (v2, else v1) limited to limit bytes and
// returns the file a PID is written to, and a function that reads how often
// the OOM killer ran in it.
func memCgroup(t *testing.T, limit uint64) (procs string, oomKills func() int) {
	t.Helper()
	procs, oomKills, _ = memCgroupPeak(t, limit)
	return procs, oomKills
}

// memCgroupPeak is memCgroup with a reader of the cgroup's peak usage.
func memCgroupPeak(t *testing.T, limit uint64) (procs string, oomKills func() int, peak func() uint64) {
	t.Helper()
	name := fmt.Sprintf("boxtest-%d", os.Getpid())
	v2 := filepath.Join("/sys/fs/cgroup", name)
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		if err := os.Mkdir(v2, 0o755); err != nil {
			t.Fatalf("cgroup v2: %v (this test needs root, as in CI)", err)
		}
		t.Cleanup(func() { removeCgroup(v2) })
		os.WriteFile(filepath.Join(v2, "memory.max"), []byte(strconv.FormatUint(limit, 10)), 0)
		os.WriteFile(filepath.Join(v2, "memory.swap.max"), []byte("0"), 0)
		return filepath.Join(v2, "cgroup.procs"), func() int { return field(t, filepath.Join(v2, "memory.events"), "oom_kill") },
			func() uint64 { return readUint(filepath.Join(v2, "memory.peak")) }
	}
	v1 := filepath.Join("/sys/fs/cgroup/memory", name)
	if err := os.Mkdir(v1, 0o755); err != nil {
		t.Fatalf("cgroup v1: %v (this test needs root, as in CI)", err)
	}
	t.Cleanup(func() { removeCgroup(v1) })
	if err := os.WriteFile(filepath.Join(v1, "memory.limit_in_bytes"), []byte(strconv.FormatUint(limit, 10)), 0); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(v1, "cgroup.procs"), func() int { return field(t, filepath.Join(v1, "memory.oom_control"), "oom_kill") },
		func() uint64 { return readUint(filepath.Join(v1, "memory.max_usage_in_bytes")) }
}

// removeCgroup removes a test cgroup once its last process (the worker's
// compute processes die a moment after it) has left.
func removeCgroup(dir string) {
	deadline := time.Now().Add(5 * time.Second)
	for os.Remove(dir) != nil && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
}

func readUint(file string) uint64 {
	b, _ := os.ReadFile(file)
	n, _ := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	return n
}

func field(t *testing.T, file, key string) int {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, key+" "); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	return 0
}

// serveMain runs a worker on addr until killed (the test binary as a
// worker process, for tests that put it in a cgroup).
func serveMain(addr string) int {
	cfg := Config{Threads: 1, Compute: Command{Path: os.Args[0], Env: []string{"BOX_COMPUTE_CHILD=1"}}}
	cfg.MaxBuffersPerConn, _ = strconv.Atoi(os.Getenv("BOX_TEST_MAX_BUFFERS"))
	w, err := New(cfg, testLog)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ln, err := w.Listen(context.Background(), addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	aln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	go http.Serve(aln, w.AdminHandler("test"))
	fmt.Printf("ready %d http://%s\n", w.cfg.MaxHostMemory, aln.Addr())
	w.Serve(context.Background(), ln)
	return 0
}

// Inside a 1 GiB memory cgroup, floods of graphs, tiny buffers and
// zero-size buffers are refused before they cost the memory: the worker is
// never OOM-killed and goes on serving.
func TestFloodsInsideMemoryCgroup(t *testing.T) {
	procs, oomKills, peak := memCgroupPeak(t, 1<<30)
	addr := freeAddr(t)
	// The worker joins the cgroup before it starts, so its compute
	// processes are in it too.
	cmd := exec.Command("sh", "-c", fmt.Sprintf("echo $$ > %s && exec %s -test.run=^$", procs, os.Args[0]))
	// Fewer buffers per connection than the default 65536 (each costs a
	// round trip to the supervisor), so that the floods below reach the
	// limit in seconds; everything else is the defaults.
	cmd.Env = append(os.Environ(), "BOX_TEST_SERVE="+addr, "BOX_TEST_MAX_BUFFERS=8192")
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, _ := bufio.NewReader(out).ReadString('\n')
	var budget uint64
	var admin string
	fmt.Sscanf(line, "ready %d %s", &budget, &admin)
	if budget == 0 || budget > 1<<30 {
		t.Fatalf("worker said %q: want its host budget within the 1 GiB cgroup", line)
	}
	t.Logf("--max-host-memory defaults to %d MiB in a 1 GiB cgroup", budget>>20)

	var wg sync.WaitGroup
	flood := func(n int, f func(nc net.Conn)) {
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
				if err != nil {
					return
				}
				defer nc.Close()
				nc.SetDeadline(time.Now().Add(60 * time.Second))
				rpc.WriteRequest(nc, rpc.CmdHello)
				io.ReadFull(nc, make([]byte, 11))
				f(nc)
			}()
		}
	}
	// Six 256 MiB graphs at once.
	body := make([]byte, 1<<20)
	flood(6, func(nc net.Conn) {
		rpc.WriteRequest(nc, rpc.CmdAllocBuffer, rpc.AllocBufferReq{Size: 1}.Encode())
		io.ReadFull(nc, make([]byte, 24))
		nc.Write(rpc.AppendRequestHeader(nil, rpc.CmdGraphCompute, 256<<20))
		for i := 0; i < 256; i++ {
			if _, err := nc.Write(body); err != nil {
				return
			}
		}
	})
	wg.Wait()
	// Tiny and zero-size buffers, pipelined, from many connections at once,
	// each past --max-buffers-per-conn: every answer is read, so the
	// worker has served the whole flood.
	var refusedMu sync.Mutex
	refused := map[uint64]int{}
	for _, f := range []struct {
		size  uint64
		conns int
	}{{1, 12}, {0, 4}} {
		flood(f.conns, func(nc net.Conn) {
			const n = 10000
			go func() {
				bw := bufio.NewWriterSize(nc, 1<<16)
				for i := 0; i < n; i++ {
					rpc.WriteRequest(bw, rpc.CmdAllocBuffer, rpc.AllocBufferReq{Size: f.size}.Encode())
				}
				bw.Flush()
			}()
			br := bufio.NewReaderSize(nc, 1<<16)
			var r [24]byte
			no := 0
			for i := 0; i < n; i++ {
				if _, err := io.ReadFull(br, r[:]); err != nil {
					break
				}
				if binary.LittleEndian.Uint64(r[8:]) == 0 {
					no++
				}
			}
			refusedMu.Lock()
			refused[f.size] += no
			refusedMu.Unlock()
		})
		wg.Wait()
	}
	t.Logf("allocations refused: %d of %d one-byte, %d of %d zero-size", refused[1], 12*10000, refused[0], 4*10000)
	if refused[1] != 12*(10000-8192) || refused[0] != 4*(10000-8192) {
		t.Fatalf("the floods were not refused: %v", refused)
	}
	if n := oomKills(); n != 0 {
		t.Fatalf("the OOM killer ran %d times in the worker's cgroup", n)
	}
	t.Logf("the cgroup's peak memory use: %d MiB (limit 1024 MiB, --max-host-memory %d MiB)", peak()>>20, budget>>20)
	if err := cmd.Process.Signal(syscall.Signal(0)); err != nil {
		t.Fatalf("the worker is gone: %v", err)
	}
	// The floods were refused, not absorbed.
	resp, err := http.Get(admin + "/v1/events")
	if err != nil {
		t.Fatal(err)
	}
	var evs struct{ Events []Event }
	json.NewDecoder(resp.Body).Decode(&evs)
	resp.Body.Close()
	limits := map[string]int{}
	for _, e := range evs.Events {
		if e.Kind == api.EventQuota {
			limits[e.Detail]++
		}
	}
	t.Logf("refusals by quota: %v (the event log keeps the last %d events)", limits, len(evs.Events))
	if limits["max-host-memory"] != 6 || limits["max-buffers-per-conn"] != 16 {
		t.Fatalf("the floods met no quota: %v", limits)
	}
	// And it still serves.
	c, err := rpc.Dial(context.Background(), addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if h, _, err := c.AllocBuffer(context.Background(), 0, 16<<20); err != nil || h == 0 {
		t.Fatalf("after the floods: %v", err)
	}
}

// freeAddr is a loopback address nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
