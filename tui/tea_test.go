package tui

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"
	"github.com/charmbracelet/x/exp/golden"
	"github.com/charmbracelet/x/exp/teatest"

	"github.com/boxproj/box/worker"
	"github.com/boxproj/box/worker/workertest"
)

// recorder wraps the Model so a test can read the frame the program last
// rendered (the terminal output is a stream of cursor moves and changed
// lines; the frame is what a person sees).
type recorder struct {
	m    *Model
	mu   sync.Mutex
	view string
}

func (r *recorder) Init() tea.Cmd { return r.m.Init() }

func (r *recorder) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	_, cmd := r.m.Update(msg)
	return r, cmd
}

func (r *recorder) View() string {
	v := r.m.View()
	r.mu.Lock()
	r.view = v
	r.mu.Unlock()
	return v
}

func (r *recorder) last() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.view
}

// waitView waits until the rendered frame satisfies cond and returns it.
func waitView(t *testing.T, r *recorder, what string, cond func(string) bool) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		v := r.last()
		if cond(v) {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; last frame:\n%s", what, v)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func has(subs ...string) func(string) bool {
	return func(v string) bool {
		for _, s := range subs {
			if !strings.Contains(v, s) {
				return false
			}
		}
		return true
	}
}

// lineOf returns the frame's line that contains sub.
func lineOf(v, sub string) string {
	for _, l := range strings.Split(v, "\n") {
		if strings.Contains(l, sub) {
			return l
		}
	}
	return ""
}

// checkFrame asserts the frame fits w x h and matches the golden file.
func checkFrame(t *testing.T, name, v string, w, h int) {
	t.Helper()
	lines := strings.Split(v, "\n")
	if len(lines) != h {
		t.Errorf("%s: %d lines, want %d", name, len(lines), h)
	}
	for i, l := range lines {
		if lipgloss.Width(l) > w {
			t.Errorf("%s: line %d is %d wide (> %d): %q", name, i, lipgloss.Width(l), w, l)
		}
	}
	t.Run(name, func(t *testing.T) { golden.RequireEqual(t, []byte(v)) })
}

func keyMsg(s string) tea.KeyMsg {
	switch s {
	case "tab":
		return tea.KeyMsg{Type: tea.KeyTab}
	case "shift+tab":
		return tea.KeyMsg{Type: tea.KeyShiftTab}
	case "enter":
		return tea.KeyMsg{Type: tea.KeyEnter}
	case "esc":
		return tea.KeyMsg{Type: tea.KeyEsc}
	case "up":
		return tea.KeyMsg{Type: tea.KeyUp}
	case "down":
		return tea.KeyMsg{Type: tea.KeyDown}
	}
	return tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune(s)}
}

// TestTeaFrames drives boxtop as a program against two real workers:
// allocations, the binding view, a free, the filter, the help screen, a
// connection closed from the TUI, a node going down and a resize. Every
// frame is compared with a golden file (go test ./tui -update rewrites them).
func TestTeaFrames(t *testing.T) {
	w1, w2 := workertest.Start(t, worker.Config{}), workertest.Start(t, worker.Config{})
	c1 := workertest.Dial(t, w1.Addr)
	workertest.Alloc(t, c1, 1<<20)
	h2 := workertest.Alloc(t, c1, 3<<20)
	c2 := workertest.Dial(t, w2.Addr)
	workertest.Alloc(t, c2, 2<<20)

	r := &recorder{m: New(testPoller(Target{Name: "w1", URL: w1.Admin}, Target{Name: "w2", URL: w2.Admin}), testOptions())}
	tm := teatest.NewTestModel(t, r, teatest.WithInitialTermSize(80, 24))
	t.Cleanup(func() { tm.Quit() })

	v := waitView(t, r, "both nodes with their bytes", func(v string) bool {
		return strings.Contains(lineOf(v, "w1 "), "4.0 MiB") && strings.Contains(lineOf(v, "w2 "), "2.0 MiB")
	})
	checkFrame(t, "start", v, 80, 24)
	// The terminal got the same: teatest's output carries the bytes too.
	teatest.WaitFor(t, tm.Output(), func(b []byte) bool { return strings.Contains(string(b), "4.0 MiB") },
		teatest.WithDuration(5*time.Second))

	// Tab to the connections, Enter: the binding view of conn 1.
	tm.Send(keyMsg("tab"))
	tm.Send(keyMsg("enter"))
	v = waitView(t, r, "bindings", has("BINDINGS · w1 conn 1", "2 buffers, 4.0 MiB"))
	checkFrame(t, "bindings", v, 80, 24)

	// Free the 3 MiB buffer: the binding view and the node follow.
	if err := c1.FreeBuffer(context.Background(), h2); err != nil {
		t.Fatal(err)
	}
	// The connection's buffers and the node's total are separate polls:
	// wait for both.
	v = waitView(t, r, "the free", has("1 buffers, 1.0 MiB", "3.0 MiB bound"))
	checkFrame(t, "after-free", v, 80, 24)

	// Esc back; filter on w2: only w2's rows, its connection.
	tm.Send(keyMsg("esc"))
	tm.Type("/w2")
	v = waitView(t, r, "filter input", has("/w2█"))
	tm.Send(keyMsg("enter"))
	v = waitView(t, r, "filtered", func(v string) bool {
		return strings.Contains(v, "filter: w2") && !strings.Contains(v, "w1 ") && strings.Contains(v, "CONNECTIONS · w2")
	})
	checkFrame(t, "filter", v, 80, 24)
	tm.Send(keyMsg("esc"))
	v = waitView(t, r, "filter cleared", func(v string) bool { return strings.Contains(v, "w1 ") && !strings.Contains(v, "filter:") })

	// Help, and back.
	tm.Type("?")
	v = waitView(t, r, "help", has("press ? or esc to go back"))
	checkFrame(t, "help", v, 80, 24)
	tm.Type("?")
	waitView(t, r, "help closed", has("NODES"))

	// Close w1's connection from the TUI: select w1, tab to its
	// connections, c, y. The worker frees everything before answering.
	tm.Send(keyMsg("shift+tab"))
	tm.Send(keyMsg("up"))
	tm.Send(keyMsg("tab"))
	tm.Type("c")
	v = waitView(t, r, "confirmation", has("close conn 1 on w1? It is a client at 10.0.0.9:40001 holding 1.0 MiB", "y/n"))
	checkFrame(t, "confirm", v, 80, 24)
	tm.Type("y")
	v = waitView(t, r, "closed", func(v string) bool {
		return strings.Contains(v, "closed conn 1 on w1") && strings.Contains(lineOf(v, "w1 "), " 0 B ") &&
			strings.Contains(v, "no connections")
	})
	if b := w1.BoundBytes(); b != 0 {
		t.Fatalf("w1 holds %d bytes after the close", b)
	}
	if len(w1.Connections()) != 0 {
		t.Fatal("w1 still lists the connection")
	}
	checkFrame(t, "closed", v, 80, 24)

	// w2 goes down: it stays listed as down, w1 keeps updating.
	w2.Stop()
	c3 := workertest.Dial(t, w1.Addr)
	workertest.Alloc(t, c3, 5<<20)
	v = waitView(t, r, "w2 down and w1 updated", func(v string) bool {
		return strings.Contains(lineOf(v, "w2 "), "down since 12:00:00") && strings.Contains(lineOf(v, "w1 "), "5.0 MiB")
	})
	checkFrame(t, "down", v, 80, 24)

	// A wider, taller terminal.
	tm.Send(tea.WindowSizeMsg{Width: 120, Height: 30})
	v = waitView(t, r, "resize", func(v string) bool { return len(strings.Split(v, "\n")) == 30 })
	checkFrame(t, "resize", v, 120, 30)

	tm.Type("q")
	fm := tm.FinalModel(t, teatest.WithFinalTimeout(5*time.Second))
	if fm.(*recorder).m.Snapshot().Nodes[1].State != StateDown {
		t.Fatal("final model lost w2's state")
	}
}

// TestTeaHead drives boxtop on a head over 8 real workers: the head strip,
// LAYERS, the event log and 8 node names that stay distinct at 80 columns,
// then 120x35 and 200x50, the close prompt naming the head's connection, a
// degraded head (an alert that ends and keeps its duration) and an
// unreachable one. The head is a stub serving /v1/cluster, /v1/models and
// /metrics; its workers are real.
func TestTeaHead(t *testing.T) {
	var workers []map[string]any
	var plan []map[string]any
	for i := range 8 {
		w := workertest.Start(t, worker.Config{})
		c := workertest.Dial(t, w.Addr)
		size := uint64(i+1) << 20
		workertest.Alloc(t, c, size)
		addr := fmt.Sprintf("gpu-worker-%02d.rack-a.example.net:50052", i+1)
		workers = append(workers, map[string]any{"addr": addr, "admin": w.Admin, "state": "up", "layers": 2 + i%2,
			"placed_bytes": size, "buffers": 1, "devices": []string{"RPC[" + addr + "]#0"}})
		plan = append(plan, map[string]any{"addr": addr, "layers": 2 + i%2, "need_bytes": size + 512<<10})
	}
	clk := &stepClock{t: t0, step: 250 * time.Millisecond}
	h := &stubHead{clk: clk, cl: map[string]any{"state": "ok", "local_layers": 0, "workers": workers, "plan": plan}}
	srv := httptest.NewServer(h)
	defer srv.Close()
	p := NewPoller(Config{Head: srv.URL, Timeout: time.Second, Now: clk.Now, Transform: func(s *Snapshot) {
		normalise(s)
		s.Head, s.HeadStats.URL = "http://10.0.0.1:8080", "http://10.0.0.1:8080"
		s.HeadStats.Requests, s.HeadStats.Tokens = 96, 1920 // totals grow with the polls
	}})
	r := &recorder{m: New(p, testOptions())}
	tm := teatest.NewTestModel(t, r, teatest.WithInitialTermSize(80, 24))
	t.Cleanup(func() { tm.Quit() })

	serving := func(v string) bool {
		return strings.Contains(v, "40.0 tok/s") && strings.Contains(v, "8 nodes: 8 up") && strings.Count(v, "conn 1 opened") >= 6
	}
	v := waitView(t, r, "the head strip and 8 nodes", serving)
	checkFrame(t, "head-80x24", v, 80, 24)
	for i := range 8 {
		if name := fmt.Sprintf("gpu-worker-%02d…", i+1); !strings.Contains(v, name) {
			t.Errorf("80 columns: no distinct name %q", name)
		}
	}
	if l := lineOf(v, "gpu-worker-03…"); !strings.Contains(l, " 3.0 MiB ") || !strings.Contains(l, " 2 ") {
		t.Errorf("node 3's row lacks its bytes or layers: %q", l)
	}

	// The first node's connection is the head's: the prompt says so.
	tm.Send(keyMsg("tab"))
	tm.Type("c")
	v = waitView(t, r, "close prompt", has("It is the live head's (box-demo, 2 layers,", "its requests fail", "y/n"))
	checkFrame(t, "head-confirm", v, 80, 24)
	tm.Type("n")
	waitView(t, r, "cancelled", has("close cancelled"))

	tm.Send(tea.WindowSizeMsg{Width: 120, Height: 35})
	v = waitView(t, r, "120x35", func(v string) bool { return len(strings.Split(v, "\n")) == 35 && strings.Contains(v, "PLACED/NEEDED") })
	checkFrame(t, "head-120x35", v, 120, 35)

	// The head degrades, then recovers: the alert ends and keeps how long
	// it lasted.
	h.set(func(cl map[string]any) {
		cl["state"], cl["error"] = "degraded", "worker gpu-worker-03.rack-a.example.net:50052: EOF"
	})
	waitView(t, r, "degraded", has("! 12:00:00 head"))
	h.set(func(cl map[string]any) { cl["state"] = "ok"; delete(cl, "error") })
	tm.Send(tea.WindowSizeMsg{Width: 200, Height: 50})
	v = waitView(t, r, "200x50 with the ended alert", func(v string) bool {
		return len(strings.Split(v, "\n")) == 50 && strings.Contains(v, "✓") && strings.Contains(v, "HEAD box-demo ok")
	})
	checkFrame(t, "head-200x50", v, 200, 50)

	srv.Close()
	tm.Send(tea.WindowSizeMsg{Width: 80, Height: 24})
	v = waitView(t, r, "head unreachable", func(v string) bool {
		return len(strings.Split(v, "\n")) == 24 && strings.Contains(v, "HEAD unreachable since 12:00:00") &&
			strings.Contains(v, "! 12:00:00 head")
	})
	checkFrame(t, "head-unreachable", v, 80, 24)
	tm.Type("q")
	tm.FinalModel(t, teatest.WithFinalTimeout(5*time.Second))
}
