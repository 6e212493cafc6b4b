package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/boxproj/box/leakcheck"
	"github.com/boxproj/box/rpc"
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

// startWorkers starts n box workers with extra flags and returns the --rpc list.
func startWorkers(t *testing.T, n int, extra ...string) (rpcList string, rpcs, admins []string) {
	t.Helper()
	var items []string
	for i := 0; i < n; i++ {
		r, a := "127.0.0.1:"+freePort(t), "127.0.0.1:"+freePort(t)
		cmd := startBox(t, append([]string{"worker", "--listen", r, "--admin", a, "--threads", "1", "--log-level", "warn"}, extra...)...)
		if len(extra) > 0 {
			// A worker holding leaked buffers does not stop on SIGTERM
			// (it waits for the leaked connections): kill it first.
			t.Cleanup(func() { cmd.Process.Kill() })
		}
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
	if !strings.Contains(out, "PASS: 4/4 cycles passed") {
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
		fault []string
		code  int
	}{
		{"fault", []string{"--fault", "leak-on-disconnect"}, 1},
		{"normal", nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			list, _, _ := startWorkers(t, 2, tc.fault...)
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

// A slowly leaking head: a client keeps one connection to a worker open and
// binds one more 2 MiB buffer in every cycle (when the head connects). No
// cycle exceeds the 16 MiB tolerance (6 cycles and the probe, 14 MiB at most), the
// worker rightly keeps a live connection's buffers, and only the creeping
// floor detector can tell: exit 1, the trend named.
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
	r0, err := http.Get("http://" + admins[0] + "/v1/events")
	if err != nil {
		t.Fatal(err)
	}
	json.NewDecoder(r0.Body).Decode(&evs)
	r0.Body.Close()
	var after uint64
	if n := len(evs.Events); n > 0 {
		after = evs.Events[n-1].Seq
	}
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+admins[0]+"/v1/events?follow=1&after="+strconv.FormatUint(after, 10), nil)
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
	for _, cy := range rep.Cycles {
		if cy.Verdict != "pass" {
			t.Fatalf("cycle %d: %s %v: no single cycle should exceed the tolerance", cy.Cycle, cy.Verdict, cy.Problems)
		}
		if cy.Delta["bound_bytes"] > int64(rep.ToleranceBytes) {
			t.Fatalf("cycle %d delta %d above tolerance", cy.Cycle, cy.Delta["bound_bytes"])
		}
	}
	var tr *leakcheck.Trend
	for i := range rep.Trends {
		if rep.Trends[i].Metric == "bound_bytes" {
			tr = &rep.Trends[i]
		}
	}
	if tr == nil || !tr.Creeping || rep.Verdict != "leak" {
		t.Fatalf("trend %+v, verdict %s", tr, rep.Verdict)
	}
	if !strings.Contains(out, "bound_bytes floor creeps up") {
		t.Fatalf("stdout does not name the creeping floor:\n%s", out)
	}
}
