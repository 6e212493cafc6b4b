package leakcheck

import (
	"fmt"
	"math"
	"strings"
)

// Verdicts.
const (
	VerdictPass = "pass"
	VerdictLeak = "leak" // memory not given back
	VerdictFail = "fail" // the cycle could not be carried out: a failed start, a failed request, a dead worker
	// VerdictForeign: after the release, memory is held by a connection
	// leakcheck did not open, so the readings cannot clear the heads.
	VerdictForeign = "foreign"
)

// minTrendCycles is how many cycles a floor trend needs.
const minTrendCycles = 3

// judge sets the cycle's deltas and verdict from its readings.
func (c *Cycle) judge(first map[string]uint64, tol uint64, judged []string) {
	if first == nil {
		first = c.Baseline
	}
	var leaks []string
	for _, l := range c.Leaks {
		leaks = append(leaks, fmt.Sprintf("%d bytes (%s) still bound on worker %s, connection %d (%s, %d buffers) %.1fs after the head ended",
			l.Bytes, fmtBytes(int64(l.Bytes)), l.Worker, l.Conn, l.State, l.Buffers, c.ReleaseSeconds))
	}
	if c.After != nil {
		c.Delta = map[string]int64{}
		for k, v := range c.After {
			if b, ok := first[k]; ok {
				c.Delta[k] = int64(v) - int64(b)
			}
		}
		for _, k := range metricOrder {
			d, ok := c.Delta[k]
			if !ok || d <= int64(tol) {
				continue
			}
			msg := fmt.Sprintf("%s is %d bytes (%s) above the first baseline after %.1fs (tolerance %s)",
				k, d, fmtBytes(d), c.ReleaseSeconds, fmtBytes(int64(tol)))
			if contains(judged, k) {
				leaks = append(leaks, msg)
			} else {
				c.Notes = append(c.Notes, msg+" (reported only)")
			}
		}
	}
	var foreign []string
	for _, f := range c.Foreign {
		foreign = append(foreign, fmt.Sprintf("%d bytes (%s) held on worker %s by connection %d (peer %s, %s, %d buffers), which leakcheck did not open",
			f.Bytes, fmtBytes(int64(f.Bytes)), f.Worker, f.Conn, f.Peer, f.State, f.Buffers))
	}
	c.Problems = append(append(leaks, foreign...), c.Problems...)
	// Empty lists are [] in JSON, never null (SCHEMA.md).
	if c.Problems == nil {
		c.Problems = []string{}
	}
	if c.Leaks == nil {
		c.Leaks = []Leak{}
	}
	if c.Foreign == nil {
		c.Foreign = []Leak{}
	}
	if c.Notes == nil {
		c.Notes = []string{}
	}
	switch {
	case len(leaks) > 0:
		c.Verdict = VerdictLeak
	case len(foreign) > 0:
		c.Verdict = VerdictForeign
	case len(c.Problems) > 0 || c.After == nil:
		c.Verdict = VerdictFail
	default:
		c.Verdict = VerdictPass
	}
}

func (c *Cycle) leakStrings() []string {
	var out []string
	for _, l := range c.Leaks {
		out = append(out, fmt.Sprintf("%d bytes left on %s conn %d", l.Bytes, l.Worker, l.Conn))
	}
	return out
}

// FloorTrend fits a least-squares line through after-release values, one per
// cycle in order, and reports its slope (bytes per cycle) and the growth it
// implies over the whole run (slope × cycles). A floor creeps when that
// growth exceeds half the tolerance: a slow leak that no single cycle, and
// perhaps not even the last one, shows above the tolerance. Fewer than three
// values never creep: two points cannot tell a trend from a step.
func FloorTrend(after []float64, tol float64) (slope, growth float64, creeping bool) {
	n := float64(len(after))
	if len(after) < minTrendCycles {
		return 0, 0, false
	}
	var sx, sy, sxx, sxy float64
	for i, y := range after {
		x := float64(i + 1)
		sx += x
		sy += y
		sxx += x * x
		sxy += x * y
	}
	den := n*sxx - sx*sx
	if den == 0 {
		return 0, 0, false
	}
	slope = (n*sxy - sx*sy) / den
	growth = slope * n
	return slope, growth, growth > tol/2
}

// finish computes the trends, the overall verdict and the headline.
func (rep *Report) finish() {
	tol := float64(rep.ToleranceBytes)
	counts := map[string]int{}
	var foreign []Leak
	for _, c := range rep.Cycles {
		counts[c.Verdict]++
		if c.Verdict == VerdictForeign || len(c.Foreign) > 0 {
			foreign = c.Foreign // the last cycle's holders name them best
		}
	}
	for _, k := range rep.Metrics {
		var ys []float64
		for _, c := range rep.Cycles {
			if v, ok := c.After[k]; ok {
				ys = append(ys, float64(v))
			}
		}
		slope, growth, creeping := FloorTrend(ys, tol)
		t := Trend{Metric: k, Cycles: len(ys), SlopeBytesPerCycle: math.Round(slope), GrowthBytes: math.Round(growth),
			Judged: contains(rep.Judged, k), Creeping: creeping, Computed: len(ys) >= minTrendCycles}
		if creeping && t.Judged && len(foreign) > 0 {
			// Memory held by a connection leakcheck did not open moves the
			// floor: the trend cannot blame the heads.
			t.Judged = false
			rep.Notes = append(rep.Notes, fmt.Sprintf("%s floor moves %s over %d cycles while connections leakcheck did not open hold memory; not judged",
				k, fmtBytes(int64(growth)), len(ys)))
		}
		rep.Trends = append(rep.Trends, t)
		if creeping && t.Judged {
			rep.Problems = append(rep.Problems, fmt.Sprintf("%s floor creeps up: %s per cycle, %s over %d cycles (more than half the tolerance %s)",
				k, fmtBytes(int64(slope)), fmtBytes(int64(growth)), len(ys), fmtBytes(int64(tol))))
		} else if creeping && len(foreign) == 0 {
			rep.Notes = append(rep.Notes, fmt.Sprintf("%s floor creeps up %s over %d cycles; not a verdict: the allocator keeps freed heap",
				k, fmtBytes(int64(growth)), len(ys)))
		}
	}
	// Modes no cycle was planned for.
	rep.ModesSkipped = []string{}
	for i, m := range rep.Modes {
		if i >= rep.Restarts {
			rep.ModesSkipped = append(rep.ModesSkipped, m)
		}
	}
	creeping := false
	for _, t := range rep.Trends {
		creeping = creeping || (t.Creeping && t.Judged)
	}
	notRun := rep.Restarts - len(rep.Cycles)
	switch {
	case counts[VerdictLeak] > 0 || creeping:
		rep.Verdict = VerdictLeak
	case counts[VerdictForeign] > 0:
		rep.Verdict = VerdictForeign
	case counts[VerdictFail] > 0 || len(rep.Problems) > 0 || notRun > 0:
		rep.Verdict = VerdictFail
	default:
		rep.Verdict = VerdictPass
	}
	rep.Summary = rep.headline(counts, notRun, creeping, foreign)
}

// headline is the one line that says the verdict and why, then the counts,
// the trend, the tolerance and the time.
func (rep *Report) headline(counts map[string]int, notRun int, creeping bool, foreign []Leak) string {
	n := len(rep.Cycles)
	var why string
	switch rep.Verdict {
	case VerdictPass:
		why = fmt.Sprintf("all %d cycles gave the memory back", n)
	case VerdictLeak:
		switch {
		case counts[VerdictLeak] > 0:
			why = fmt.Sprintf("%d of %d cycles left memory bound", counts[VerdictLeak], n)
		default:
			why = fmt.Sprintf("each cycle is within the tolerance, but the bound floor creeps up over %d cycles", n)
		}
	case VerdictForeign:
		var names []string
		for _, f := range foreign {
			names = append(names, fmt.Sprintf("%s conn %d (%s) holds %s", f.Worker, f.Conn, f.Peer, fmtBytes(int64(f.Bytes))))
		}
		why = fmt.Sprintf("in %d of %d cycles memory stays held by connections leakcheck did not open: %s", counts[VerdictForeign], n,
			strings.Join(names, ", "))
	case VerdictFail:
		switch {
		case counts[VerdictFail] > 0:
			why = fmt.Sprintf("%d of %d cycles could not be carried out", counts[VerdictFail], n)
		default:
			why = fmt.Sprintf("the run stopped after %d of %d cycles", n, rep.Restarts)
		}
		if len(rep.Problems) > 0 {
			why += " (" + rep.Problems[0] + ")"
		}
	}
	parts := []string{fmt.Sprintf("%d passed, %d leaked, %d foreign, %d failed", counts[VerdictPass], counts[VerdictLeak],
		counts[VerdictForeign], counts[VerdictFail])}
	if notRun > 0 {
		parts[0] += fmt.Sprintf(", %d not run", notRun)
	}
	if len(rep.ModesSkipped) > 0 {
		parts = append(parts, "modes not run: "+strings.Join(rep.ModesSkipped, ","))
	}
	for _, t := range rep.Trends {
		if t.Metric != MetricBound {
			continue
		}
		switch {
		case !t.Computed:
			parts = append(parts, fmt.Sprintf("bound floor trend not computed (%d cycles)", t.Cycles))
		case creeping:
			parts = append(parts, fmt.Sprintf("bound floor creeps %s/cycle", fmtBytes(int64(t.SlopeBytesPerCycle))))
		default:
			parts = append(parts, fmt.Sprintf("bound floor trend %s/cycle", fmtBytes(int64(t.SlopeBytesPerCycle))))
		}
	}
	parts = append(parts, "tolerance "+fmtBytes(int64(rep.ToleranceBytes)), fmt.Sprintf("%.1fs", rep.Seconds))
	return fmt.Sprintf("%s: %s; %s", strings.ToUpper(rep.Verdict), why, strings.Join(parts, "; "))
}

// fmtBytes writes n in binary units: 0 B, 512 B, 5.5 MiB, -1.0 GiB.
func fmtBytes(n int64) string {
	sign := ""
	if n < 0 {
		sign, n = "-", -n
	}
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%s%d B", sign, n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%s%.1f %ciB", sign, float64(n)/float64(div), "KMGTP"[exp])
}
