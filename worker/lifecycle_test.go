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
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/boxproj/box/api"
	"github.com/boxproj/box/rpc"
	"github.com/boxproj/box/worker/compute/computetest"
)

// The test binary doubles as a client process (for kill -9 and network
// namespace tests) when BOX_TEST_CLIENT is set.
// It is also the worker's compute process (package computetest), which it
// must check first: a compute process inherits the other modes' variables.
func TestMain(m *testing.M) {
	computetest.MaybeRun()
	if mode := os.Getenv("BOX_TEST_CLIENT"); mode != "" {
		os.Exit(clientMain(mode, os.Getenv("BOX_TEST_ADDR")))
	}
	if addr := os.Getenv("BOX_TEST_SERVE"); addr != "" {
		os.Exit(serveMain(addr))
	}
	computetest.Main(m)
}

// clientMain connects, allocates, says "ready" on stdout, then either
// uploads slowly forever (upload) or just holds its buffer (hold).
func clientMain(mode, addr string) int {
	ctx := context.Background()
	c, err := rpc.Dial(ctx, addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if mode == "hold50" {
		// Binds and fills 50 MiB, then holds it until killed.
		const n = 50 << 20
		h, _, err := c.AllocBuffer(ctx, 0, n)
		if err != nil || h == 0 {
			return 1
		}
		base, _ := c.BufferGetBase(ctx, h)
		t := rpc.Tensor{ID: 2, Type: 24, Buffer: h, NE: [4]uint32{n, 1, 1, 1}, NB: [4]uint32{1, n, n, n}, Data: base}
		if err := c.SetTensor(ctx, t, 0, make([]byte, n)); err != nil {
			return 1
		}
		select {}
	}
	const size = 256 << 20
	h, _, err := c.AllocBuffer(ctx, 0, size)
	if err != nil || h == 0 {
		fmt.Fprintln(os.Stderr, "alloc", err)
		return 1
	}
	base, _ := c.BufferGetBase(ctx, h)
	t := rpc.Tensor{ID: 1, Type: 0, Buffer: h, NE: [4]uint32{size / 4, 1, 1, 1}, NB: [4]uint32{4, size, size, size}, Data: base}
	switch mode {
	case "hold":
		fmt.Println("ready")
		select {}
	case "upload":
		// Most of the buffer, then a SET_TENSOR whose data never ends,
		// written on a second connection's twin: a raw socket.
		chunk := make([]byte, 8<<20)
		for i := range chunk {
			chunk[i] = byte(i)
		}
		for off := uint64(0); off < 192<<20; off += uint64(len(chunk)) {
			if err := c.SetTensor(ctx, t, off, chunk); err != nil {
				return 1
			}
		}
		if _, err := c.DeviceCount(ctx); err != nil { // everything above has arrived
			return 1
		}
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			return 1
		}
		rpc.WriteRequest(nc, rpc.CmdHello)
		io.ReadFull(nc, make([]byte, 11))
		rpc.WriteRequest(nc, rpc.CmdAllocBuffer, rpc.AllocBufferReq{Size: 64 << 20}.Encode())
		r := make([]byte, 24)
		io.ReadFull(nc, r)
		h2 := binary.LittleEndian.Uint64(r[8:])
		rpc.WriteRequest(nc, rpc.CmdBufferGetBase, rpc.BufferReq{Handle: h2}.Encode())
		io.ReadFull(nc, r[:16])
		t2 := rpc.Tensor{ID: 1, Buffer: h2, NE: [4]uint32{16 << 20, 1, 1, 1}, NB: [4]uint32{4, 64 << 20, 64 << 20, 64 << 20}, Data: binary.LittleEndian.Uint64(r[8:])}
		nc.Write(rpc.AppendRequestHeader(nil, rpc.CmdSetTensor, rpc.SetTensorHeaderSize+32<<20))
		nc.Write(rpc.SetTensorHeader{Tensor: t2}.Encode())
		nc.Write(chunk[:1<<20])
		fmt.Println("ready")
		select {}
	}
	return 2
}

// startClient runs the test binary as a client process.
func startClient(t *testing.T, mode, addr string, wrap ...string) *exec.Cmd {
	t.Helper()
	args := append(wrap, os.Args[0], "-test.run=^$")
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), "BOX_TEST_CLIENT="+mode, "BOX_TEST_ADDR="+addr)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	ready := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(out).ReadString('\n')
		ready <- line
	}()
	select {
	case line := <-ready:
		if strings.TrimSpace(line) != "ready" {
			t.Fatalf("client said %q", line)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("client not ready")
	}
	return cmd
}

// rss is this process's resident memory: the supervisor's, since the
// worker under test runs in this process.
func rss(t *testing.T) uint64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	return vmRSS(t, string(b))
}

func vmRSS(t *testing.T, status string) uint64 {
	t.Helper()
	for _, line := range strings.Split(status, "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			var kb uint64
			fmt.Sscan(strings.TrimSpace(v), &kb)
			return kb << 10
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

func TestKillClientMidUpload(t *testing.T) {
	w := startWorker(t, Config{})
	baseline := rss(t)
	cmd := startClient(t, "upload", w.addr)
	waitBound(t, w, 320<<20, 5*time.Second) // both connections' buffers
	waitConns(t, w, 2, time.Second)
	// The memory is in the connections' compute processes, not the
	// supervisor.
	var pids []int
	var held uint64
	for _, c := range w.Connections() {
		pids = append(pids, c.PID)
		held += pidRSS(t, c.PID)
	}
	if held < 150<<20 {
		t.Fatalf("the upload did not land: compute processes %v hold %d MiB", pids, held>>20)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitBound(t, w, 0, 2*time.Second)
	waitConns(t, w, 0, 2*time.Second)
	// Given back to the system, not just marked free: the processes that
	// held it are gone, and the supervisor never held it.
	for _, pid := range pids {
		if processAlive(pid) {
			t.Fatalf("compute process %d still alive", pid)
		}
	}
	if after := rss(t); after > baseline+32<<20 {
		t.Fatalf("supervisor RSS %d MiB after release, baseline %d MiB", after>>20, baseline>>20)
	}
}

// pidRSS is a process's resident memory.
func pidRSS(t *testing.T, pid int) uint64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	return vmRSS(t, string(b))
}

// A peer whose host vanishes (no FIN, no RST) is found by TCP keepalive.
// The client runs in its own network namespace behind a veth pair; its
// side of the link is then cut.
func TestVanishedPeerReapedByKeepalive(t *testing.T) {
	sh := func(args ...string) string {
		t.Helper()
		out, err := exec.Command("ip", args...).CombinedOutput()
		if err != nil {
			t.Fatalf("ip %s: %v\n%s\n(this test needs root and iproute2, as in CI)", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	removeStaleNetns(t)
	ns := fmt.Sprintf("boxtest%d", os.Getpid())
	host, peer := fmt.Sprintf("bxh%d", os.Getpid()), fmt.Sprintf("bxp%d", os.Getpid())
	// A /30 no interface of this host has: an address two links share
	// routes to the wrong one.
	addrs, n := sh("-o", "addr", "show"), 0
	for n < 256 && strings.Contains(addrs, fmt.Sprintf(" 10.213.%d.", n)) {
		n++
	}
	if n == 256 {
		t.Fatal("no free 10.213.x.0/30 for the test link")
	}
	hostIP, peerIP := fmt.Sprintf("10.213.%d.1", n), fmt.Sprintf("10.213.%d.2", n)
	sh("netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run(); exec.Command("ip", "link", "del", host).Run() })
	sh("link", "add", host, "type", "veth", "peer", "name", peer)
	sh("link", "set", peer, "netns", ns)
	sh("addr", "add", hostIP+"/30", "dev", host)
	sh("link", "set", host, "up")
	sh("netns", "exec", ns, "ip", "addr", "add", peerIP+"/30", "dev", peer)
	sh("netns", "exec", ns, "ip", "link", "set", peer, "up")
	sh("netns", "exec", ns, "ip", "link", "set", "lo", "up")

	w := startWorkerOn(t, Config{Keepalive: time.Second, KeepaliveInterval: time.Second, KeepaliveCount: 3}, hostIP+":0")
	startClient(t, "hold", w.addr, "ip", "netns", "exec", ns)
	waitConns(t, w, 1, 5*time.Second)
	if w.BoundBytes() != 256<<20 {
		t.Fatalf("bound %d", w.BoundBytes())
	}
	t0 := time.Now()
	sh("netns", "exec", ns, "ip", "link", "set", peer, "down")
	waitBound(t, w, 0, 15*time.Second)
	took := time.Since(t0)
	evs := w.events.since(0)
	last := evs[len(evs)-1]
	if last.Reason != "dead-peer" {
		t.Fatalf("ended with %+v, want a dead-peer reap", last)
	}
	t.Logf("reaped %v after the link was cut (keepalive 1s + 3 x 1s)", took.Round(100*time.Millisecond))
}

// removeStaleNetns deletes the namespaces and links of earlier runs of
// TestVanishedPeerReapedByKeepalive whose test process is gone (a run
// killed by its timeout cannot clean up).
func removeStaleNetns(t *testing.T) {
	names, _ := filepath.Glob("/run/netns/boxtest*")
	for _, p := range names {
		var pid int
		if _, err := fmt.Sscanf(filepath.Base(p), "boxtest%d", &pid); err != nil || pid == os.Getpid() {
			continue
		}
		if syscall.Kill(pid, 0) == nil {
			continue // a run in progress
		}
		exec.Command("ip", "netns", "del", filepath.Base(p)).Run()
		exec.Command("ip", "link", "del", fmt.Sprintf("bxh%d", pid)).Run()
		t.Logf("removed the stale namespace %s", filepath.Base(p))
	}
}

func startWorkerOn(t *testing.T, cfg Config, addr string) *testWorker {
	t.Helper()
	return startWorkerAt(t, cfg, "", addr)
}

func TestIdleTimeoutReaps(t *testing.T) {
	w := startWorker(t, Config{IdleTimeout: 300 * time.Millisecond})
	c := dial(t, w.addr)
	if _, _, err := c.AllocBuffer(context.Background(), 0, 1<<20); err != nil {
		t.Fatal(err)
	}
	waitBound(t, w, 0, 3*time.Second)
	evs := w.events.since(0)
	if last := evs[len(evs)-1]; last.Reason != "idle" {
		t.Fatalf("ended with %+v", last)
	}
}

func TestQuotas(t *testing.T) {
	w := startWorker(t, Config{MaxMemory: 8 << 20, MaxMemoryPerConn: 6 << 20})
	ctx := context.Background()
	a, b := dial(t, w.addr), dial(t, w.addr)
	if h, _, err := a.AllocBuffer(ctx, 0, 4<<20); err != nil || h == 0 {
		t.Fatalf("first alloc: %d %v", h, err)
	}
	// Per connection: 4 + 4 > 6 MiB.
	if h, size, err := a.AllocBuffer(ctx, 0, 4<<20); err != nil || h != 0 || size != 0 {
		t.Fatalf("over the per-connection quota: handle %d size %d err %v", h, size, err)
	}
	// Per device: 4 + 5 > 8 MiB, though b alone is under its limit.
	if h, _, err := b.AllocBuffer(ctx, 0, 5<<20); err != nil || h != 0 {
		t.Fatalf("over the device quota: handle %d err %v", h, err)
	}
	// Refusals are soft: both connections still work.
	if h, _, err := b.AllocBuffer(ctx, 0, 3<<20); err != nil || h == 0 {
		t.Fatalf("within quota: %d %v", h, err)
	}
	// The device reports the quota as its memory, so a head plans within it.
	free, total, err := a.GetDeviceMemory(ctx, 0)
	if err != nil || total != 8<<20 || free != 1<<20 {
		t.Fatalf("device memory free %d total %d err %v", free, total, err)
	}
	metrics := get(t, w.admin+"/metrics")
	for _, want := range []string{`box_worker_quota_refusals_total{limit="max-memory"} 1`, `box_worker_quota_refusals_total{limit="max-memory-per-conn"} 1`,
		`box_worker_bound_bytes{device="CPU"} 7.340032e+06`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	// A 2^62-byte request fails cleanly too.
	if h, _, err := b.AllocBuffer(ctx, 0, 1<<62); err != nil || h != 0 {
		t.Fatalf("absurd alloc: %d %v", h, err)
	}
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func TestAdminAPIShowsBindingsAndClosesConnections(t *testing.T) {
	w := startWorker(t, Config{})
	ctx := context.Background()
	c := dial(t, w.addr)
	h1, _, _ := c.AllocBuffer(ctx, 0, 1<<20)
	h2, _, _ := c.AllocBuffer(ctx, 0, 3<<20)

	var node NodeInfo
	if err := json.Unmarshal([]byte(get(t, w.admin+"/v1/node")), &node); err != nil {
		t.Fatal(err)
	}
	if node.Protocol != "3.6.0" || node.BoundBytes != 4<<20 || len(node.Devices) != 1 || node.Devices[0].BoundBytes != 4<<20 || node.Connections != 1 {
		t.Fatalf("node %+v", node)
	}
	var conns struct{ Connections []ConnInfo }
	if err := json.Unmarshal([]byte(get(t, w.admin+"/v1/connections")), &conns); err != nil {
		t.Fatal(err)
	}
	if len(conns.Connections) != 1 {
		t.Fatalf("connections %+v", conns)
	}
	ci := conns.Connections[0]
	if ci.State != "serving" || ci.Bytes != 4<<20 || len(ci.Buffers) != 2 || ci.Buffers[0].ID != h1 || ci.Buffers[1].ID != h2 ||
		ci.Buffers[1].Size != 3<<20 || ci.Buffers[0].Device != "CPU" {
		t.Fatalf("connection %+v", ci)
	}

	resp, err := http.Post(fmt.Sprintf("%s/v1/connections/%d/close", w.admin, ci.ID), "", nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("close: %v %v", resp, err)
	}
	resp.Body.Close()
	if w.BoundBytes() != 0 {
		t.Fatalf("bound %d right after the operator close answered", w.BoundBytes())
	}
	if _, err := c.DeviceCount(ctx); err == nil {
		t.Fatal("closed connection still answers")
	}
	resp, _ = http.Post(w.admin+"/v1/connections/999/close", "", nil)
	if resp.StatusCode != 404 {
		t.Fatalf("closing an unknown connection: %d", resp.StatusCode)
	}
	resp.Body.Close()

	var evs struct{ Events []Event }
	json.Unmarshal([]byte(get(t, w.admin+"/v1/events")), &evs)
	kinds := []string{}
	for _, e := range evs.Events {
		kinds = append(kinds, string(e.Kind)+"/"+string(e.Reason))
	}
	if got := strings.Join(kinds, ","); got != "connect/,closed-by-operator/,disconnect/operator" {
		t.Fatalf("events %s", got)
	}
	// The streaming form replays, then follows.
	req, _ := http.NewRequestWithContext(ctx, "GET", w.admin+"/v1/events?follow=1&after=2", nil)
	sresp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer sresp.Body.Close()
	br := bufio.NewReader(sresp.Body)
	line, _ := br.ReadString('\n')
	if !strings.Contains(line, `"kind":"disconnect"`) {
		t.Fatalf("stream replay: %q", line)
	}
	dial(t, w.addr)
	for {
		line, err = br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(line, `"kind":"connect"`) {
			break
		}
	}
}

func TestCorruptCacheFileIsNeverServed(t *testing.T) {
	dir := t.TempDir()
	w := startWorker(t, Config{CacheDir: dir})
	ctx := context.Background()
	c := dial(t, w.addr)
	const n = rpc.HashThreshold + 4
	data := make([]byte, n)
	for i := range data {
		data[i] = byte(7 * i)
	}
	h, _, _ := c.AllocBuffer(ctx, 0, n)
	base, _ := c.BufferGetBase(ctx, h)
	tt := rpc.Tensor{ID: 1, Type: 24 /* I8 */, Buffer: h, NE: [4]uint32{n, 1, 1, 1}, NB: [4]uint32{1, n, n, n}, Data: base}
	if err := c.SetTensor(ctx, tt, 0, data); err != nil {
		t.Fatal(err)
	}
	c.DeviceCount(ctx)
	hash := rpc.FNV1a64(data)
	files, _ := filepath.Glob(filepath.Join(dir, "t-*", fmt.Sprintf("%016x.*", hash)))
	if len(files) != 1 {
		t.Fatalf("cache entries for the upload: %v", files)
	}
	file := files[0]
	if hash != 0x86fa320a4d504445 {
		t.Fatalf("hash %x, want the protocol's test vector", hash)
	}
	// The entry header (24 bytes), then a pad of under a page that gives
	// the data its page offset in the worker's memory.
	if st, err := os.Stat(file); err != nil || st.Size() < n+24 || st.Size() >= n+24+int64(os.Getpagesize()) {
		t.Fatalf("cache file: %v %v", st, err)
	}
	c.BufferClear(ctx, h, 0)
	if ok, err := c.SetTensorHash(ctx, tt, 0, hash); err != nil || !ok {
		t.Fatalf("cached upload: %v %v", ok, err)
	}
	got, _ := c.GetTensor(ctx, tt, 0, 64)
	if string(got) != string(data[:64]) {
		t.Fatal("cached data differs")
	}
	good, _ := os.ReadFile(file)
	// Truncate it, as a crash mid-write of a naive cache would: refused and removed.
	os.Truncate(file, n-100)
	if ok, err := c.SetTensorHash(ctx, tt, 0, hash); err != nil || ok {
		t.Fatalf("truncated cache file served: %v %v", ok, err)
	}
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Fatalf("truncated file kept: %v", err)
	}
	// Corrupt content of the right size: same.
	bad := append([]byte(nil), good...)
	bad[12345] ^= 0xff
	os.WriteFile(file, bad, 0o644)
	if ok, _ := c.SetTensorHash(ctx, tt, 0, hash); ok {
		t.Fatal("corrupt cache file served")
	}
	if ents, _ := os.ReadDir(filepath.Dir(file)); len(ents) != 0 {
		t.Fatalf("cache dir holds %d entries", len(ents))
	}
}

// With the leak fault, a compute process outlives its connection: the
// supervisor keeps its bytes accounted (the process still holds them),
// shows the connection closed with its buffers, and raises "unreleased";
// an operator close, or the worker's shutdown, kills the process and the
// memory comes back.
func TestLeakFaultKeepsBuffersUntilKilled(t *testing.T) {
	for _, end := range []string{"operator", "shutdown"} {
		t.Run(end, func(t *testing.T) {
			w := startWorkerFault(t, Config{Grace: time.Second}, computetest.LeakOnDisconnect)
			c := dial(t, w.addr)
			if h, _, err := c.AllocBuffer(context.Background(), 0, 3<<20); err != nil || h == 0 {
				t.Fatal(err)
			}
			c.Close()
			var conns []ConnInfo
			waitFor := time.Now().Add(5 * time.Second)
			for {
				conns = w.Connections()
				if len(conns) == 1 && conns[0].State == api.StateClosed {
					break
				}
				if time.Now().After(waitFor) {
					t.Fatalf("connections %+v", conns)
				}
				time.Sleep(10 * time.Millisecond)
			}
			if w.BoundBytes() != 3<<20 || len(conns[0].Buffers) != 1 || conns[0].PID == 0 {
				t.Fatalf("bound %d, conn %+v: want the leaked 3 MiB in one buffer of a live process", w.BoundBytes(), conns[0])
			}
			waitEvent(t, w, api.EventUnreleased, 5*time.Second)
			switch end {
			case "operator":
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				if found, err := w.CloseConn(ctx, conns[0].ID); !found || err != nil {
					t.Fatalf("close: %v %v", found, err)
				}
			case "shutdown":
				done := make(chan struct{})
				go func() { w.stop(); close(done) }()
				select {
				case <-done:
				case <-time.After(5 * time.Second):
					t.Fatal("shutdown hung with a leaking process")
				}
			}
			if w.BoundBytes() != 0 || processAlive(conns[0].PID) {
				t.Fatalf("bound %d, process %d alive %v after %s", w.BoundBytes(), conns[0].PID, processAlive(conns[0].PID), end)
			}
		})
	}
}

// waitEvent waits for an event of kind and returns it.
func waitEvent(t testing.TB, w *testWorker, kind EventKind, within time.Duration) Event {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		for _, e := range w.events.since(0) {
			if e.Kind == kind {
				return e
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s event within %v: %+v", kind, within, w.events.since(0))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// processAlive reports whether pid exists and is not a zombie.
func processAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	_, rest, _ := strings.Cut(string(b), ") ")
	return !strings.HasPrefix(rest, "Z")
}
