package tui

import (
	"context"
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
	v = waitView(t, r, "the free", has("1 buffers, 1.0 MiB"))
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
	v = waitView(t, r, "confirmation", has("close conn 1 (10.0.0.9:40001) on w1 and free its buffers? y/n"))
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
