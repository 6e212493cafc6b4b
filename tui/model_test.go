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

	"github.com/boxproj/box/api"
	"github.com/boxproj/box/worker"
	"github.com/boxproj/box/worker/workertest"
)

// fakeSource serves a fixed snapshot and records closes.
type fakeSource struct {
	mu     sync.Mutex
	snap   Snapshot
	polls  int
	closed []string
}

func (f *fakeSource) Poll(context.Context) Snapshot {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.polls++
	return f.snap
}

func (f *fakeSource) Close(_ context.Context, node string, id uint64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = append(f.closed, node+"/"+string(rune('0'+id)))
	return nil
}

func fakeSnapshot() Snapshot {
	dev := func(bound uint64) []api.DeviceInfo {
		return []api.DeviceInfo{{Name: "CPU", MemoryTotal: 16 * gib, MemoryFree: 14*gib - bound, BoundBytes: bound}}
	}
	conn := func(id, bytes uint64, since time.Duration) api.ConnInfo {
		return api.ConnInfo{ID: id, Peer: "10.0.0.9:4000" + string(rune('0'+id)), Since: t0.Add(-since), LastActivity: t0,
			State: "serving", Bytes: bytes, Buffers: []api.BufferInfo{{ID: 1, Device: "CPU", Size: bytes, Created: t0.Add(-since)}}}
	}
	return Snapshot{Time: t0, Nodes: []Node{
		{Name: "a", State: StateUp, Info: api.NodeInfo{BoundBytes: 1 << 20, Devices: dev(1 << 20)},
			Conns: []api.ConnInfo{conn(1, 1<<20, time.Minute)}, History: [][]uint64{{0, 1 << 20}}},
		{Name: "b", State: StateUp, Info: api.NodeInfo{BoundBytes: 8 << 20, Devices: dev(8 << 20)},
			Conns: []api.ConnInfo{conn(1, 3<<20, time.Minute), conn(2, 5<<20, time.Hour)}, History: [][]uint64{{8 << 20}}},
	}}
}

func send(m *Model, msgs ...tea.Msg) tea.Cmd {
	var cmd tea.Cmd
	for _, msg := range msgs {
		_, cmd = m.Update(msg)
	}
	return cmd
}

func TestModelKeysAndPolling(t *testing.T) {
	src := &fakeSource{snap: fakeSnapshot()}
	m := New(src, testOptions())
	if !strings.Contains(m.View(), "polling…") {
		t.Fatal("no placeholder before the first snapshot")
	}
	// Init polls in a command, never in Update.
	msg := m.Init()()
	if src.polls != 1 {
		t.Fatalf("%d polls", src.polls)
	}
	if cmd := send(m, msg); cmd == nil {
		t.Fatal("no tick scheduled after a snapshot")
	}
	// A tick while a fetch is in flight does not start another.
	fetch := send(m, tickMsg{})
	if fetch == nil || send(m, tickMsg{}) != nil {
		t.Fatal("ticks: want one fetch at a time")
	}
	send(m, fetch())

	if n := m.selectedNode(); n == nil || n.Name != "a" {
		t.Fatalf("selected %v", n)
	}
	send(m, keyMsg("j"))
	if m.selectedNode().Name != "b" || m.selectedConn().ID != 1 {
		t.Fatal("j did not move to b")
	}
	send(m, keyMsg("j")) // clamps at the end
	if m.selectedNode().Name != "b" {
		t.Fatal("moved past the end")
	}
	// Sort nodes by bound bytes: b first, the selection follows b.
	send(m, keyMsg("s"))
	if rows := m.nodeRows(); rows[0].node.Name != "b" || m.nodeSort != 1 || m.selectedNode().Name != "b" {
		t.Fatalf("sort by bound: %s first", rows[0].node.Name)
	}
	// Tab to connections, sort by bytes, move down.
	send(m, keyMsg("tab"), keyMsg("s"))
	if rows := m.connRows(m.selectedNode()); rows[0].ID != 2 {
		t.Fatalf("sort conns by bytes: %d first", rows[0].ID)
	}
	send(m, keyMsg("s")) // age: oldest first
	if rows := m.connRows(m.selectedNode()); rows[0].ID != 2 || connSorts[m.connSort] != "age" {
		t.Fatal("sort by age")
	}
	send(m, keyMsg("s"), keyMsg("s"), keyMsg("down")) // cmd/s, back to id, select conn 2
	if m.selectedConn().ID != 2 {
		t.Fatalf("selected conn %d", m.selectedConn().ID)
	}
	// Enter: bindings; esc: back.
	send(m, keyMsg("enter"))
	if !m.binding || !strings.Contains(m.View(), "BINDINGS · b conn 2") {
		t.Fatal("enter did not open the binding view")
	}
	send(m, keyMsg("esc"))
	if m.binding {
		t.Fatal("esc did not leave the binding view")
	}
	// c asks; n cancels without closing.
	send(m, keyMsg("c"))
	if m.confirm == nil || !strings.Contains(m.View(), "close conn 2 on b? It is a client at 10.0.0.9:40002") {
		t.Fatal("no confirmation")
	}
	send(m, keyMsg("n"))
	if m.confirm != nil || len(src.closed) != 0 {
		t.Fatal("n closed anyway")
	}
	// c, y: the close runs in a command; its answer triggers a poll.
	send(m, keyMsg("c"))
	closeCmd := send(m, keyMsg("y"))
	if closeCmd == nil || len(src.closed) != 0 {
		t.Fatal("close ran inside Update")
	}
	done := closeCmd()
	if len(src.closed) != 1 || src.closed[0] != "b/2" {
		t.Fatalf("closed %v", src.closed)
	}
	if cmd := send(m, done); cmd == nil || !strings.Contains(m.View(), "closed conn 2 on b") {
		t.Fatal("no status or refresh after the close")
	}
	// The filter narrows every pane; esc clears it.
	send(m, keyMsg("/"), keyMsg("a"), keyMsg("enter"))
	if rows := m.nodeRows(); len(rows) != 1 || rows[0].node.Name != "a" || m.selectedNode().Name != "a" {
		t.Fatalf("filter a: %d rows", len(rows))
	}
	send(m, keyMsg("esc"))
	if len(m.nodeRows()) != 2 || m.filter != "" {
		t.Fatal("esc did not clear the filter")
	}
	// Backspace edits the filter.
	send(m, keyMsg("/"), keyMsg("x"), tea.KeyMsg{Type: tea.KeyBackspace}, keyMsg("b"), keyMsg("enter"))
	if m.filter != "b" {
		t.Fatalf("filter %q", m.filter)
	}
	send(m, keyMsg("esc"))
	// ? shows help, any of ?/esc/q returns; q quits.
	send(m, keyMsg("?"))
	if !strings.Contains(m.View(), "press ? or esc to go back") {
		t.Fatal("no help")
	}
	if cmd := send(m, keyMsg("q")); cmd != nil || m.showHelp {
		t.Fatal("q in help should close help, not quit")
	}
	if cmd := send(m, keyMsg("q")); cmd == nil || cmd() != tea.Quit() {
		t.Fatal("q does not quit")
	}
}

func TestModelSizes(t *testing.T) {
	m := New(&fakeSource{}, testOptions())
	m.SetSnapshot(fakeSnapshot())
	for _, sz := range [][2]int{{80, 24}, {60, 12}, {100, 40}, {45, 8}} {
		send(m, tea.WindowSizeMsg{Width: sz[0], Height: sz[1]})
		lines := strings.Split(m.View(), "\n")
		if len(lines) != sz[1] {
			t.Errorf("%dx%d: %d lines", sz[0], sz[1], len(lines))
		}
		for i, l := range lines {
			if lipgloss.Width(l) > sz[0] {
				t.Errorf("%dx%d: line %d is %d wide: %q", sz[0], sz[1], i, lipgloss.Width(l), l)
			}
		}
	}
	// Many rows in a small window: the selected row stays visible.
	snap := fakeSnapshot()
	for i := 0; i < 30; i++ {
		n := snap.Nodes[0]
		n.Name = "n" + string(rune('A'+i))
		snap.Nodes = append(snap.Nodes, n)
	}
	m.SetSnapshot(snap)
	send(m, tea.WindowSizeMsg{Width: 80, Height: 24})
	for i := 0; i < 25; i++ {
		send(m, keyMsg("j"))
	}
	if v := m.View(); !strings.Contains(v, "› nX") {
		t.Fatalf("selected row scrolled away:\n%s", v)
	}
}

// TestOnceGolden is `boxtop --once`: one frame at 80 columns from real
// workers, one with a connection and buffers, one down.
func TestOnceGolden(t *testing.T) {
	w1, w2 := workertest.Start(t, worker.Config{}), workertest.Start(t, worker.Config{})
	c := workertest.Dial(t, w1.Addr)
	workertest.Alloc(t, c, 1<<20)
	workertest.Alloc(t, c, 7<<20)
	c2 := workertest.Dial(t, w1.Addr)
	workertest.Alloc(t, c2, 512<<10)
	w2.Stop()
	p := testPoller(Target{Name: "gpu-node-1", URL: w1.Admin}, Target{Name: "gpu-node-2", URL: w2.Admin})
	s := p.Poll(context.Background())
	out := Render(s, 80, testOptions())
	for i, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if lipgloss.Width(l) > 80 {
			t.Errorf("line %d is %d wide: %q", i, lipgloss.Width(l), l)
		}
	}
	for _, want := range []string{"8.5 MiB", "CONNECTIONS · gpu-node-1 (2)", "unreachable", "down since 12:00:00"} {
		if !strings.Contains(out, want) {
			t.Errorf("--once frame lacks %q", want)
		}
	}
	if strings.Contains(out, "›") || strings.Contains(out, "quit") {
		t.Error("--once frame has selection marks or key help")
	}
	golden.RequireEqual(t, []byte(out))
	// Same input, same frame.
	if again := Render(p.Poll(context.Background()), 80, testOptions()); again != out {
		t.Fatalf("--once not stable:\n%s\n%s", out, again)
	}
}

// TestModelStatusClears: a footer message goes after its time or at the
// next key, and a later message is not cleared by an earlier one's timer.
func TestModelStatusClears(t *testing.T) {
	m := New(&fakeSource{}, Options{Now: fixedNow, StatusTTL: time.Minute})
	m.SetSnapshot(fakeSnapshot())
	send(m, keyMsg("tab"), keyMsg("c"))
	cmd := send(m, keyMsg("n"))
	if m.status != "close cancelled" || cmd == nil {
		t.Fatalf("status %q, cmd %v", m.status, cmd)
	}
	first := clearStatusMsg(m.statusGen)
	send(m, closedMsg{node: "a", id: 1})
	send(m, first) // the first message's timer must not clear the second
	if !strings.Contains(m.View(), "closed conn 1 on a") {
		t.Fatal("an old timer cleared a newer message")
	}
	send(m, clearStatusMsg(m.statusGen))
	if m.status != "" || !strings.Contains(m.View(), "q quit") {
		t.Fatalf("message not cleared: %q", m.status)
	}
	send(m, closedMsg{node: "a", id: 1})
	send(m, keyMsg("j"))
	if m.status != "" {
		t.Fatal("a key did not clear the message")
	}
}

// TestModelSortMarks: the sorted column carries ▲ or ▼, S reverses it.
func TestModelSortMarks(t *testing.T) {
	m := New(&fakeSource{}, testOptions())
	m.SetSnapshot(fakeSnapshot())
	m.SetSize(80, 24)
	header := func() string { return lineOf(m.View(), "DEV") }
	for _, tc := range []struct {
		keys  []string
		want  string
		first string
	}{
		{nil, "NODE▲", "a"},
		{[]string{"S"}, "NODE▼", "b"},
		{[]string{"s"}, "BOUND▼", "b"},
		{[]string{"S"}, "BOUND▲", "a"},
		{[]string{"s", "s"}, "NODE▲", "a"}, // free, then name: no layers without a head
	} {
		for _, k := range tc.keys {
			send(m, keyMsg(k))
		}
		if h := header(); !strings.Contains(h, tc.want) || strings.Count(h, "▲")+strings.Count(h, "▼") != 1 {
			t.Errorf("after %v: header %q, want one mark on %s", tc.keys, h, tc.want)
		}
		if got := m.nodeRows()[0].node.Name; got != tc.first {
			t.Errorf("after %v: %s first, want %s", tc.keys, got, tc.first)
		}
	}
}

// TestModelActivityColumns: a connection's rates show in its row; a
// worker without counters shows "-".
func TestModelActivityColumns(t *testing.T) {
	snap := fakeSnapshot()
	snap.Nodes[1].Activity = map[uint64]Activity{1: {Rated: true, CmdsPerSec: 52, InPerSec: 3 << 20, OutPerSec: 2048}}
	m := New(&fakeSource{}, testOptions())
	m.SetSnapshot(snap)
	m.SetSize(80, 24)
	send(m, keyMsg("j"))
	v := m.View()
	if l := lineOf(v, "10.0.0.9:40001"); !strings.HasSuffix(strings.TrimSpace(l), "52  3.0M  2.0K") {
		t.Errorf("rated row: %q", l)
	}
	if l := lineOf(v, "10.0.0.9:40002"); !strings.HasSuffix(strings.TrimSpace(l), "-     -     -") {
		t.Errorf("unrated row: %q", l)
	}
}

// TestModelBanner: the demo's lines stay on screen, wrapped to the width.
func TestModelBanner(t *testing.T) {
	curl := `try: curl http://127.0.0.1:8080/v1/chat/completions -H 'Content-Type: application/json' -d '{"model":"box-demo","messages":[{"role":"user","content":"hi"}]}'`
	opt := testOptions()
	opt.Banner = []string{"box demo · OpenAI API http://127.0.0.1:8080/v1 · q stops the demo", curl}
	m := New(&fakeSource{}, opt)
	m.SetSnapshot(fakeSnapshot())
	send(m, tea.WindowSizeMsg{Width: 80, Height: 24})
	v := m.View()
	lines := strings.Split(v, "\n")
	if len(lines) != 24 || !strings.Contains(lines[1], "q stops the demo") {
		t.Fatalf("banner not under the header:\n%s", v)
	}
	var got string
	for _, l := range lines[2:] {
		if lipgloss.Width(l) > 80 {
			t.Errorf("line wider than 80: %q", l)
		}
		if !strings.HasPrefix(l, "  ") || strings.Contains(l, "NODES") {
			break
		}
		got += strings.TrimSpace(l)
	}
	if strings.ReplaceAll(got, " ", "") != strings.ReplaceAll(curl, " ", "") {
		t.Errorf("the curl line does not survive wrapping:\n%s\nwant %s", got, curl)
	}
}
