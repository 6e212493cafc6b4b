package tui

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/charmbracelet/bubbles/help"
	"github.com/charmbracelet/bubbles/key"
	tea "github.com/charmbracelet/bubbletea"

	"github.com/boxproj/box/api"
	"github.com/boxproj/box/probe"
)

// Source is what the Model reads and acts through; *Poller is one.
type Source interface {
	Poll(ctx context.Context) Snapshot
	Close(ctx context.Context, node string, id uint64) error
}

// Options configure a Model.
type Options struct {
	// Interval between polls (default 1s). Polls never overlap: the next
	// one is scheduled when the last one has answered.
	Interval time.Duration
	// Now is the clock for ages and the header (default time.Now).
	Now func() time.Time
	// Location for displayed times (default time.Local).
	Location *time.Location
	// Once renders for `boxtop --once`: no selection marks or key help,
	// and the connections of every node.
	Once bool
	// Banner lines are shown under the header (the demo puts its URL and a
	// curl line there); long lines wrap.
	Banner []string
	// StatusTTL is how long a footer message stays (default 5s); any key
	// clears it sooner.
	StatusTTL time.Duration
}

type pane int

const (
	paneNodes pane = iota
	paneConns
	paneAlerts
	numPanes
)

func (p pane) String() string { return [...]string{"nodes", "connections", "events"}[p] }

var (
	nodeSorts = []string{"name", "bound", "free", "layers"}
	connSorts = []string{"id", "bytes", "age", "cmds"}
)

// Model is boxtop's bubbletea model. It holds the last Snapshot and the
// view state (focus, selection, filter, sort); every fetch and close runs
// in a tea.Cmd.
type Model struct {
	src  Source
	opt  Options
	snap Snapshot
	have bool

	width, height int
	focus         pane
	selNode       string // selected row: node name and device index
	selDev        int
	selConn       uint64
	selAlert      int
	binding       bool // showing the selected connection's buffers
	filter        string
	filtering     bool
	nodeSort      int
	nodeRev       bool
	connSort      int
	connRev       bool
	alertsOnly    bool // the events pane shows alerts only
	confirm       *pendingClose
	status        string
	statusGen     int
	showHelp      bool

	fetching    bool
	tickPending bool

	keys keyMap
	help help.Model
}

type pendingClose struct {
	node string
	id   uint64
	peer string
	what string // what the connection is, in words
}

// Messages.
type (
	snapshotMsg Snapshot
	tickMsg     struct{}
	closedMsg   struct {
		node string
		id   uint64
		err  error
	}
	clearStatusMsg int // the status generation to clear
)

// New makes a Model reading src.
func New(src Source, opt Options) *Model {
	if opt.Interval <= 0 {
		opt.Interval = time.Second
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.Location == nil {
		opt.Location = time.Local
	}
	if opt.StatusTTL <= 0 {
		opt.StatusTTL = 5 * time.Second
	}
	m := &Model{src: src, opt: opt, width: 80, keys: defaultKeys(), help: help.New()}
	return m
}

// Snapshot returns the last snapshot the model has.
func (m *Model) Snapshot() Snapshot { return m.snap }

// SetSnapshot replaces the model's data (for --once and tests).
func (m *Model) SetSnapshot(s Snapshot) { m.snap, m.have = s, true }

// SetSize sets the frame size; height 0 means as tall as needed.
func (m *Model) SetSize(w, h int) { m.width, m.height = w, h }

func (m *Model) fetch() tea.Cmd {
	m.fetching = true
	src, timeout := m.src, 30*time.Second
	return func() tea.Msg {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		return snapshotMsg(src.Poll(ctx))
	}
}

func (m *Model) tick() tea.Cmd {
	if m.tickPending {
		return nil
	}
	m.tickPending = true
	return tea.Tick(m.opt.Interval, func(time.Time) tea.Msg { return tickMsg{} })
}

// Init starts the first poll.
func (m *Model) Init() tea.Cmd { return m.fetch() }

// Update handles keys, window sizes and the answers of fetches and closes.
func (m *Model) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		m.width, m.height = msg.Width, msg.Height
		m.help.Width = msg.Width
		return m, nil
	case snapshotMsg:
		m.fetching = false
		m.SetSnapshot(Snapshot(msg))
		m.fixSelection()
		return m, m.tick()
	case tickMsg:
		m.tickPending = false
		if m.fetching {
			return m, nil
		}
		return m, m.fetch()
	case closedMsg:
		var clear tea.Cmd
		if msg.err != nil {
			clear = m.setStatus(msg.err.Error())
		} else {
			clear = m.setStatus(fmt.Sprintf("closed conn %d on %s", msg.id, msg.node))
			m.binding = false
		}
		if m.fetching {
			return m, clear
		}
		return m, tea.Batch(clear, m.fetch())
	case clearStatusMsg:
		if int(msg) == m.statusGen {
			m.status = ""
		}
		return m, nil
	case tea.KeyMsg:
		return m.key(msg)
	}
	return m, nil
}

// setStatus shows a footer message until StatusTTL passes or a key is
// pressed; it returns the command that clears it.
func (m *Model) setStatus(s string) tea.Cmd {
	m.status = s
	m.statusGen++
	gen := m.statusGen
	return tea.Tick(m.opt.StatusTTL, func(time.Time) tea.Msg { return clearStatusMsg(gen) })
}

func (m *Model) key(msg tea.KeyMsg) (tea.Model, tea.Cmd) {
	k := msg.String()
	if k == "ctrl+c" {
		return m, tea.Quit
	}
	if m.confirm != nil {
		switch k {
		case "y", "Y":
			c := m.confirm
			m.confirm = nil
			m.status = fmt.Sprintf("closing conn %d on %s…", c.id, c.node)
			m.statusGen++
			src := m.src
			return m, func() tea.Msg {
				return closedMsg{node: c.node, id: c.id, err: src.Close(context.Background(), c.node, c.id)}
			}
		case "n", "N", "esc", "q":
			m.confirm = nil
			return m, m.setStatus("close cancelled")
		}
		return m, nil
	}
	if m.status != "" && !m.filtering {
		m.status = "" // a key clears the last message
	}
	if m.filtering {
		switch msg.Type {
		case tea.KeyEnter:
			m.filtering = false
		case tea.KeyEsc:
			m.filtering, m.filter = false, ""
		case tea.KeyBackspace:
			if r := []rune(m.filter); len(r) > 0 {
				m.filter = string(r[:len(r)-1])
			}
		case tea.KeyRunes, tea.KeySpace:
			m.filter += string(msg.Runes)
		}
		m.fixSelection()
		return m, nil
	}
	if m.showHelp {
		if key.Matches(msg, m.keys.Help, m.keys.Back, m.keys.Quit) {
			m.showHelp = false
		}
		return m, nil
	}
	switch {
	case key.Matches(msg, m.keys.Quit):
		return m, tea.Quit
	case key.Matches(msg, m.keys.Help):
		m.showHelp = true
	case key.Matches(msg, m.keys.Next):
		m.focus = (m.focus + 1) % numPanes
	case key.Matches(msg, m.keys.Prev):
		m.focus = (m.focus + numPanes - 1) % numPanes
	case key.Matches(msg, m.keys.Up):
		m.move(-1)
	case key.Matches(msg, m.keys.Down):
		m.move(1)
	case key.Matches(msg, m.keys.Enter):
		switch m.focus {
		case paneNodes:
			m.focus = paneConns
		case paneConns:
			if m.selectedConn() != nil {
				m.binding = true
			}
		}
	case key.Matches(msg, m.keys.Back):
		switch {
		case m.binding:
			m.binding = false
		case m.filter != "":
			m.filter = ""
			m.fixSelection()
		}
		m.status = ""
	case key.Matches(msg, m.keys.Filter):
		m.filtering = true
	case key.Matches(msg, m.keys.Sort):
		switch m.focus {
		case paneNodes:
			m.nodeSort, m.nodeRev = (m.nodeSort+1)%len(nodeSorts), false
			if nodeSorts[m.nodeSort] == "layers" && m.snap.HeadStats == nil {
				m.nodeSort = 0 // no head, no layers column
			}
		case paneConns:
			m.connSort, m.connRev = (m.connSort+1)%len(connSorts), false
		}
	case key.Matches(msg, m.keys.Reverse):
		switch m.focus {
		case paneNodes:
			m.nodeRev = !m.nodeRev
		case paneConns:
			m.connRev = !m.connRev
		}
	case key.Matches(msg, m.keys.Events):
		m.alertsOnly = !m.alertsOnly
		m.fixSelection()
	case key.Matches(msg, m.keys.Close):
		n, c := m.selectedNode(), m.selectedConn()
		if n == nil || c == nil {
			return m, m.setStatus("select a connection first (tab to the connections pane)")
		}
		m.confirm = &pendingClose{node: n.Name, id: c.ID, peer: c.Peer, what: m.describeConn(n, c)}
	case key.Matches(msg, m.keys.Refresh):
		if !m.fetching {
			return m, m.fetch()
		}
	}
	return m, nil
}

// nodeRow is one row of the nodes pane: a device of a node, or a node
// without known devices (dev -1).
type nodeRow struct {
	node *Node
	dev  int
}

func (m *Model) match(fields ...string) bool {
	if m.filter == "" {
		return true
	}
	f := strings.ToLower(m.filter)
	for _, s := range fields {
		if strings.Contains(strings.ToLower(s), f) {
			return true
		}
	}
	return false
}

func (m *Model) nodeRows() []nodeRow {
	var rows []nodeRow
	for i := range m.snap.Nodes {
		n := &m.snap.Nodes[i]
		if len(n.Info.Devices) == 0 {
			if m.match(n.Name, n.State, n.Addr) {
				rows = append(rows, nodeRow{n, -1})
			}
			continue
		}
		for j, d := range n.Info.Devices {
			if m.match(n.Name, n.State, n.Addr, d.Name, d.Description) {
				rows = append(rows, nodeRow{n, j})
			}
		}
	}
	dev := func(r nodeRow) api.DeviceInfo {
		if r.dev < 0 {
			return api.DeviceInfo{}
		}
		return r.node.Info.Devices[r.dev]
	}
	sort.SliceStable(rows, func(a, b int) bool {
		switch nodeSorts[m.nodeSort] {
		case "bound":
			return dev(rows[a]).BoundBytes > dev(rows[b]).BoundBytes
		case "free":
			return dev(rows[a]).MemoryFree > dev(rows[b]).MemoryFree
		case "layers":
			return rows[a].node.Layers > rows[b].node.Layers
		}
		return false // name: the order given
	})
	if m.nodeRev {
		slices.Reverse(rows)
	}
	return rows
}

func (m *Model) nodeIndex(rows []nodeRow) int {
	for i, r := range rows {
		if r.node.Name == m.selNode && r.dev == m.selDev {
			return i
		}
	}
	for i, r := range rows {
		if r.node.Name == m.selNode {
			return i
		}
	}
	return 0
}

func (m *Model) selectedNode() *Node {
	rows := m.nodeRows()
	if len(rows) == 0 {
		return nil
	}
	return rows[m.nodeIndex(rows)].node
}

func (m *Model) connRows(n *Node) []api.ConnInfo {
	if n == nil {
		return nil
	}
	var rows []api.ConnInfo
	for _, c := range n.Conns {
		if m.match(fmt.Sprint(c.ID), c.Peer, string(c.State), n.Name) {
			rows = append(rows, c)
		}
	}
	sort.SliceStable(rows, func(a, b int) bool {
		switch connSorts[m.connSort] {
		case "bytes":
			return rows[a].Bytes > rows[b].Bytes
		case "age":
			return rows[a].Since.Before(rows[b].Since)
		case "cmds":
			return n.Activity[rows[a].ID].CmdsPerSec > n.Activity[rows[b].ID].CmdsPerSec
		}
		return rows[a].ID < rows[b].ID
	})
	if m.connRev {
		slices.Reverse(rows)
	}
	return rows
}

func (m *Model) connIndex(rows []api.ConnInfo) int {
	for i, c := range rows {
		if c.ID == m.selConn {
			return i
		}
	}
	return 0
}

func (m *Model) selectedConn() *api.ConnInfo {
	rows := m.connRows(m.selectedNode())
	if len(rows) == 0 {
		return nil
	}
	c := rows[m.connIndex(rows)]
	return &c
}

func (m *Model) alertRows() []Alert {
	var rows []Alert
	for _, a := range m.snap.Alerts {
		if m.alertsOnly && a.Info {
			continue
		}
		if m.match(a.Node, a.Kind, a.Text) {
			rows = append(rows, a)
		}
	}
	return rows
}

// fixSelection re-anchors the selections after data or filter changes.
func (m *Model) fixSelection() {
	rows := m.nodeRows()
	if len(rows) > 0 {
		r := rows[m.nodeIndex(rows)]
		m.selNode, m.selDev = r.node.Name, r.dev
	}
	conns := m.connRows(m.selectedNode())
	if len(conns) > 0 {
		m.selConn = conns[m.connIndex(conns)].ID
	} else {
		m.binding = false
	}
	if n := len(m.alertRows()); m.selAlert >= n {
		m.selAlert = max(0, n-1)
	}
}

func (m *Model) move(d int) {
	switch m.focus {
	case paneNodes:
		rows := m.nodeRows()
		if len(rows) == 0 {
			return
		}
		i := clamp(m.nodeIndex(rows)+d, 0, len(rows)-1)
		if rows[i].node.Name != m.selNode {
			m.binding = false
		}
		m.selNode, m.selDev = rows[i].node.Name, rows[i].dev
		m.fixSelection()
	case paneConns:
		if m.binding {
			return
		}
		rows := m.connRows(m.selectedNode())
		if len(rows) == 0 {
			return
		}
		m.selConn = rows[clamp(m.connIndex(rows)+d, 0, len(rows)-1)].ID
	case paneAlerts:
		m.selAlert = clamp(m.selAlert+d, 0, max(0, len(m.alertRows())-1))
	}
}

func clamp(v, lo, hi int) int {
	return max(lo, min(v, hi))
}

// keyMap is boxtop's keys, for Update and for the help view.
type keyMap struct {
	Up, Down, Next, Prev, Enter, Back, Filter, Sort, Reverse, Events, Close, Refresh, Help, Quit key.Binding
}

func defaultKeys() keyMap {
	return keyMap{
		Up:      key.NewBinding(key.WithKeys("up", "k"), key.WithHelp("↑/k", "up")),
		Down:    key.NewBinding(key.WithKeys("down", "j"), key.WithHelp("↓/j", "down")),
		Next:    key.NewBinding(key.WithKeys("tab"), key.WithHelp("tab", "next pane")),
		Prev:    key.NewBinding(key.WithKeys("shift+tab"), key.WithHelp("shift+tab", "previous pane")),
		Enter:   key.NewBinding(key.WithKeys("enter"), key.WithHelp("enter", "buffers")),
		Back:    key.NewBinding(key.WithKeys("esc"), key.WithHelp("esc", "back")),
		Filter:  key.NewBinding(key.WithKeys("/"), key.WithHelp("/", "filter")),
		Sort:    key.NewBinding(key.WithKeys("s"), key.WithHelp("s", "sort")),
		Reverse: key.NewBinding(key.WithKeys("S"), key.WithHelp("S", "reverse")),
		Events:  key.NewBinding(key.WithKeys("e"), key.WithHelp("e", "alerts only")),
		Close:   key.NewBinding(key.WithKeys("c"), key.WithHelp("c", "close")),
		Refresh: key.NewBinding(key.WithKeys("r"), key.WithHelp("r", "refresh")),
		Help:    key.NewBinding(key.WithKeys("?"), key.WithHelp("?", "help")),
		Quit:    key.NewBinding(key.WithKeys("q"), key.WithHelp("q", "quit")),
	}
}

// ShortHelp is the footer.
func (k keyMap) ShortHelp() []key.Binding {
	return []key.Binding{k.Next, k.Enter, k.Filter, k.Sort, k.Close, k.Help, k.Quit}
}

// FullHelp is the help screen.
func (k keyMap) FullHelp() [][]key.Binding {
	return [][]key.Binding{{k.Up, k.Down, k.Next, k.Prev, k.Enter, k.Back}, {k.Filter, k.Sort, k.Reverse, k.Events, k.Close, k.Refresh, k.Help, k.Quit}}
}

// describeConn says what a connection is, for the close prompt: the head's
// (with its model and what it placed there), or a client with its bytes.
func (m *Model) describeConn(n *Node, c *api.ConnInfo) string {
	held := fmt.Sprintf("%s in %s", probe.HumanBytes(c.Bytes), plural(len(c.Buffers), "buffer"))
	if n.HeadConn == c.ID && c.ID != 0 {
		model := ""
		if hs := m.snap.HeadStats; hs != nil && hs.Model != "" {
			model = hs.Model + ", "
		}
		return fmt.Sprintf("the live head's (%s%s, %s): its requests fail until it reloads", model,
			plural(n.Layers, "layer"), probe.HumanBytes(c.Bytes))
	}
	if c.State == "closed" {
		return fmt.Sprintf("a closed connection of %s still holding %s", c.Peer, held)
	}
	return fmt.Sprintf("a client at %s holding %s", c.Peer, held)
}
