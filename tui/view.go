package tui

import (
	"fmt"
	"strings"
	"time"

	"github.com/charmbracelet/lipgloss"
	"github.com/charmbracelet/x/ansi"

	"github.com/boxproj/box/probe"
	"github.com/boxproj/box/worker"
)

var (
	stTitle    = lipgloss.NewStyle().Bold(true)
	stFocus    = lipgloss.NewStyle().Bold(true).Foreground(lipgloss.Color("12"))
	stHeader   = lipgloss.NewStyle().Faint(true)
	stSelected = lipgloss.NewStyle().Reverse(true)
	stBound    = lipgloss.NewStyle().Foreground(lipgloss.Color("205"))
	stOthers   = lipgloss.NewStyle().Foreground(lipgloss.Color("214"))
	stFree     = lipgloss.NewStyle().Foreground(lipgloss.Color("240"))
	stDown     = lipgloss.NewStyle().Foreground(lipgloss.Color("9")).Bold(true)
	stDegraded = lipgloss.NewStyle().Foreground(lipgloss.Color("214")).Bold(true)
	stUp       = lipgloss.NewStyle().Foreground(lipgloss.Color("10"))
	stAlert    = lipgloss.NewStyle().Foreground(lipgloss.Color("214"))
	stStatus   = lipgloss.NewStyle().Foreground(lipgloss.Color("12"))
)

// Bar cells: memory bound by box, used by others, free.
const (
	cellBound  = "█"
	cellOthers = "▒"
	cellFree   = "░"
)

var sparks = []rune("▁▂▃▄▅▆▇█")

// pad fits s into exactly w cells (truncating with …), left-aligned.
func pad(s string, w int) string {
	if w <= 0 {
		return ""
	}
	if lipgloss.Width(s) > w {
		s = ansi.Truncate(s, w, "…")
	}
	return s + strings.Repeat(" ", w-lipgloss.Width(s))
}

// rpad right-aligns s in w cells.
func rpad(s string, w int) string {
	if lipgloss.Width(s) > w {
		return ansi.Truncate(s, w, "…")
	}
	return strings.Repeat(" ", w-lipgloss.Width(s)) + s
}

func (m *Model) now() time.Time { return m.opt.Now() }

func (m *Model) clock(t time.Time) string { return t.In(m.opt.Location).Format("15:04:05") }

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// age formats a duration compactly: 5s, 3m04s, 2h03m, 4d02h.
func age(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	s := int(d.Seconds())
	switch {
	case s < 60:
		return fmt.Sprintf("%ds", s)
	case s < 3600:
		return fmt.Sprintf("%dm%02ds", s/60, s%60)
	case s < 86400:
		return fmt.Sprintf("%dh%02dm", s/3600, s%3600/60)
	}
	return fmt.Sprintf("%dd%02dh", s/86400, s%86400/3600)
}

// bar draws a device's memory as bound / others / free cells.
func bar(d worker.DeviceInfo, w int) string {
	if w <= 0 {
		return ""
	}
	if d.MemoryTotal == 0 {
		return pad("", w)
	}
	total := float64(d.MemoryTotal)
	used := float64(d.MemoryTotal - min(d.MemoryFree, d.MemoryTotal))
	bound := min(float64(d.BoundBytes), used)
	if bound > used {
		used = bound
	}
	b := int(bound/total*float64(w) + 0.5)
	if d.BoundBytes > 0 && b == 0 {
		b = 1 // anything bound shows
	}
	u := int(used/total*float64(w) + 0.5)
	if used > bound && u <= b {
		u = b + 1
	}
	u = min(u, w)
	b = min(b, u)
	return stBound.Render(strings.Repeat(cellBound, b)) + stOthers.Render(strings.Repeat(cellOthers, u-b)) +
		stFree.Render(strings.Repeat(cellFree, w-u))
}

// spark draws the last w samples, scaled to their maximum.
func spark(h []uint64, w int) string {
	if w <= 0 {
		return ""
	}
	if len(h) > w {
		h = h[len(h)-w:]
	}
	var hi uint64
	for _, v := range h {
		hi = max(hi, v)
	}
	var sb strings.Builder
	sb.WriteString(strings.Repeat(" ", w-len(h)))
	for _, v := range h {
		i := 0
		if hi > 0 {
			i = int(float64(v) / float64(hi) * float64(len(sparks)-1))
		}
		sb.WriteRune(sparks[i])
	}
	return sb.String()
}

func stateStyle(s string) lipgloss.Style {
	switch s {
	case StateDown:
		return stDown
	case StateDegraded:
		return stDegraded
	}
	return stUp
}

// section is a pane as lines: a title, an optional column header, rows and
// the selected row (-1: none).
type section struct {
	title  string
	header string
	rows   []string
	sel    int
	empty  string
}

func (s section) render(w, h int, focused, once bool) []string {
	title := s.title
	mark := "  "
	if focused && !once {
		mark = "▶ "
		title = stFocus.Render(title)
	} else {
		title = stTitle.Render(title)
	}
	line := mark + title + " "
	line += stHeader.Render(strings.Repeat("─", max(0, w-lipgloss.Width(line))))
	out := []string{pad(line, w)}
	if s.header != "" {
		out = append(out, stHeader.Render(pad(s.header, w)))
	}
	rows := s.rows
	if len(rows) == 0 && s.empty != "" {
		rows = []string{"  " + s.empty}
	}
	sel := s.sel
	off := 0
	if h >= 0 && len(rows) > h {
		if sel >= h {
			off = sel - h + 1
		}
		rows = rows[off : off+h]
	}
	for i, r := range rows {
		r = pad(r, w)
		if !once && len(s.rows) > 0 && i+off == sel {
			if focused {
				r = stSelected.Render(r)
			}
			r = "›" + ansi.Cut(r, 1, w) // a mark that survives without colours
		}
		out = append(out, r)
	}
	return out
}

func (s section) want() int {
	n := len(s.rows)
	if n == 0 && s.empty != "" {
		n = 1
	}
	return n
}

func (s section) overhead() int {
	if s.header != "" {
		return 2
	}
	return 1
}

// View renders the frame.
func (m *Model) View() string {
	w := m.width
	if w <= 0 {
		w = 80
	}
	if m.showHelp {
		return m.helpView(w)
	}
	head := m.headerLine(w)
	nodes := m.nodesSection(w)
	var secs []section
	if m.opt.Once {
		secs = append(secs, nodes)
		secs = append(secs, m.onceConnSections(w)...)
	} else {
		mid := m.connsSection(w)
		if m.binding {
			mid = m.bindingSection(w)
		}
		secs = []section{nodes, mid}
	}
	secs = append(secs, m.alertsSection(w))
	focusOf := func(i int) bool {
		if m.opt.Once {
			return false
		}
		return pane(i) == m.focus
	}

	lines := []string{head}
	if m.height <= 0 || m.opt.Once {
		for i, s := range secs {
			lines = append(lines, s.render(w, -1, focusOf(i), m.opt.Once)...)
		}
		if !m.opt.Once {
			lines = append(lines, m.footer(w))
		}
		return strings.Join(lines, "\n")
	}
	// Fit the panes into the height: each gets its title (and header) and
	// one row, then rows go round-robin to the panes that want more.
	avail := m.height - 2
	alloc := make([]int, len(secs))
	for i, s := range secs {
		avail -= s.overhead()
		if s.want() > 0 && avail > 0 {
			alloc[i] = 1
			avail--
		}
	}
	for avail > 0 {
		gave := false
		for i, s := range secs {
			if avail > 0 && alloc[i] < s.want() {
				alloc[i]++
				avail--
				gave = true
			}
		}
		if !gave {
			break
		}
	}
	for i, s := range secs {
		lines = append(lines, s.render(w, alloc[i], focusOf(i), false)...)
	}
	for len(lines) < m.height-1 {
		lines = append(lines, "")
	}
	if len(lines) > m.height-1 {
		lines = lines[:max(0, m.height-1)]
	}
	lines = append(lines, m.footer(w))
	return strings.Join(lines, "\n")
}

func (m *Model) headerLine(w int) string {
	if !m.have {
		return pad(stTitle.Render("boxtop")+"  polling…", w)
	}
	var up, down, degraded, conns int
	var bound uint64
	for _, n := range m.snap.Nodes {
		switch n.State {
		case StateUp:
			up++
		case StateDown:
			down++
		case StateDegraded:
			degraded++
		}
		if n.State != StateDown {
			conns += len(n.Conns)
			bound += n.Info.BoundBytes
		}
	}
	parts := []string{fmt.Sprintf("%d nodes: %d up", len(m.snap.Nodes), up)}
	if down > 0 {
		parts[0] += fmt.Sprintf(", %s", stDown.Render(fmt.Sprintf("%d down", down)))
	}
	if degraded > 0 {
		parts[0] += fmt.Sprintf(", %s", stDegraded.Render(fmt.Sprintf("%d degraded", degraded)))
	}
	parts = append(parts, probe.HumanBytes(bound)+" bound", plural(conns, "conn"))
	if m.snap.Head != "" {
		h := "head " + m.snap.HeadState
		if m.snap.HeadError != "" {
			h = stDown.Render("head unreachable")
		}
		parts = append(parts, h)
	}
	if m.filter != "" && !m.filtering {
		parts = append(parts, "filter: "+m.filter)
	}
	left := stTitle.Render("boxtop") + "  " + strings.Join(parts, " · ")
	right := m.clock(m.now())
	gap := w - lipgloss.Width(left) - lipgloss.Width(right)
	if gap < 1 {
		return pad(left, w)
	}
	return left + strings.Repeat(" ", gap) + right
}

// Nodes pane columns.
const (
	colDev   = 6
	colBytes = 9
	colConn  = 4
	colState = 8
	colHist  = 8
)

func (m *Model) nodeWidth(w int) int {
	nw := 4
	for _, n := range m.snap.Nodes {
		nw = max(nw, lipgloss.Width(n.Name))
	}
	limit := 10
	if w >= 100 {
		limit = 24
	}
	return min(nw, limit)
}

func (m *Model) nodesSection(w int) section {
	nw := m.nodeWidth(w)
	hist := colHist
	barW := w - (2 + nw + 1 + colDev + 1 + 1 + colBytes + 1 + colBytes + 1 + colConn + 1 + colState + 1 + hist)
	if barW < 8 {
		hist = 0
		barW = w - (2 + nw + 1 + colDev + 1 + 1 + colBytes + 1 + colBytes + 1 + colConn + 1 + colState)
	}
	barW = max(barW, 3)
	legend := cellBound + "box " + cellOthers + "other " + cellFree + "free"
	if barW < lipgloss.Width(legend) {
		legend = "MEMORY"
	}
	header := "  " + pad("NODE", nw) + " " + pad("DEV", colDev) + " " + pad(legend, barW) + " " + rpad("BOUND", colBytes) +
		" " + rpad("FREE", colBytes) + " " + rpad("CONN", colConn) + " " + pad("STATE", colState)
	if hist > 0 {
		header += " " + pad("HISTORY", hist)
	}
	rows := m.nodeRows()
	s := section{title: fmt.Sprintf("NODES (%s)", nodeSorts[m.nodeSort]), header: header, sel: -1, empty: "no nodes"}
	if m.filter != "" && len(rows) == 0 {
		s.empty = "no node matches the filter"
	}
	if len(rows) > 0 {
		s.sel = m.nodeIndex(rows)
	}
	for _, r := range rows {
		n := r.node
		var d worker.DeviceInfo
		devName := "-"
		if r.dev >= 0 {
			d = n.Info.Devices[r.dev]
			devName = d.Name
		}
		line := "  " + pad(n.Name, nw) + " " + pad(devName, colDev) + " "
		state := stateStyle(n.State).Render(pad(n.State, colState))
		if n.State == StateDown {
			msg := "down since " + m.clock(n.DownSince)
			if n.Error != "" {
				msg += ": " + n.Error
			}
			line += stDown.Render(pad(msg, barW+1+colBytes+1+colBytes)) + " " + rpad("-", colConn) + " " + state
		} else {
			line += bar(d, barW) + " " + rpad(probe.HumanBytes(d.BoundBytes), colBytes) + " " +
				rpad(probe.HumanBytes(d.MemoryFree), colBytes) + " " + rpad(fmt.Sprint(len(n.Conns)), colConn) + " " + state
		}
		if hist > 0 {
			var h []uint64
			if r.dev >= 0 && r.dev < len(n.History) {
				h = n.History[r.dev]
			}
			line += " " + spark(h, hist)
		}
		s.rows = append(s.rows, line)
	}
	return s
}

// Connections pane columns.
const (
	colID     = 4
	colAge    = 6
	colCState = 9
	colBufs   = 4
)

func (m *Model) connHeader(w int) (string, int) {
	peerW := w - (2 + colID + 1 + 1 + colAge + 1 + colAge + 1 + colCState + 1 + colBytes + 1 + colBufs)
	peerW = max(peerW, 8)
	return "  " + rpad("ID", colID) + " " + pad("PEER", peerW) + " " + rpad("AGE", colAge) + " " + rpad("IDLE", colAge) +
		" " + pad("STATE", colCState) + " " + rpad("BYTES", colBytes) + " " + rpad("BUFS", colBufs), peerW
}

func (m *Model) connLines(n *Node, conns []worker.ConnInfo, peerW int) []string {
	now := m.now()
	var out []string
	for _, c := range conns {
		st := pad(c.State, colCState)
		if c.State == "closed" {
			st = stDown.Render(st)
		}
		out = append(out, "  "+rpad(fmt.Sprint(c.ID), colID)+" "+pad(c.Peer, peerW)+" "+rpad(age(now.Sub(c.Since)), colAge)+" "+
			rpad(age(now.Sub(c.LastActivity)), colAge)+" "+st+" "+rpad(probe.HumanBytes(c.Bytes), colBytes)+" "+
			rpad(fmt.Sprint(len(c.Buffers)), colBufs))
	}
	return out
}

func (m *Model) connsSection(w int) section {
	n := m.selectedNode()
	header, peerW := m.connHeader(w)
	s := section{title: "CONNECTIONS", header: header, sel: -1, empty: "no connections"}
	if n == nil {
		s.empty = "no node selected"
		return s
	}
	rows := m.connRows(n)
	s.title = fmt.Sprintf("CONNECTIONS · %s (%d, %s)", n.Name, len(rows), connSorts[m.connSort])
	switch {
	case n.State == StateDown:
		s.empty = "node down: connections unknown"
	case m.filter != "" && len(rows) == 0 && len(n.Conns) > 0:
		s.empty = "no connection matches the filter"
	}
	if len(rows) > 0 {
		s.sel = m.connIndex(rows)
	}
	s.rows = m.connLines(n, rows, peerW)
	return s
}

func (m *Model) onceConnSections(w int) []section {
	header, peerW := m.connHeader(w)
	var out []section
	for i := range m.snap.Nodes {
		n := &m.snap.Nodes[i]
		if len(n.Conns) == 0 {
			continue
		}
		rows := m.connRows(n)
		out = append(out, section{title: fmt.Sprintf("CONNECTIONS · %s (%d)", n.Name, len(rows)), header: header,
			rows: m.connLines(n, rows, peerW), sel: -1})
	}
	if len(out) == 0 {
		out = append(out, section{title: "CONNECTIONS", empty: "no connections", sel: -1})
	}
	return out
}

func (m *Model) bindingSection(w int) section {
	n, c := m.selectedNode(), m.selectedConn()
	s := section{title: "BINDINGS", sel: -1, empty: "no buffers"}
	if n == nil || c == nil {
		return s
	}
	s.title = fmt.Sprintf("BINDINGS · %s conn %d · %s · %s · %d buffers, %s", n.Name, c.ID, c.Peer, c.State,
		len(c.Buffers), probe.HumanBytes(c.Bytes))
	s.header = "  " + rpad("BUF", 6) + "  " + pad("DEVICE", 12) + " " + rpad("SIZE", colBytes) + " " + rpad("AGE", colAge) + "  CREATED"
	now := m.now()
	for _, b := range c.Buffers {
		s.rows = append(s.rows, "  "+rpad(fmt.Sprint(b.ID), 6)+"  "+pad(b.Device, 12)+" "+rpad(probe.HumanBytes(b.Size), colBytes)+
			" "+rpad(age(now.Sub(b.Created)), colAge)+"  "+m.clock(b.Created))
	}
	return s
}

func (m *Model) alertsSection(w int) section {
	rows := m.alertRows()
	s := section{title: fmt.Sprintf("ALERTS (%d)", len(rows)), sel: -1, empty: "none"}
	if len(rows) > 0 && !m.opt.Once {
		s.sel = m.selAlert
	}
	nw := m.nodeWidth(w)
	for _, a := range rows {
		mark := "·"
		if a.Active {
			mark = "!"
		}
		line := "  " + mark + " " + m.clock(a.Time) + " " + pad(a.Node, nw) + " " + a.Text
		if a.Active {
			line = stAlert.Render(line)
		}
		s.rows = append(s.rows, line)
	}
	return s
}

func (m *Model) footer(w int) string {
	switch {
	case m.confirm != nil:
		c := m.confirm
		return pad(stDegraded.Render(fmt.Sprintf("close conn %d (%s) on %s and free its buffers? y/n", c.id, c.peer, c.node)), w)
	case m.filtering:
		return pad("/"+m.filter+"█  enter apply · esc clear", w)
	case m.status != "":
		return pad(stStatus.Render(m.status), w)
	}
	m.help.Width = w
	return pad(m.help.ShortHelpView(m.keys.ShortHelp()), w)
}

func (m *Model) helpView(w int) string {
	lines := []string{
		stTitle.Render("boxtop") + " — box workers' memory, connections and bindings",
		"",
		"  ↑/k ↓/j      move in the focused pane",
		"  tab          next pane (nodes → connections → alerts); shift+tab back",
		"  enter        nodes: go to the node's connections; connections: its buffers",
		"  esc          leave the buffers view, clear the filter",
		"  /            filter every pane (node, device, peer, state, alert text)",
		"  s            sort the focused pane (nodes: name, bound, free;",
		"               connections: id, bytes, age)",
		"  c            close the selected connection (asks y/n); the worker",
		"               frees its buffers before it answers",
		"  r            refresh now",
		"  ?            this help",
		"  q            quit",
		"",
		"  Memory bars: " + cellBound + " bound by box  " + cellOthers + " used by others  " + cellFree + " free",
		"  States: up · down (admin API unreachable) · degraded (the head lost it,",
		"  or memory is still bound after its connection ended)",
		"",
		"  press ? or esc to go back",
	}
	for i, l := range lines {
		lines[i] = pad(l, w)
	}
	if m.height > 0 {
		for len(lines) < m.height {
			lines = append(lines, pad("", w))
		}
		lines = lines[:m.height]
	}
	return strings.Join(lines, "\n")
}

// Render is one frame for `boxtop --once`: every node, every connection and
// the alerts, width columns wide, as tall as needed.
func Render(s Snapshot, width int, opt Options) string {
	opt.Once = true
	m := New(nil, opt)
	m.SetSnapshot(s)
	m.SetSize(width, 0)
	m.fixSelection()
	return m.View() + "\n"
}
