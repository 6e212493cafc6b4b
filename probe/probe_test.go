package probe

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/boxproj/box/rpc"
	"github.com/boxproj/box/worker"
	"github.com/boxproj/box/worker/workertest"
)

// The test binary is also the test workers' compute process.
func TestMain(m *testing.M) { workertest.Main(m) }

func TestRemoteAgainstRealWorkers(t *testing.T) {
	w1, w2 := workertest.Start(t, worker.Config{}), workertest.Start(t, worker.Config{})
	c := workertest.Dial(t, w1.Addr)
	ctx := context.Background()
	workertest.Alloc(t, c, 1<<20)
	workertest.Alloc(t, c, 3<<20)
	dead := workertest.FreeAddr(t)
	rep := Remote(ctx, Targets{Admin: []string{w1.Admin, strings.TrimPrefix(w2.Admin, "http://"), "http://" + dead},
		RPC: []string{w2.Addr, dead}}, 3*time.Second)

	if rep.Schema != SchemaVersion || len(rep.Nodes) != 5 {
		t.Fatalf("schema %d, %d nodes", rep.Schema, len(rep.Nodes))
	}
	n1 := rep.Nodes[0]
	if !n1.Reachable || n1.Status != "ok" || n1.Kind != KindAdmin || n1.Protocol != "3.6.0" || n1.Version != "test" {
		t.Fatalf("w1 admin: %+v", n1)
	}
	if n1.BoundBytes != 4<<20 || n1.Connections != 1 || len(n1.Conns) != 1 || n1.Conns[0].Buffers != 2 || n1.Conns[0].Bytes != 4<<20 {
		t.Fatalf("w1 bindings: bound %d conns %d %+v", n1.BoundBytes, n1.Connections, n1.Conns)
	}
	d := n1.Devices[0]
	if b, ok := d.Bound(); !ok || b != 4<<20 || d.Source != SourceAdmin || d.MemoryTotal == 0 {
		t.Fatalf("w1 device: %+v", d)
	}
	if o, ok := d.Others(); !ok || o != d.MemoryTotal-d.MemoryFree-4<<20 && o != 0 {
		t.Fatalf("w1 others %d (total %d free %d)", o, d.MemoryTotal, d.MemoryFree)
	}
	n2 := rep.Nodes[1]
	if n2.Name != w2.Admin || !n2.Reachable || n2.BoundBytes != 0 { // (the RPC probe of w2 may be connected)
		t.Fatalf("w2 admin (bare host:port gets http://): %+v", n2)
	}
	if n := rep.Nodes[2]; n.Reachable || n.Status != "unreachable" || n.Error != "connection refused" {
		t.Fatalf("dead admin: %+v", n)
	}
	r := rep.Nodes[3]
	// A box worker answers a current client at the newest protocol it speaks.
	if !r.Reachable || r.Kind != KindRPC || r.Protocol != "7.0.0" || len(r.Devices) != len(w2.Node("").Devices) {
		t.Fatalf("w2 rpc: %+v", r)
	}
	if r.Devices[0].MemoryTotal == 0 || r.Devices[0].BoundBytes != nil || r.Devices[0].Source != SourceRPC {
		t.Fatalf("rpc device: %+v", r.Devices[0])
	}
	if n := rep.Nodes[4]; n.Reachable || n.Error != "connection refused" {
		t.Fatalf("dead rpc: %+v", n)
	}
	if rep.AllReachable() {
		t.Fatal("AllReachable with dead nodes")
	}
	// The RPC probe left no connection behind on w2.
	deadline := time.Now().Add(2 * time.Second)
	for len(w2.Connections()) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("rpc probe left %d connections", len(w2.Connections()))
		}
		time.Sleep(10 * time.Millisecond)
	}
	ok := Remote(ctx, Targets{Admin: []string{w1.Admin}, RPC: []string{w1.Addr}}, 3*time.Second)
	if !ok.AllReachable() {
		t.Fatalf("live nodes not all reachable: %+v", ok.Nodes)
	}
}

// fakeRPC answers HELLO with the given version, like an rpc-server of
// another release, or never answers (busy rpc-server).
func fakeRPC(t *testing.T, version []byte, answer bool) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				cmd, _, err := rpc.ReadRequestHeader(c)
				if err != nil || cmd != rpc.CmdHello {
					return
				}
				if !answer {
					io.Copy(io.Discard, c)
					return
				}
				rpc.WriteResponse(c, version)
				io.Copy(io.Discard, c)
			}()
		}
	}()
	return ln.Addr().String()
}

func TestRPCOtherVersionAndBusy(t *testing.T) {
	old := fakeRPC(t, []byte{3, 5, 0}, true)
	n := RPC(context.Background(), old)
	if !n.Reachable || n.Status != "incompatible" || n.Protocol != "3.5.0" || !strings.Contains(n.Error, "box needs 3.6.0") {
		t.Fatalf("3.5.0 server: %+v", n)
	}
	busy := fakeRPC(t, nil, false)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	n = RPC(ctx, busy)
	if n.Reachable || n.Status != "unreachable" || !strings.Contains(n.Error, "timed out") {
		t.Fatalf("busy server: %+v", n)
	}
}

func TestHostMemory(t *testing.T) {
	root := t.TempDir()
	write := func(p, s string) {
		os.MkdirAll(filepath.Dir(filepath.Join(root, p)), 0o755)
		if err := os.WriteFile(filepath.Join(root, p), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("proc/meminfo", "MemTotal:       16384000 kB\nMemFree:         1000 kB\nMemAvailable:    8192000 kB\n")
	write("proc/self/cgroup", "0::/box.slice/worker\n")
	write("sys/fs/cgroup/box.slice/worker/memory.max", "4294967296\n")
	write("sys/fs/cgroup/box.slice/worker/memory.current", "1073741824\n")
	h, err := HostMemory(root)
	if err != nil {
		t.Fatal(err)
	}
	want := Host{MemTotal: 16384000 * 1024, MemAvailable: 8192000 * 1024,
		Cgroup: &Cgroup{Path: "/box.slice/worker", Limit: 4 << 30, Current: 1 << 30}}
	if !reflect.DeepEqual(h, want) {
		t.Fatalf("got %+v %+v, want %+v %+v", h, h.Cgroup, want, want.Cgroup)
	}
	// Unlimited cgroup: no Cgroup.
	write("sys/fs/cgroup/box.slice/worker/memory.max", "max\n")
	if h, err := HostMemory(root); err != nil || h.Cgroup != nil {
		t.Fatalf("unlimited: %+v %v", h.Cgroup, err)
	}
	// A cgroup namespace: the listed path does not exist, the root is ours.
	write("proc/self/cgroup", "0::/elsewhere\n")
	write("sys/fs/cgroup/memory.max", "2147483648\n")
	if h, err := HostMemory(root); err != nil || h.Cgroup == nil || h.Cgroup.Limit != 2<<30 {
		t.Fatalf("namespaced: %+v %v", h.Cgroup, err)
	}
	write("proc/meminfo", "MemTotal: 1 kB\n")
	if _, err := HostMemory(root); err == nil {
		t.Fatal("meminfo without MemAvailable accepted")
	}
	// And this machine's.
	h, err = HostMemory("/")
	if err != nil || h.MemTotal == 0 || h.MemAvailable == 0 || h.MemAvailable > h.MemTotal {
		t.Fatalf("this host: %+v %v", h, err)
	}
}

// fullReport sets every field, so the round trip and the field list cover
// the whole schema.
func fullReport() Report {
	u := func(v uint64) *uint64 { return &v }
	t0 := time.Date(2026, 11, 27, 20, 50, 0, 0, time.UTC)
	return Report{Schema: 1, Time: t0, Nodes: []Node{{
		Name: "local", Kind: KindLocal, Address: "gpu1", Reachable: true, Status: "ok", Error: "e", Version: "dev",
		Protocol: "3.6.0", Connections: 2, BoundBytes: 5,
		Devices: []Device{{Index: 0, Name: "CPU", Description: "x", Type: "cpu", Source: SourceAdmin, MemoryTotal: 10,
			MemoryFree: 4, BoundBytes: u(5), UsedByOthers: u(1), MaxMemory: 8}},
		Conns: []Conn{{ID: 3, Peer: "10.0.0.1:4000", State: "serving", Since: t0, LastActivity: t0, Bytes: 5, Buffers: 1}},
		Host:  &Host{MemTotal: 100, MemAvailable: 50, Cgroup: &Cgroup{Path: "/x", Limit: 80, Current: 20}},
		NVML: &NVML{Available: true, Status: "ok", DriverVersion: "550", GPUs: []GPU{{Index: 0, Name: "H100", UUID: "GPU-1",
			MemoryTotal: 80, MemoryUsed: 10, MemoryFree: 70, UtilizationGPU: 1, UtilizationMemory: 2, TemperatureC: 40,
			PowerMW: 100, Processes: []Process{{PID: 1, Name: "box", UsedMemory: 10, Box: true}}}}},
	}}}
}

func TestJSONRoundTrip(t *testing.T) {
	in := fullReport()
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var out Report
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, out) {
		t.Fatalf("round trip differs:\n%+v\n%+v", in, out)
	}
	// Every field name is documented in SCHEMA.md and in the package doc,
	// and the set is exactly the documented one (names are stable).
	var generic any
	json.Unmarshal(b, &generic)
	keys := map[string]bool{}
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				keys[k] = true
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(generic)
	var got []string
	for k := range keys {
		got = append(got, k)
	}
	sort.Strings(got)
	want := []string{"address", "available", "bound_bytes", "box", "buffers", "bytes", "cgroup", "connections", "conns",
		"current", "description", "devices", "driver_version", "error", "gpus", "host", "id", "index", "kind",
		"last_activity", "limit", "max_memory", "mem_available", "mem_total", "memory_free", "memory_total",
		"memory_used", "name", "nodes", "nvml", "path", "peer", "pid", "power_mw", "processes", "protocol",
		"reachable", "schema", "since", "source", "state", "status", "temperature_c", "time", "type",
		"used_by_others", "used_memory", "utilization_gpu", "utilization_memory", "uuid", "version"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("JSON field names changed:\ngot  %v\nwant %v", got, want)
	}
	doc, err := os.ReadFile("SCHEMA.md")
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile("probe.go")
	if err != nil {
		t.Fatal(err)
	}
	pkgDoc := string(src[:strings.Index(string(src), "package probe")])
	for _, k := range want {
		re := regexp.MustCompile(`\b` + k + `\b`)
		if !re.Match(doc) {
			t.Errorf("SCHEMA.md does not document %q", k)
		}
		if !re.MatchString(pkgDoc) {
			t.Errorf("the package doc does not list %q", k)
		}
	}
	// Unknown bound and others are absent, not 0.
	b, _ = json.Marshal(Device{Name: "RPC0", Source: SourceRPC, MemoryTotal: 1})
	if strings.Contains(string(b), "bound_bytes") || strings.Contains(string(b), "used_by_others") {
		t.Fatalf("unknown figures serialised: %s", b)
	}
}

func TestHumanBytes(t *testing.T) {
	for n, want := range map[uint64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB",
		4 << 20: "4.0 MiB", 80 << 30: "80.0 GiB", 200 << 30: "200 GiB", 3 << 40: "3.0 TiB"} {
		if got := HumanBytes(n); got != want {
			t.Errorf("HumanBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestCPUMemory(t *testing.T) {
	total, free := CPUMemory(100, 100, Host{MemTotal: 100, MemAvailable: 60})
	if total != 100 || free != 60 {
		t.Fatalf("MemAvailable: %d %d", total, free)
	}
	total, free = CPUMemory(100, 100, Host{MemTotal: 100, MemAvailable: 60, Cgroup: &Cgroup{Limit: 40, Current: 30}})
	if total != 40 || free != 10 {
		t.Fatalf("cgroup: %d %d", total, free)
	}
}
