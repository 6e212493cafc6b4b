package bench

import (
	"fmt"
	"io"
	"strings"
)

// SummaryRow is one path of the summary: what box did, and its ratio to
// the limit or baseline that path is judged against, measured in the same
// run.
type SummaryRow struct {
	Path    string  `json:"path"`
	Value   float64 `json:"value"`
	Unit    string  `json:"unit"`
	Ratio   float64 `json:"ratio,omitempty"`
	RatioTo string  `json:"ratio_to,omitempty"`
}

// Summarize gathers the headline figure of every suite that ran, one row a
// path: single node pp and tg (tg against the memory-bandwidth bound), the
// head with two workers (against single node), the model load (against raw
// loopback TCP for the same bytes) and the worker transport (against raw
// TCP too).
func Summarize(rep *Report) []SummaryRow {
	var out []SummaryRow
	for _, r := range rep.Results {
		row := SummaryRow{Path: fmt.Sprintf("single node %s %s", r.Type, r.Test), Value: r.Mean, Unit: "t/s"}
		if r.BoundTPS > 0 {
			row.Ratio, row.RatioTo = r.Ratio, fmt.Sprintf("memory bound %.1f t/s", r.BoundTPS)
		}
		out = append(out, row)
	}
	if c := rep.Cluster; c != nil && len(c.Split) == 2 {
		out = append(out,
			SummaryRow{Path: "head + 2 workers " + c.Split[0].Test, Value: c.Split[0].Mean, Unit: "t/s", Ratio: c.PPRatio, RatioTo: "single node"},
			SummaryRow{Path: "head + 2 workers " + c.Split[1].Test, Value: c.Split[1].Mean, Unit: "t/s", Ratio: c.TGRatio, RatioTo: "single node"})
	}
	if l := rep.Load; l != nil {
		cold, _ := MeanStd(l.ColdSec)
		warm, _ := MeanStd(l.WarmSec)
		if len(l.RawFreshSec) > 0 {
			floor, _ := MeanStd(l.RawFreshSec)
			raw, _ := MeanStd(l.RawSec)
			out = append(out, SummaryRow{Path: "upload floor (fresh memory)", Value: floor, Unit: "s", Ratio: floor / raw, RatioTo: "raw loopback TCP"})
		}
		out = append(out,
			SummaryRow{Path: "load over 2 workers, no cache", Value: cold, Unit: "s", Ratio: l.ColdRatio, RatioTo: "raw loopback TCP"},
			SummaryRow{Path: "load over 2 workers, warm cache", Value: warm, Unit: "s", Ratio: l.WarmRatio, RatioTo: "raw loopback TCP"})
		if len(l.RawFreshSec) > 0 {
			out = append(out, SummaryRow{Path: "load over 2 workers, no cache", Value: cold, Unit: "s", Ratio: l.ColdFreshRatio, RatioTo: "upload floor"})
		}
	}
	if r := rep.RPC; r != nil {
		out = append(out,
			SummaryRow{Path: "worker SET_TENSOR", Value: r.SetTensorBps / 1e6, Unit: "MB/s", Ratio: r.SetRatio, RatioTo: "raw loopback TCP"},
			SummaryRow{Path: "worker GET_TENSOR", Value: r.GetTensorBps / 1e6, Unit: "MB/s", Ratio: r.GetRatio, RatioTo: "raw loopback TCP"},
			SummaryRow{Path: "worker GRAPH_COMPUTE round trip", Value: r.GraphRTTus, Unit: "µs"})
	}
	return out
}

// printSummary writes rows as one table.
func printSummary(w io.Writer, rows []SummaryRow) {
	if len(rows) == 0 {
		return
	}
	fmt.Fprintf(w, "\nsummary:\n| %-34s | %12s | %-32s |\n|%s|%s|%s|\n", "path", "box", "ratio", strings.Repeat("-", 36), strings.Repeat("-", 14), strings.Repeat("-", 34))
	for _, r := range rows {
		ratio := ""
		if r.RatioTo != "" {
			ratio = fmt.Sprintf("%.2fx %s", r.Ratio, r.RatioTo)
		}
		fmt.Fprintf(w, "| %-34s | %7.2f %-4s | %-32s |\n", r.Path, r.Value, r.Unit, ratio)
	}
}
