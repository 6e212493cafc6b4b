package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/boxproj/box/api"
	"github.com/boxproj/box/leakcheck"
	"github.com/boxproj/box/rpc"
	"github.com/boxproj/box/worker/compute/computetest"
)

// leakcheckRun runs `box leakcheck args...` as a real process (its workers
// and heads are real box processes too) and returns its exit code and output.
func leakcheckRun(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := box(append([]string{"leakcheck"}, args...)...)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	go func() {
		<-ctx.Done()
		if cmd.Process != nil {
			cmd.Process.Kill()
		}
	}()
	err := cmd.Run()
	code = 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	t.Logf("box leakcheck %s: exit %d\n%s%s", strings.Join(args, " "), code, out.String(), errOut.String())
	return code, out.String(), errOut.String()
}

// startWorkers starts n box workers and returns the --rpc list.
func startWorkers(t *testing.T, n int) (rpcList string, rpcs, admins []string) {
	return startFaultWorkers(t, n, "")
}

// startFaultWorkers starts n box workers whose compute processes have a
// test fault ("" for none; see package computetest).
func startFaultWorkers(t *testing.T, n int, fault string) (rpcList string, rpcs, admins []string) {
	t.Helper()
	var items []string
	for i := 0; i < n; i++ {
		r, a := "127.0.0.1:"+freePort(t), "127.0.0.1:"+freePort(t)
		cmd := box("worker", "--listen", r, "--admin", a, "--threads", "1", "--log-level", "warn", "--grace", "1s")
		cmd.Env = append(cmd.Env, computetest.FaultEnv(fault)...)
		startCmd(t, cmd)
		waitHTTP(t, "http://"+a+"/v1/node")
		rpcs, admins = append(rpcs, r), append(admins, a)
		items = append(items, r+"@"+a)
	}
	return strings.Join(items, ","), rpcs, admins
}

// readReport decodes --json strictly into the documented struct.
func readReport(t *testing.T, path string) leakcheck.Report {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var rep leakcheck.Report
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rep); err != nil {
		t.Fatalf("--json does not match leakcheck.Report: %v", err)
	}
	return rep
}

func readJUnit(t *testing.T, path string) leakcheck.JUnitSuites {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc leakcheck.JUnitSuites
	if err := xml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("--junit: %v", err)
	}
	return doc
}

// A healthy stack passes every mode: local workers started by leakcheck,
// one cycle per mode, including the vanished head in a network namespace.
func TestLeakcheckHealthyStackPassesEveryMode(t *testing.T) {
	dir := t.TempDir()
	js, ju := filepath.Join(dir, "r.json"), filepath.Join(dir, "r.xml")
	t0 := time.Now()
	code, out, _ := leakcheckRun(t, "--demo", "--cache-dir", dir, "--restarts", "4", "--json", js, "--junit", ju)
	if code != 0 {
		t.Fatalf("exit %d, want 0", code)
	}
	t.Logf("4 cycles in %v", time.Since(t0).Round(100*time.Millisecond))
	rep := readReport(t, js)
	if rep.Verdict != "pass" || len(rep.Cycles) != 4 || !strings.HasPrefix(rep.Summary, "PASS") {
		t.Fatalf("report: %s", rep.Summary)
	}
	for i, want := range []string{"graceful", "kill", "kill-during-load", "vanish"} {
		c := rep.Cycles[i]
		if c.Mode != want || c.Verdict != "pass" || !c.Released || c.After["bound_bytes"] != 0 || c.Peak["bound_bytes"] == 0 {
			t.Fatalf("cycle %d: %+v", i+1, c)
		}
		if want != "kill-during-load" && c.RequestsOK != 2 {
			t.Fatalf("cycle %d answered %d requests", i+1, c.RequestsOK)
		}
	}
	if kd := rep.Cycles[2]; kd.KilledAtBoundBytes == 0 {
		t.Fatalf("kill-during-load killed with nothing bound: %+v", kd)
	}
	if len(rep.Workers) != 2 || !rep.Workers[0].Local || rep.Workers[0].PID == 0 {
		t.Fatalf("workers %+v", rep.Workers)
	}
	if _, ok := rep.Baseline["rss_bytes"]; !ok {
		t.Fatal("no RSS for local workers")
	}
	doc := readJUnit(t, ju)
	if doc.Tests != 5 || doc.Failures != 0 {
		t.Fatalf("junit tests=%d failures=%d", doc.Tests, doc.Failures)
	}
	if !strings.Contains(out, "PASS: all 4 cycles gave the memory back; 4 passed, 0 leaked, 0 foreign, 0 failed;") {
		t.Fatalf("stdout:\n%s", out)
	}
	// The namespace and its links are gone.
	if b, _ := exec.Command("ip", "netns", "list").Output(); strings.Contains(string(b), "boxlc") {
		t.Fatalf("namespace left behind:\n%s", b)
	}
}

// Workers with the leak-on-disconnect fault keep a killed head's buffers:
// leakcheck exits 1 and names the leaked bytes. The same run against normal
// workers exits 0.
func TestLeakcheckCatchesLeakOnDisconnect(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name  string
		fault string
		code  int
	}{
		{"fault", computetest.LeakOnDisconnect, 1},
		{"normal", "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			list, _, _ := startFaultWorkers(t, 2, tc.fault)
			js, ju := filepath.Join(dir, tc.name+".json"), filepath.Join(dir, tc.name+".xml")
			code, out, stderr := leakcheckRun(t, "--demo", "--cache-dir", dir, "--rpc", list, "--modes", "graceful,kill",
				"--restarts", "2", "--release-timeout", "2s", "--json", js, "--junit", ju)
			if code != tc.code {
				t.Fatalf("exit %d, want %d", code, tc.code)
			}
			rep := readReport(t, js)
			doc := readJUnit(t, ju)
			if tc.code == 0 {
				if rep.Verdict != "pass" || doc.Failures != 0 {
					t.Fatalf("%s", rep.Summary)
				}
				return
			}
			// The killed head's connections are closed but hold their buffers.
			kill := rep.Cycles[1]
			if kill.Verdict != "leak" || kill.LeakedBytes == 0 || kill.Released || len(kill.Leaks) == 0 || kill.Leaks[0].State != "closed" {
				t.Fatalf("kill cycle: %+v", kill)
			}
			if !strings.Contains(out, "bytes") || !strings.Contains(out, "still bound on worker") || !strings.Contains(stderr, "LEAK") {
				t.Fatalf("output does not name the leaked bytes:\n%s\n%s", out, stderr)
			}
			failed := false
			for _, c := range doc.Suites[0].Cases {
				if c.Failure != nil && strings.Contains(c.Failure.Message, "bytes") && strings.Contains(c.Failure.Message, "still bound") {
					failed = true
				}
			}
			if !failed || doc.Failures == 0 {
				t.Fatalf("junit names no leaked bytes: %+v", doc)
			}
		})
	}
}

// Exit 2 when leakcheck cannot run: a missing model, a worker that does not
// answer, bad flags.
func TestLeakcheckCannotRunExits2(t *testing.T) {
	dir := t.TempDir()
	dead := "127.0.0.1:" + freePort(t) // nothing listens there
	list, _, _ := startWorkers(t, 1)
	for _, args := range [][]string{
		{"--model", filepath.Join(dir, "missing.gguf"), "--rpc", list, "--modes", "graceful"},
		{"--demo", "--cache-dir", dir, "--rpc", dead, "--modes", "graceful"},
		{"--demo", "--cache-dir", dir, "--rpc", list + "," + dead, "--modes", "graceful"},
		{"--demo", "--modes", "explode"},
		{"--demo", "--restarts", "0"},
		{"--demo", "--tolerance", "lots"},
		{"--demo", "--model", "x.gguf"},
		{},
		// vanish cannot reach loopback workers from a namespace
		{"--demo", "--cache-dir", dir, "--rpc", list, "--modes", "vanish"},
	} {
		code, _, stderr := leakcheckRun(t, args...)
		if code != 2 {
			t.Fatalf("box leakcheck %v: exit %d, want 2", args, code)
		}
		if strings.TrimSpace(stderr) == "" {
			t.Fatalf("box leakcheck %v: exit 2 without a word", args)
		}
	}
}

// A slowly growing client: it keeps one connection to a worker open and
// binds one more 2 MiB buffer in every cycle (when the head connects). No
// cycle exceeds the 16 MiB tolerance (6 cycles and the probe, 14 MiB at most),
// and the worker rightly keeps a live connection's buffers. The floor
// creeps, but the memory is that connection's, which leakcheck did not open:
// every cycle is foreign and names it, the creep is not blamed on the heads,
// exit 1.
func TestLeakcheckCreepingFloor(t *testing.T) {
	dir := t.TempDir()
	list, rpcs, admins := startWorkers(t, 2)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c, err := rpc.Dial(ctx, rpcs[0])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Follow the worker's events from now on; every head connecting
	// starts a cycle.
	var evs struct {
		Events []struct {
			Seq uint64 `json:"seq"`
		} `json:"events"`
	}
	r0, err := adminGet("http://" + admins[0] + "/v1/events")
	if err != nil {
		t.Fatal(err)
	}
	json.NewDecoder(r0.Body).Decode(&evs)
	r0.Body.Close()
	var after uint64
	if n := len(evs.Events); n > 0 {
		after = evs.Events[n-1].Seq
	}
	req := adminRequest(ctx, "GET", "http://"+admins[0]+"/v1/events?follow=1&after="+strconv.FormatUint(after, 10))
	var mu sync.Mutex
	allocs := 0
	go func() {
		// The stream's headers come with its first event.
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return
		}
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		armed := true
		for sc.Scan() {
			line := sc.Text()
			if !strings.HasPrefix(line, "data:") {
				continue
			}
			// One buffer per head: on its first connection, then not again
			// until a connection has ended. (leakcheck's reachability
			// probe, before the first cycle, gets one too.)
			if strings.Contains(line, `"kind":"disconnect"`) {
				armed = true
			}
			if !strings.Contains(line, `"kind":"connect"`) || !armed {
				continue
			}
			armed = false
			if h, _, err := c.AllocBuffer(ctx, 0, 2<<20); err != nil || h == 0 {
				return
			}
			mu.Lock()
			allocs++
			mu.Unlock()
		}
	}()

	js := filepath.Join(dir, "r.json")
	code, out, _ := leakcheckRun(t, "--demo", "--cache-dir", dir, "--rpc", list, "--modes", "graceful,kill",
		"--restarts", "6", "--requests", "1", "--json", js)
	mu.Lock()
	t.Logf("the slow leak bound %d buffers of 2 MiB", allocs)
	mu.Unlock()
	if code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	rep := readReport(t, js)
	conn := clientConn(t, admins[0])
	for _, cy := range rep.Cycles {
		if cy.Verdict != "foreign" || len(cy.Foreign) != 1 || cy.Foreign[0].Conn != conn.ID || cy.Foreign[0].Peer != conn.Peer {
			t.Fatalf("cycle %d: %s %+v %v: want foreign, naming conn %d", cy.Cycle, cy.Verdict, cy.Foreign, cy.Problems, conn.ID)
		}
		if cy.Delta["bound_bytes"] > int64(rep.ToleranceBytes) {
			t.Fatalf("cycle %d delta %d above tolerance", cy.Cycle, cy.Delta["bound_bytes"])
		}
	}
	for _, tr := range rep.Trends {
		if tr.Metric == "bound_bytes" && (!tr.Computed || tr.Judged) {
			t.Fatalf("trend %+v: computed, and not judged while a foreign connection holds memory", tr)
		}
	}
	if rep.Verdict != "foreign" || !strings.HasPrefix(rep.Summary, "FOREIGN: in 6 of 6 cycles") || strings.Contains(rep.Summary, "creep") {
		t.Fatalf("verdict %s: %s", rep.Verdict, rep.Summary)
	}
	if !strings.Contains(out, fmt.Sprintf("conn %d (%s) holds", conn.ID, conn.Peer)) {
		t.Fatalf("stdout does not name the client's connection %d:\n%s", conn.ID, out)
	}
}

// clientConn is the one connection on a worker that is not leakcheck's (the
// test's own client), from the worker's admin API after the run.
func clientConn(t *testing.T, admin string) api.ConnInfo {
	t.Helper()
	resp, err := adminGet("http://" + admin + "/v1/connections")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var cs struct {
		Connections []api.ConnInfo `json:"connections"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&cs); err != nil {
		t.Fatal(err)
	}
	if len(cs.Connections) != 1 {
		t.Fatalf("%d connections on %s after the run, want the client's only: %+v", len(cs.Connections), admin, cs.Connections)
	}
	return cs.Connections[0]
}

// A client leakcheck did not open holds 15.7 MiB on a worker for the whole
// run, just under the 16 MiB tolerance, so every delta is 0: leakcheck exits
// 1, reports the cycles as foreign (not passed) and names the connection by
// worker, id, peer and bytes. Two cycles of three modes: the mode never
// reached is skipped in JUnit, and the trend is not computed.
func TestLeakcheckNamesForeignConnection(t *testing.T) {
	dir := t.TempDir()
	list, rpcs, admins := startWorkers(t, 2)
	ctx := context.Background()
	c, err := rpc.Dial(ctx, rpcs[1])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const held = 16462643 // 15.7 MiB
	if h, _, err := c.AllocBuffer(ctx, 0, held); err != nil || h == 0 {
		t.Fatalf("alloc: %d %v", h, err)
	}
	js, ju := filepath.Join(dir, "r.json"), filepath.Join(dir, "r.xml")
	// (vanish needs workers off loopback: a namespace cannot reach these.)
	code, out, _ := leakcheckRun(t, "--demo", "--cache-dir", dir, "--rpc", list, "--modes", "graceful,kill,kill-during-load",
		"--restarts", "2", "--requests", "1", "--json", js, "--junit", ju)
	if code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	conn := clientConn(t, admins[1])
	rep := readReport(t, js)
	want := fmt.Sprintf("%s conn %d (%s) holds 15.7 MiB", rpcs[1], conn.ID, conn.Peer)
	if rep.Verdict != "foreign" || !strings.HasPrefix(rep.Summary, "FOREIGN: in 2 of 2 cycles") || !strings.Contains(rep.Summary, want) {
		t.Fatalf("summary %q, want FOREIGN naming %q", rep.Summary, want)
	}
	if !strings.Contains(out, want) {
		t.Fatalf("stdout does not name the connection:\n%s", out)
	}
	for _, cy := range rep.Cycles {
		if cy.Verdict != "foreign" || cy.ForeignBytes != held || len(cy.Foreign) != 1 || cy.Foreign[0].Worker != rpcs[1] {
			t.Fatalf("cycle %d: %s %+v", cy.Cycle, cy.Verdict, cy.Foreign)
		}
	}
	if fmt.Sprint(rep.ModesSkipped) != "[kill-during-load]" {
		t.Fatalf("modes skipped %v", rep.ModesSkipped)
	}
	x, err := os.ReadFile(ju)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{`<skipped message="not run: --restarts 2 cycles through 3 modes and never reaches kill-during-load">`,
		`<skipped message="not computed: 2 cycles, a trend needs 3">`, `type="foreign"`} {
		if !strings.Contains(string(x), s) {
			t.Errorf("JUnit lacks %s:\n%s", s, x)
		}
	}
}
