package tui

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/charmbracelet/lipgloss"
	"github.com/charmbracelet/x/ansi"

	"github.com/boxproj/box/api"
	"github.com/boxproj/box/probe"
)

var (
	stTitle    = lipgloss.NewStyle().Bold(true)
	stFocus    = lipgloss.NewStyle().Bold(true).Foreground(lipgloss.Color("12"))
	stHeader   = lipgloss.NewStyle().Faint(true)
	stSelected = lipgloss.NewStyle().Reverse(true)
	stBound    = lipgloss.NewStyle().Foreground(lipgloss.Color("205"))
	stOthers   = lipgloss.NewStyle().Foreground(lipgloss.Color("247")) // neutral: not an alert colour
	stFree     = lipgloss.NewStyle().Foreground(lipgloss.Color("238"))
	stInfo     = lipgloss.NewStyle().Faint(true)
	stSortCol  = lipgloss.NewStyle().Bold(true).Underline(true)
	stBanner   = lipgloss.NewStyle().Foreground(lipgloss.Color("12"))
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
func bar(d api.DeviceInfo, w int) string {
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

// spark draws history in w cells, scaled to the device's total memory (so
// a few MiB of a large device stays low). With more samples than cells,
// each cell shows the largest of its samples. Zero draws as "·", nothing
// known as blank.
func spark(h []uint64, w int, total uint64) string {
	if w <= 0 {
		return ""
	}
	per := (len(h) + w - 1) / max(w, 1)
	per = max(per, 1)
	var cells []uint64
	for i := len(h); i > 0 && len(cells) < w; i -= per {
		var v uint64
		for _, x := range h[max(0, i-per):i] {
			v = max(v, x)
		}
		cells = append(cells, v)
	}
	slices.Reverse(cells)
	var hi uint64 = total
	if hi == 0 {
		for _, v := range cells {
			hi = max(hi, v)
		}
	}
	var sb strings.Builder
	sb.WriteString(strings.Repeat(" ", w-len(cells)))
	for _, v := range cells {
		if v == 0 || hi == 0 {
			sb.WriteString("·")
			continue
		}
		i := int(float64(v) / float64(hi) * float64(len(sparks)))
		sb.WriteRune(sparks[clamp(i, 0, len(sparks)-1)])
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
	top := []string{m.headerLine(w)}
	top = append(top, m.headStrip(w)...)
	if !m.opt.Once {
		top = append(top, m.bannerLines(w)...)
	}
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
	secs = append(secs, m.eventsSection(w))
	focusOf := func(i int) bool {
		if m.opt.Once {
			return false
		}
		return pane(i) == m.focus
	}

	lines := top
	if m.height <= 0 || m.opt.Once {
		for i, s := range secs {
			lines = append(lines, s.render(w, -1, focusOf(i), m.opt.Once)...)
		}
		if !m.opt.Once {
			lines = append(lines, m.footerLines(w)...)
		}
		return strings.Join(lines, "\n")
	}
	foot := m.footerLines(w)
	// Fit the panes into the height: each gets its title (and header) and
	// one row, then rows go round-robin to the panes that want more.
	avail := m.height - len(top) - len(foot)
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
	body := max(0, m.height-len(foot))
	for len(lines) < body {
		lines = append(lines, "")
	}
	lines = lines[:body]
	lines = append(lines, foot...)
	if len(lines) > m.height {
		lines = lines[len(lines)-m.height:]
	}
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
	parts := []string{fmt.Sprintf("%s: %d up", plural(len(m.snap.Nodes), "node"), up)}
	if down > 0 {
		parts[0] += fmt.Sprintf(", %s", stDown.Render(fmt.Sprintf("%d down", down)))
	}
	if degraded > 0 {
		parts[0] += fmt.Sprintf(", %s", stDegraded.Render(fmt.Sprintf("%d degraded", degraded)))
	}
	parts = append(parts, probe.HumanBytes(bound)+" bound", plural(conns, "conn"))
	if m.snap.Head != "" && m.snap.HeadStats == nil {
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

func headStateStyle(s string) lipgloss.Style {
	switch s {
	case "ok":
		return stUp
	case "degraded", "error":
		return stDown
	}
	return stDegraded
}

func rate(v float64, unit string) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f %s", v, unit)
	case v >= 10:
		return fmt.Sprintf("%.1f %s", v, unit)
	}
	return fmt.Sprintf("%.1f %s", v, unit)
}

// ms formats a latency: 85ms, 1.24s.
func ms(d time.Duration) string {
	if d < time.Second {
		return fmt.Sprintf("%dms", d.Milliseconds())
	}
	return fmt.Sprintf("%.2fs", d.Seconds())
}

// headStrip is the head's serving line: model, state, tokens/s, requests/s,
// slots, queue and TTFT (and totals on wide screens).
func (m *Model) headStrip(w int) []string {
	hs := m.snap.HeadStats
	if hs == nil || !m.have {
		return nil
	}
	label := stTitle.Render("HEAD") + " "
	if !hs.Reachable {
		line := label + stDown.Render("unreachable since "+m.clock(hs.Since)) + ": " + hs.Error
		if hs.Model != "" {
			line += " · was serving " + hs.Model
		}
		return []string{pad(line, w)}
	}
	state := hs.State
	if state == "" {
		state = "?"
	}
	tok, req := "- tok/s", "- req/s"
	if hs.Rated {
		tok, req = rate(hs.TokensPerSec, "tok/s"), rate(hs.RequestsPerSec, "req/s")
	}
	slots := fmt.Sprintf("slots %d/%d", hs.SlotsBusy, hs.SlotsTotal)
	if hs.SlotsTotal == 0 {
		slots = fmt.Sprintf("%d busy", hs.SlotsBusy)
	}
	ttft := "TTFT p50 -"
	if hs.TTFT > 0 {
		ttft = "TTFT p50 " + ms(hs.TTFT)
	}
	rest := []string{tok, req, slots, fmt.Sprintf("queue %d", hs.Queue), ttft}
	if w >= 120 {
		rest = append(rest, fmt.Sprintf("%d requests, %d tokens", hs.Requests, hs.Tokens))
	}
	if w >= 160 {
		rest = append(rest, plural(hs.LocalLayers, "layer")+" on the head")
	}
	tail := " " + headStateStyle(hs.State).Render(state) + " · " + strings.Join(rest, " · ")
	if hs.State != "ok" && hs.Error != "" {
		tail += " · " + hs.Error
	}
	model := hs.Model
	if model == "" {
		model = "(no model)"
	}
	room := w - lipgloss.Width(label) - lipgloss.Width(tail)
	if room < lipgloss.Width(model) {
		model = pad(model, max(room, 8))
	}
	line := label + model + tail
	if w >= 160 {
		right := hs.URL
		if gap := w - lipgloss.Width(line) - lipgloss.Width(right); gap >= 2 {
			line += strings.Repeat(" ", gap) + stHeader.Render(right)
		}
	}
	return []string{pad(line, w)}
}

// bannerLines are Options.Banner, wrapped to the width.
func (m *Model) bannerLines(w int) []string {
	var out []string
	for _, b := range m.opt.Banner {
		for _, l := range strings.Split(ansi.Wrap(b, w-2, " /&?"), "\n") {
			out = append(out, pad(stBanner.Render("  "+l), w))
		}
	}
	return out
}

// displayNames maps node names to what fits the node column at width w.
func (m *Model) displayNames(nameCap int) map[string]string {
	names := make([]string, len(m.snap.Nodes))
	for i, n := range m.snap.Nodes {
		names[i] = n.Name
	}
	short := shortNames(names, nameCap)
	out := map[string]string{}
	for i, n := range names {
		out[n] = short[i]
	}
	return out
}

func (m *Model) name(n string, w int) string {
	if s, ok := m.displayNames(w)[n]; ok {
		return s
	}
	return n
}

// Nodes pane columns.
const (
	colDev    = 5
	colBytes  = 8
	colConn   = 4
	colState  = 8
	colLayers = 6
	colPlaced = 17
	minBar    = 6
)

type nodeLayout struct {
	nw, bar, hist  int
	layers, placed bool
}

func (m *Model) nodeLayout(w int) nodeLayout {
	l := nodeLayout{layers: m.snap.HeadStats != nil}
	l.placed = l.layers && w >= 110
	l.hist = clamp((w-60)/4, 8, 36)
	fixed := 2 + 1 + colDev + 1 + 1 + colBytes + 1 + colBytes + 1 + colConn + 1 + colState + 1 + l.hist
	if l.layers {
		fixed += 1 + colLayers
	}
	if l.placed {
		fixed += 1 + colPlaced
	}
	nameCap := max(6, w-fixed-minBar)
	l.nw = 5 // "NODE" and a sort mark
	for _, s := range m.displayNames(nameCap) {
		l.nw = max(l.nw, lipgloss.Width(s))
	}
	l.nw = min(l.nw, nameCap)
	l.bar = max(3, w-fixed-l.nw)
	return l
}

// nodeNameCap is the width the node names get (for other panes, so a
// node reads the same everywhere).
func (m *Model) nodeNameCap(w int) int { return m.nodeLayout(w).nw }

// sortHead renders a column label, marked and highlighted when the pane is
// sorted by it: ▼ largest first, ▲ smallest (or the given order) first.
func sortHead(label string, sorted, desc bool, w int, right bool) string {
	if sorted {
		if desc {
			label += "▼"
		} else {
			label += "▲"
		}
	}
	var cell string
	if right {
		cell = rpad(label, w)
	} else {
		cell = pad(label, w)
	}
	if sorted {
		return stSortCol.Render(cell)
	}
	return stHeader.Render(cell)
}

func (m *Model) nodesSection(w int) section {
	l := m.nodeLayout(w)
	names := m.displayNames(l.nw)
	legend := cellBound + "box " + cellOthers + "other " + cellFree + "free"
	if l.bar < lipgloss.Width(legend) {
		legend = "MEMORY"
	}
	by := nodeSorts[m.nodeSort]
	desc := by != "name"
	if m.nodeRev {
		desc = !desc
	}
	sp := stHeader.Render(" ")
	header := stHeader.Render("  ") + sortHead("NODE", by == "name", desc, l.nw, false) + sp + stHeader.Render(pad("DEV", colDev)) + sp +
		stHeader.Render(pad(legend, l.bar)) + sp + sortHead("BOUND", by == "bound", desc, colBytes, true) + sp +
		sortHead("FREE", by == "free", desc, colBytes, true)
	if l.layers {
		header += sp + sortHead("LAYERS", by == "layers", desc, colLayers, true)
	}
	if l.placed {
		header += sp + stHeader.Render(rpad("PLACED/NEEDED", colPlaced))
	}
	span := 0
	for _, n := range m.snap.Nodes {
		for _, h := range n.History {
			span = max(span, len(h))
		}
	}
	// The label says the window the samples cover, once it is worth saying.
	histLabel := "HISTORY"
	if win := time.Duration(span) * m.opt.Interval; !m.opt.Once && win >= 2*time.Second {
		histLabel = "HIST " + age(win)
	}
	header += sp + stHeader.Render(rpad("CONN", colConn)) + sp + stHeader.Render(pad("STATE", colState)) + sp +
		stHeader.Render(pad(histLabel, l.hist))
	rows := m.nodeRows()
	s := section{title: "NODES", header: header, sel: -1, empty: "no nodes"}
	if m.filter != "" && len(rows) == 0 {
		s.empty = "no node matches the filter"
	}
	if len(rows) > 0 {
		s.sel = m.nodeIndex(rows)
	}
	for _, r := range rows {
		n := r.node
		var d api.DeviceInfo
		devName := "-"
		if r.dev >= 0 {
			d = n.Info.Devices[r.dev]
			devName = d.Name
		}
		name := names[n.Name]
		if r.dev > 0 {
			name = "" // a node's further devices
		}
		line := "  " + pad(name, l.nw) + " " + pad(devName, colDev) + " "
		state := stateStyle(n.State).Render(pad(n.State, colState))
		if n.State == StateDown {
			msg := "down since " + m.clock(n.DownSince)
			if n.Error != "" {
				msg += ": " + n.Error
			}
			line += stDown.Render(pad(msg, l.bar+1+colBytes+1+colBytes))
		} else {
			line += bar(d, l.bar) + " " + rpad(probe.HumanBytes(d.BoundBytes), colBytes) + " " +
				rpad(probe.HumanBytes(d.MemoryFree), colBytes)
		}
		first := r.dev <= 0
		if l.layers {
			cell := "-"
			if n.InHead && first {
				cell = fmt.Sprint(n.Layers)
			} else if !first {
				cell = ""
			}
			line += " " + rpad(cell, colLayers)
		}
		if l.placed {
			cell := "-"
			switch {
			case !first:
				cell = ""
			case n.InHead && n.Need > 0:
				cell = probe.HumanBytes(n.Placed) + "/" + probe.HumanBytes(n.Need)
			case n.InHead:
				cell = probe.HumanBytes(n.Placed)
			}
			line += " " + rpad(cell, colPlaced)
		}
		conns := fmt.Sprint(len(n.Conns))
		if n.State == StateDown {
			conns = "-"
		}
		line += " " + rpad(conns, colConn) + " " + state
		var h []uint64
		if r.dev >= 0 && r.dev < len(n.History) {
			h = n.History[r.dev]
		}
		line += " " + spark(h, l.hist, d.MemoryTotal)
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
	colRate   = 5
	colPID    = 7
	colNow    = 14
	minPeer   = 15
	maxPeer   = 32
)

// shortBytes is a byte count in at most 5 cells: 0, 512, 12K, 1.2M, 3.4G.
func shortBytes(v float64) string {
	units := []string{"", "K", "M", "G", "T"}
	i := 0
	for v >= 1000 && i < len(units)-1 {
		v /= 1024
		i++
	}
	switch {
	case i == 0:
		return fmt.Sprintf("%.0f", v)
	case v < 10:
		return fmt.Sprintf("%.1f%s", v, units[i])
	}
	return fmt.Sprintf("%.0f%s", v, units[i])
}

func cmdRate(v float64) string {
	if v >= 10 || v == 0 {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.1f", v)
}

type connLayout struct {
	peer      int
	wide, now bool // IDLE, PID, IN and OUT totals; NOW (the running command)
}

func (m *Model) connLayout(w int) connLayout {
	l := connLayout{wide: w >= 120, now: w >= 160}
	fixed := 2 + colID + 1 + 1 + colAge + 1 + colCState + 1 + colBytes + 1 + colBufs + 3*(1+colRate)
	if l.wide {
		fixed += 1 + colAge + 1 + colPID + 2*(1+colBytes)
	}
	if l.now {
		fixed += 1 + colNow
	}
	l.peer = max(w-fixed, minPeer)
	if l.wide {
		l.peer = min(l.peer, maxPeer)
	}
	return l
}

func (m *Model) connHeader(w int) (string, connLayout) {
	l := m.connLayout(w)
	by := connSorts[m.connSort]
	desc := by == "bytes" || by == "cmds"
	if m.connRev {
		desc = !desc
	}
	sp := stHeader.Render(" ")
	h := stHeader.Render("  ") + sortHead("ID", by == "id", desc, colID, true) + sp + stHeader.Render(pad("PEER", l.peer)) + sp +
		sortHead("AGE", by == "age", !desc, colAge, true)
	if l.wide {
		h += sp + stHeader.Render(rpad("IDLE", colAge))
	}
	h += sp + stHeader.Render(pad("STATE", colCState))
	if l.wide {
		h += sp + stHeader.Render(rpad("PID", colPID))
	}
	h += sp + sortHead("BYTES", by == "bytes", desc, colBytes, true) + sp + stHeader.Render(rpad("BUFS", colBufs)) + sp +
		sortHead("CMD/s", by == "cmds", desc, colRate, true) + sp + stHeader.Render(rpad("IN/s", colRate)) + sp +
		stHeader.Render(rpad("OUT/s", colRate))
	if l.wide {
		h += sp + stHeader.Render(rpad("IN", colBytes)) + sp + stHeader.Render(rpad("OUT", colBytes))
	}
	if l.now {
		h += sp + stHeader.Render(pad("NOW", colNow))
	}
	return h, l
}

func (m *Model) connLines(n *Node, conns []api.ConnInfo, l connLayout) []string {
	now := m.now()
	var out []string
	for _, c := range conns {
		st := pad(string(c.State), colCState)
		if c.State == "closed" {
			st = stDown.Render(st)
		}
		peer := c.Peer
		if c.ID == n.HeadConn && c.ID != 0 {
			peer = "head " + peer
		}
		act := n.Activity[c.ID]
		cmds, in, outb := "-", "-", "-"
		if act.Rated {
			cmds, in, outb = cmdRate(act.CmdsPerSec), shortBytes(act.InPerSec), shortBytes(act.OutPerSec)
		}
		line := "  " + rpad(fmt.Sprint(c.ID), colID) + " " + pad(peer, l.peer) + " " + rpad(age(now.Sub(c.Since)), colAge)
		if l.wide {
			line += " " + rpad(age(now.Sub(c.LastActivity)), colAge)
		}
		line += " " + st
		if l.wide {
			pid := "-"
			if c.PID != 0 {
				pid = fmt.Sprint(c.PID)
			}
			line += " " + rpad(pid, colPID)
		}
		line += " " + rpad(probe.HumanBytes(c.Bytes), colBytes) + " " + rpad(fmt.Sprint(len(c.Buffers)), colBufs) + " " +
			rpad(cmds, colRate) + " " + rpad(in, colRate) + " " + rpad(outb, colRate)
		if l.wide {
			tin, tout := "-", "-"
			if c.Commands > 0 || c.BytesIn > 0 || c.BytesOut > 0 {
				tin, tout = probe.HumanBytes(c.BytesIn), probe.HumanBytes(c.BytesOut)
			}
			line += " " + rpad(tin, colBytes) + " " + rpad(tout, colBytes)
		}
		if l.now {
			cmd := c.Command
			if cmd == "" {
				cmd = "-"
			}
			line += " " + pad(cmd, colNow)
		}
		out = append(out, line)
	}
	return out
}

// headPart is what the head says of a node, for the connections title.
func headPart(n *Node) string {
	if !n.InHead {
		return ""
	}
	s := " · " + plural(n.Layers, "layer") + " · placed " + probe.HumanBytes(n.Placed)
	if n.Need > 0 {
		s += " of " + probe.HumanBytes(n.Need)
	}
	return s
}

func (m *Model) connsSection(w int) section {
	n := m.selectedNode()
	header, l := m.connHeader(w)
	s := section{title: "CONNECTIONS", header: header, sel: -1, empty: "no connections"}
	if n == nil {
		s.empty = "no node selected"
		return s
	}
	rows := m.connRows(n)
	s.title = fmt.Sprintf("CONNECTIONS · %s (%d)", m.name(n.Name, m.nodeNameCap(w)), len(rows)) + headPart(n)
	switch {
	case n.State == StateDown:
		s.empty = "node down: connections unknown"
	case m.filter != "" && len(rows) == 0 && len(n.Conns) > 0:
		s.empty = "no connection matches the filter"
	}
	if len(rows) > 0 {
		s.sel = m.connIndex(rows)
	}
	s.rows = m.connLines(n, rows, l)
	return s
}

func (m *Model) onceConnSections(w int) []section {
	header, l := m.connHeader(w)
	nc := m.nodeNameCap(w)
	var out []section
	for i := range m.snap.Nodes {
		n := &m.snap.Nodes[i]
		if len(n.Conns) == 0 {
			continue
		}
		rows := m.connRows(n)
		out = append(out, section{title: fmt.Sprintf("CONNECTIONS · %s (%d)", m.name(n.Name, nc), len(rows)) + headPart(n),
			header: header, rows: m.connLines(n, rows, l), sel: -1})
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
	s.title = fmt.Sprintf("BINDINGS · %s conn %d · %s · %s · %d buffers, %s", m.name(n.Name, m.nodeNameCap(w)), c.ID, c.Peer, c.State,
		len(c.Buffers), probe.HumanBytes(c.Bytes))
	s.header = "  " + rpad("BUF", 6) + "  " + pad("DEVICE", 12) + " " + rpad("SIZE", colBytes) + " " + rpad("AGE", colAge) + "  CREATED"
	now := m.now()
	for _, b := range c.Buffers {
		s.rows = append(s.rows, "  "+rpad(fmt.Sprint(b.ID), 6)+"  "+pad(b.Device, 12)+" "+rpad(probe.HumanBytes(b.Size), colBytes)+
			" "+rpad(age(now.Sub(b.Created)), colAge)+"  "+m.clock(b.Created))
	}
	return s
}

// eventsSection is the alerts and the event log: active alerts (!) first,
// then the log newest first: alerts that ended (✓, with how long they
// lasted), alert events (·) and routine events.
func (m *Model) eventsSection(w int) section {
	rows := m.alertRows()
	var active int
	for _, a := range rows {
		if a.Active {
			active++
		}
	}
	title := fmt.Sprintf("EVENTS (%d)", len(rows))
	if active > 0 {
		title += " · " + plural(active, "active alert")
	}
	if m.alertsOnly {
		title += " · alerts only"
	}
	s := section{title: title, sel: -1, empty: "none"}
	if len(rows) > 0 && !m.opt.Once {
		s.sel = m.selAlert
	}
	nc := m.nodeNameCap(w)
	names := m.displayNames(nc)
	nw := 4
	for _, a := range rows {
		nm := a.Node
		if d, ok := names[nm]; ok {
			nm = d
		}
		nw = max(nw, lipgloss.Width(nm))
	}
	nw = min(nw, nc)
	now := m.now()
	for _, a := range rows {
		nm := a.Node
		if d, ok := names[nm]; ok {
			nm = d
		}
		mark, text, st := "·", a.Text, lipgloss.NewStyle()
		switch {
		case a.Active:
			mark, st = "!", stAlert
			if d := now.Sub(a.Time); d >= time.Second {
				text += " · for " + age(d)
			}
		case !a.End.IsZero():
			mark, st = "✓", stInfo
			text += " · ended after " + age(a.Lasted())
		case a.Info:
			mark, st = " ", stInfo
		}
		s.rows = append(s.rows, st.Render("  "+mark+" "+m.clock(a.Time)+" "+pad(nm, nw)+" "+text))
	}
	return s
}

// footerLines is the key help, a message, the filter input or the close
// prompt (which may take more than one line).
func (m *Model) footerLines(w int) []string {
	switch {
	case m.confirm != nil:
		c := m.confirm
		q := fmt.Sprintf("close conn %d on %s? It is %s. Free its buffers? y/n", c.id,
			m.name(c.node, m.nodeNameCap(w)), c.what)
		var out []string
		for _, l := range strings.Split(ansi.Wrap(q, w, " "), "\n") {
			out = append(out, pad(stDegraded.Render(l), w))
		}
		return out
	case m.filtering:
		return []string{pad("/"+m.filter+"█  enter apply · esc clear", w)}
	case m.status != "":
		return []string{pad(stStatus.Render(m.status), w)}
	}
	m.help.Width = w
	return []string{pad(m.help.ShortHelpView(m.keys.ShortHelp()), w)}
}

func (m *Model) helpView(w int) string {
	lines := []string{
		stTitle.Render("boxtop") + " — box workers' memory, connections and bindings, and the head",
		"",
		"  ↑/k ↓/j      move in the focused pane",
		"  tab          next pane (nodes → connections → events); shift+tab back",
		"  enter        nodes: go to the node's connections; connections: its buffers",
		"  esc          leave the buffers view, clear the filter",
		"  /            filter every pane (node, device, peer, state, event text)",
		"  s / S        sort the focused pane by the next column / reverse it",
		"               (nodes: name, bound, free, layers; conns: id, bytes, age, cmd/s)",
		"  e            events pane: alerts only, or every event",
		"  c            close the selected connection (asks y/n); the worker",
		"               frees its buffers before it answers",
		"  r            refresh now · ? this help · q quit",
		"",
		"  Memory bars: " + cellBound + " bound by box  " + cellOthers + " used by others  " + cellFree + " free",
		"  HIST: bound bytes over the window shown, scaled to the device's total",
		"  States: up · down (admin API unreachable) · degraded (the head lost it,",
		"  or memory is still bound after its connection ended)",
		"  Events: ! an active alert, ✓ an alert that ended, · an alert event",
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
