package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/charmbracelet/lipgloss"

	"github.com/boxproj/box/probe"
	"github.com/boxproj/box/worker"
	"github.com/boxproj/box/worker/workertest"
)

func runBox(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestProbeCommand(t *testing.T) {
	w := workertest.Start(t, worker.Config{})
	workertest.Alloc(t, workertest.Dial(t, w.Addr), 3<<20)

	// boxtop's name=URL names a node.
	code, out, errs := runBox("box", "probe", "--admin", "w1="+w.Admin, "--rpc", w.Addr)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	adminRow := ""
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "│ w1 ") {
			adminRow = l
		}
	}
	for _, want := range []string{"3.0 MiB", "CPU", "3.6.0 (box test)", "ok"} {
		if !strings.Contains(adminRow, want) {
			t.Errorf("admin row lacks %q: %q", want, adminRow)
		}
	}
	if !strings.Contains(out, "RPC0") || !strings.Contains(out, "NODE") || !strings.Contains(out, "OTHERS") {
		t.Errorf("table:\n%s", out)
	}

	// JSON, with a dead node: exit 1, every node still reported.
	dead := workertest.FreeAddr(t)
	code, out, errs = runBox("box", "probe", "--json", "--timeout", "2s", "--admin", w.Admin, "--rpc", dead)
	if code != 1 || !strings.Contains(errs, "1 of 2 nodes did not answer") {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
	var rep probe.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if rep.Schema != probe.SchemaVersion || len(rep.Nodes) != 2 || rep.Nodes[0].BoundBytes != 3<<20 ||
		rep.Nodes[1].Reachable || rep.Nodes[1].Error != "connection refused" {
		t.Fatalf("report %+v", rep)
	}
	if b, ok := rep.Nodes[0].Devices[0].Bound(); !ok || b != 3<<20 {
		t.Fatalf("device bound %d %v", b, ok)
	}

	// No targets: the local node.
	code, out, errs = runBox("box", "probe")
	if code != 0 || !strings.Contains(out, "local") || !strings.Contains(out, "CPU") || !strings.Contains(out, "RAM ") ||
		!strings.Contains(out, "NVML") {
		t.Fatalf("local: exit %d\n%s\n%s", code, out, errs)
	}
	code, out, _ = runBox("box", "probe", "--json")
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != 0 || rep.Nodes[0].Kind != probe.KindLocal || rep.Nodes[0].NVML == nil {
		t.Fatalf("local json: %d %v %s", code, err, out)
	}

	// Usage errors exit 2.
	for _, args := range [][]string{{"box", "probe", "--bogus"}, {"box", "probe", "--timeout", "0s"}, {"box", "probe", "extra"}} {
		if code, _, _ := runBox(args...); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
}

func TestTopOnce(t *testing.T) {
	w := workertest.Start(t, worker.Config{})
	workertest.Alloc(t, workertest.Dial(t, w.Addr), 5<<20)
	code, out, errs := runBox("box", "top", "--once", "--nvml", "off", "--nodes", "w1="+w.Admin)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for i, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if lipgloss.Width(l) > 80 {
			t.Errorf("line %d is %d wide", i, lipgloss.Width(l))
		}
	}
	for _, want := range []string{"boxtop", "1 node: 1 up", "5.0 MiB bound", "w1", "CONNECTIONS · w1 (1)", "serving", "EVENTS ("} {
		if !strings.Contains(out, want) {
			t.Errorf("frame lacks %q:\n%s", want, out)
		}
	}
	// Reached through a link named boxtop, with a wider frame and a dead node.
	dead := workertest.FreeAddr(t)
	code, out, errs = runBox("/usr/local/bin/boxtop", "--once", "--width", "120", "--nvml", "off", "--nodes", w.Admin+",dead=http://"+dead)
	if code != 1 || !strings.Contains(errs, "1 of 2 nodes down") {
		t.Fatalf("boxtop: exit %d, %q", code, errs)
	}
	widest := 0
	for _, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		widest = max(widest, lipgloss.Width(l))
	}
	if widest != 120 || !strings.Contains(out, "down since") {
		t.Fatalf("width %d:\n%s", widest, out)
	}
	for _, args := range [][]string{{"box", "top", "--once"}, {"box", "top", "--nodes", "x", "--head", "y"},
		{"boxtop", "--nodes", "x", "--width", "10"}, {"boxtop", "--nodes", "x", "--nvml", "maybe"}} {
		if code, _, _ := runBox(args...); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
}
