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
)

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
	c.Problems = append(leaks, c.Problems...)
	// Empty lists are [] in JSON, never null (SCHEMA.md).
	if c.Problems == nil {
		c.Problems = []string{}
	}
	if c.Leaks == nil {
		c.Leaks = []Leak{}
	}
	if c.Notes == nil {
		c.Notes = []string{}
	}
	switch {
	case len(leaks) > 0:
		c.Verdict = VerdictLeak
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
	if len(after) < 3 {
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

// finish computes the trends and the overall verdict.
func (rep *Report) finish() {
	tol := float64(rep.ToleranceBytes)
	for _, k := range rep.Metrics {
		var ys []float64
		for _, c := range rep.Cycles {
			if v, ok := c.After[k]; ok {
				ys = append(ys, float64(v))
			}
		}
		slope, growth, creeping := FloorTrend(ys, tol)
		t := Trend{Metric: k, Cycles: len(ys), SlopeBytesPerCycle: math.Round(slope), GrowthBytes: math.Round(growth),
			Judged: contains(rep.Judged, k), Creeping: creeping}
		rep.Trends = append(rep.Trends, t)
		if creeping {
			msg := fmt.Sprintf("%s floor creeps up: %s per cycle, %s over %d cycles (more than half the tolerance %s)",
				k, fmtBytes(int64(slope)), fmtBytes(int64(growth)), len(ys), fmtBytes(int64(tol)))
			if t.Judged {
				rep.Problems = append(rep.Problems, msg)
			} else {
				rep.Notes = append(rep.Notes, msg+"; not a verdict: the allocator keeps freed heap")
			}
		}
	}
	counts := map[string]int{}
	for _, c := range rep.Cycles {
		counts[c.Verdict]++
	}
	creeping := false
	for _, t := range rep.Trends {
		creeping = creeping || (t.Creeping && t.Judged)
	}
	switch {
	case counts[VerdictLeak] > 0 || creeping:
		rep.Verdict = VerdictLeak
	case counts[VerdictFail] > 0 || len(rep.Problems) > 0 || len(rep.Cycles) < rep.Restarts:
		rep.Verdict = VerdictFail
	default:
		rep.Verdict = VerdictPass
	}
	var trend string
	for _, t := range rep.Trends {
		if t.Metric == MetricBound {
			trend = fmt.Sprintf("bound floor trend %s/cycle", fmtBytes(int64(t.SlopeBytesPerCycle)))
		}
	}
	rep.Summary = fmt.Sprintf("%s: %d/%d cycles passed, %d leaked, %d failed; %s; tolerance %s; %.1fs",
		strings.ToUpper(rep.Verdict), counts[VerdictPass], rep.Restarts, counts[VerdictLeak], counts[VerdictFail]+rep.Restarts-len(rep.Cycles),
		trend, fmtBytes(int64(rep.ToleranceBytes)), rep.Seconds)
	if creeping {
		rep.Summary += "; floor creeping"
	}
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
