package tui

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/boxproj/box/api"
	"github.com/boxproj/box/probe"
	"github.com/boxproj/box/worker"
	"github.com/boxproj/box/worker/workertest"
)

// findAlert is the first alert of kind on node: an active one, or the
// newest in the log.
func findAlert(s Snapshot, kind, node string) *Alert {
	for i, a := range s.Alerts {
		if a.Kind == kind && a.Node == node {
			return &s.Alerts[i]
		}
	}
	return nil
}

func TestParseTargets(t *testing.T) {
	got, err := ParseTargets("w1=127.0.0.1:50053, http://10.0.0.6:50053/ ,,")
	if err != nil {
		t.Fatal(err)
	}
	want := []Target{{Name: "w1", URL: "http://127.0.0.1:50053"}, {Name: "10.0.0.6:50053", URL: "http://10.0.0.6:50053"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v", got)
	}
	if _, err := ParseTargets("w1="); err == nil {
		t.Fatal("empty URL accepted")
	}
}

func TestPollerBindingsHistoryAndDown(t *testing.T) {
	w1, w2 := workertest.Start(t, worker.Config{}), workertest.Start(t, worker.Config{})
	p := NewPoller(Config{Nodes: []Target{{Name: "w1", URL: w1.Admin}, {Name: "w2", URL: w2.Admin}}, Timeout: time.Second, Now: fixedNow})
	ctx := context.Background()

	s := p.Poll(ctx)
	if len(s.Nodes) != 2 || s.Nodes[0].State != StateUp || s.Nodes[1].State != StateUp || len(alertsOf(s)) != 0 {
		t.Fatalf("first poll: %+v", s)
	}
	c := workertest.Dial(t, w1.Addr)
	h1 := workertest.Alloc(t, c, 1<<20)
	workertest.Alloc(t, c, 3<<20)
	s = p.Poll(ctx)
	n := s.Nodes[0]
	if n.Info.BoundBytes != 4<<20 || len(n.Conns) != 1 || len(n.Conns[0].Buffers) != 2 || n.Conns[0].Bytes != 4<<20 {
		t.Fatalf("after allocs: bound %d conns %+v", n.Info.BoundBytes, n.Conns)
	}
	if !reflect.DeepEqual(n.History[0], []uint64{0, 4 << 20}) {
		t.Fatalf("history %v", n.History[0])
	}
	if err := c.FreeBuffer(ctx, h1); err != nil {
		t.Fatal(err)
	}
	// From protocol 6.0 FREE_BUFFER has no answer: an answered command
	// behind it says it is done.
	if _, err := c.DeviceCount(ctx); err != nil {
		t.Fatal(err)
	}
	s = p.Poll(ctx)
	if n := s.Nodes[0]; n.Info.BoundBytes != 3<<20 || len(n.Conns[0].Buffers) != 1 || !reflect.DeepEqual(n.History[0], []uint64{0, 4 << 20, 3 << 20}) {
		t.Fatalf("after free: %d %+v %v", n.Info.BoundBytes, n.Conns, n.History[0])
	}
	// The client goes away: the worker frees everything, no alert.
	c.Close()
	waitFor(t, "w1 back to 0", func() bool { return w1.BoundBytes() == 0 })
	s = p.Poll(ctx)
	if n := s.Nodes[0]; n.State != StateUp || len(n.Conns) != 0 || n.Info.BoundBytes != 0 || len(alertsOf(s)) != 0 {
		t.Fatalf("after close: %+v alerts %+v", n, s.Alerts)
	}
	// w2 goes down: listed as down with its last devices, w1 still polled.
	w2.Stop()
	c2 := workertest.Dial(t, w1.Addr)
	workertest.Alloc(t, c2, 2<<20)
	s = p.Poll(ctx)
	d := s.Nodes[1]
	if d.State != StateDown || !d.DownSince.Equal(t0) || len(d.Info.Devices) != 1 || d.Error == "" {
		t.Fatalf("w2 down: %+v", d)
	}
	if s.Nodes[0].State != StateUp || s.Nodes[0].Info.BoundBytes != 2<<20 {
		t.Fatalf("w1 not updated while w2 down: %+v", s.Nodes[0])
	}
	if a := findAlert(s, AlertDown, "w2"); a == nil || !a.Active || !strings.HasPrefix(a.Text, "unreachable: ") {
		t.Fatalf("down alert: %+v", s.Alerts)
	}
	// Snapshots are copies: the poller's next poll does not change them.
	before := s.Nodes[0].History[0][len(s.Nodes[0].History[0])-1]
	p.Poll(ctx)
	if s.Nodes[0].History[0][len(s.Nodes[0].History[0])-1] != before {
		t.Fatal("snapshot shares history with the poller")
	}
}

func TestPollerLeakAlerts(t *testing.T) {
	w := workertest.Start(t, worker.Config{}, workertest.LeakOnDisconnect)
	p := NewPoller(Config{Nodes: []Target{{Name: "leaky", URL: w.Admin}}, Timeout: time.Second, Now: fixedNow})
	ctx := context.Background()
	c := workertest.Dial(t, w.Addr)
	workertest.Alloc(t, c, 2<<20)
	s := p.Poll(ctx)
	if s.Nodes[0].State != StateUp || len(alertsOf(s)) != 0 {
		t.Fatalf("before: %+v %+v", s.Nodes[0], s.Alerts)
	}
	c.Close()
	waitFor(t, "connection reported closed", func() bool {
		cs := w.Connections()
		return len(cs) == 1 && cs[0].State == "closed"
	})
	s = p.Poll(ctx)
	n := s.Nodes[0]
	if n.State != StateDegraded || !strings.Contains(n.Error, "buffers on a closed connection") {
		t.Fatalf("leaky node: %s %q", n.State, n.Error)
	}
	if a := findAlert(s, AlertOrphan, "leaky"); a == nil || a.Text != "conn 1 is closed but holds 1 buffers (2.0 MiB)" {
		t.Fatalf("orphan alert: %+v", s.Alerts)
	}
	// The worker says so too, once the process has outlived its
	// connection for a moment.
	waitFor(t, "an unreleased event", func() bool {
		s = p.Poll(ctx)
		a := findAlert(s, AlertUnfreed, "leaky")
		return a != nil && strings.Contains(a.Text, "conn 1 ended but 2.0 MiB was not given back")
	})
	// An operator close frees what the leak kept: the closed connection is
	// gone, but nothing is bound to a live connection any more either.
	if err := (api.Client{}).Close(ctx, w.Admin, 1); err != nil {
		t.Fatal(err)
	}
	s = p.Poll(ctx)
	// The orphan alert has ended and stays in the log with its duration.
	if n, a := s.Nodes[0], findAlert(s, AlertOrphan, "leaky"); n.State != StateUp || n.Info.BoundBytes != 0 || a == nil || a.Active || a.End.IsZero() {
		t.Fatalf("after operator close: %+v %+v", n, s.Alerts)
	}
}

func TestPollerBaselineAlert(t *testing.T) {
	// A worker that reports bytes bound to no connection after one ended:
	// served by a stub, since a real worker frees them.
	var bound uint64 = 1 << 20
	conns := `[{"id":1,"peer":"10.0.0.2:1","state":"serving","bytes":1048576,"buffers":[{"id":1,"device":"CPU","size":1048576}]}]`
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/node", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(api.NodeInfo{Version: "x", Protocol: "3.6.0", BoundBytes: bound,
			Devices: []api.DeviceInfo{{Name: "CPU", MemoryTotal: 1 << 30, MemoryFree: 1 << 29, BoundBytes: bound}}})
	})
	mux.HandleFunc("GET /v1/connections", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"connections":` + conns + `}`))
	})
	mux.HandleFunc("GET /v1/events", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(`{"events":[]}`)) })
	srv := httptest.NewServer(mux)
	defer srv.Close()
	p := NewPoller(Config{Nodes: []Target{{Name: "stub", URL: srv.URL}}, Now: fixedNow})
	ctx := context.Background()
	if s := p.Poll(ctx); len(alertsOf(s)) != 0 {
		t.Fatalf("%+v", s.Alerts)
	}
	conns = `[]` // conn 1 ended, its megabyte stays bound
	s := p.Poll(ctx)
	if a := findAlert(s, AlertBaseline, "stub"); a == nil || a.Text != "1.0 MiB not returned after conn 1 ended" {
		t.Fatalf("baseline alert: %+v", s.Alerts)
	}
	if s.Nodes[0].State != StateDegraded {
		t.Fatalf("state %s", s.Nodes[0].State)
	}
	bound = 0 // back to baseline: the alert ends, and stays in the log
	s = p.Poll(ctx)
	if a := findAlert(s, AlertBaseline, "stub"); a == nil || a.Active || a.End.IsZero() || s.Nodes[0].State != StateUp {
		t.Fatalf("after return: %+v", s.Alerts)
	}
}

func TestPollerQuotaReapedAndGPUAlerts(t *testing.T) {
	w := workertest.Start(t, worker.Config{MaxMemoryPerConn: 1 << 20, IdleTimeout: 200 * time.Millisecond})
	nv := &probe.NVML{Available: true, GPUs: []probe.GPU{{Index: 0, Processes: []probe.Process{
		{PID: 10, Name: "box", UsedMemory: 1 << 30, Box: true}, {PID: 4242, Name: "python3", UsedMemory: 3 << 30}}}}}
	p := NewPoller(Config{Nodes: []Target{{Name: "q", URL: w.Admin}}, Now: fixedNow, NVML: func() *probe.NVML { return nv }})
	c := workertest.Dial(t, w.Addr)
	if h, _, err := c.AllocBuffer(context.Background(), 0, 2<<20); err != nil || h != 0 {
		t.Fatalf("quota should refuse softly: %d %v", h, err)
	}
	waitFor(t, "idle reap", func() bool { return len(w.Connections()) == 0 })
	s := p.Poll(context.Background())
	if a := findAlert(s, AlertQuota, "q"); a == nil || !strings.HasPrefix(a.Text, "quota refused conn 1") {
		t.Fatalf("quota alert: %+v", s.Alerts)
	}
	if a := findAlert(s, AlertReaped, "q"); a == nil || !strings.Contains(a.Text, "reaped conn 1") || !strings.Contains(a.Text, "idle") {
		t.Fatalf("reaped alert: %+v", s.Alerts)
	}
	a := findAlert(s, AlertGPU, "local")
	if a == nil || a.Text != "GPU0: python3 (pid 4242) holds 3.0 GiB outside box" || !a.Active {
		t.Fatalf("gpu alert: %+v", s.Alerts)
	}
	// Event alerts are reported once, not again on the next poll.
	s = p.Poll(context.Background())
	var quota int
	for _, a := range s.Alerts {
		if a.Kind == AlertQuota {
			quota++
		}
	}
	if quota != 1 {
		t.Fatalf("%d quota alerts after two polls", quota)
	}
}

func TestPollerHead(t *testing.T) {
	w1, w2 := workertest.Start(t, worker.Config{}), workertest.Start(t, worker.Config{})
	cluster := api.ClusterView{State: "degraded", Workers: []api.ClusterWorker{
		{Addr: "10.0.0.1:50052", Admin: w1.Admin, State: "up", Devices: []string{"RPC[10.0.0.1:50052]#0"}},
		{Addr: "10.0.0.2:50052", Admin: w2.Admin, State: "down", Error: "EOF", DownSince: t0},
		{Addr: "10.0.0.3:50052", State: "up"},
		{Addr: "10.0.0.4:50052", State: "down", Error: "EOF", DownSince: t0},
	}}
	head := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/cluster" {
			http.NotFound(w, r)
			return
		}
		json.NewEncoder(w).Encode(cluster)
	}))
	p := NewPoller(Config{Head: head.URL, Now: fixedNow, Timeout: time.Second})
	s := p.Poll(context.Background())
	if s.HeadState != "degraded" || s.HeadError != "" || len(s.Nodes) != 4 {
		t.Fatalf("head snapshot: %+v", s)
	}
	if n := s.Nodes[0]; n.Name != "10.0.0.1:50052" || n.URL != w1.Admin || n.State != StateUp {
		t.Fatalf("worker 1: %+v", n)
	}
	if n := s.Nodes[1]; n.State != StateDegraded || n.Error != "head lost it: EOF" {
		t.Fatalf("worker 2 (head says down, admin up): %+v", n)
	}
	// Workers with no admin API (an rpc-server, or --rpc host:port@) take
	// their state from the head.
	if n := s.Nodes[2]; n.State != StateUp || !strings.Contains(n.Error, "no admin API") {
		t.Fatalf("worker 3 (no admin URL, up for the head): %+v", n)
	}
	if n := s.Nodes[3]; n.State != StateDown || n.Error != "the head says: EOF" || !n.DownSince.Equal(t0) {
		t.Fatalf("worker 4 (no admin URL, down for the head): %+v", n)
	}
	// Close goes to the worker's admin URL by node name.
	c := workertest.Dial(t, w1.Addr)
	workertest.Alloc(t, c, 1<<20)
	if err := p.Close(context.Background(), "10.0.0.1:50052", 1); err != nil {
		t.Fatal(err)
	}
	if w1.BoundBytes() != 0 {
		t.Fatalf("close via head target left %d bytes", w1.BoundBytes())
	}
	// The head goes away: its workers stay watched.
	head.Close()
	s = p.Poll(context.Background())
	if !strings.Contains(s.HeadError, "head ") || len(s.Nodes) != 4 || s.Nodes[0].State != StateUp {
		t.Fatalf("head down: %+v", s)
	}
}
