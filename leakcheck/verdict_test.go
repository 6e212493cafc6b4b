package leakcheck

import (
	"bytes"
	"strings"
	"testing"
)

const mib = 1 << 20

func TestFloorTrend(t *testing.T) {
	tol := float64(16 * mib)
	ramp := func(n int, step float64) []float64 {
		s := make([]float64, n)
		for i := range s {
			s[i] = float64(i+1) * step
		}
		return s
	}
	cases := []struct {
		name   string
		after  []float64
		creeps bool
	}{
		{"flat at zero", make([]float64, 10), false},
		{"flat above zero", []float64{5 * mib, 5 * mib, 5 * mib, 5 * mib, 5 * mib}, false},
		// The slow leak: 1 MiB per cycle, so after 10 cycles the floor is
		// 10 MiB, below the 16 MiB tolerance in every single cycle.
		{"slow leak, 1 MiB per cycle over 10", ramp(10, mib), true},
		{"slower leak, 0.5 MiB per cycle over 20", ramp(20, mib/2), true},
		// Too slow to matter within the run: 0.2 MiB per cycle over 10 is
		// 2 MiB in all, a quarter of the half tolerance.
		{"negligible drift", ramp(10, 0.2*mib), false},
		// A warm-up step (the first load grows a cache once) is not a
		// trend: the slope over all cycles stays small.
		{"warm-up step", []float64{0, 6 * mib, 6 * mib, 6 * mib, 6 * mib, 6 * mib, 6 * mib, 6 * mib, 6 * mib, 6 * mib}, false},
		// Noise around a flat floor.
		{"noise", []float64{3 * mib, 0, 2 * mib, 1 * mib, 3 * mib, 0, 2 * mib, 1 * mib, 3 * mib, 0}, false},
		// A leak that only shows in the last cycles still moves the fit.
		{"late leak", []float64{0, 0, 0, 0, 0, 0, 3 * mib, 6 * mib, 9 * mib, 12 * mib}, true},
		// Two points cannot tell a trend from a step.
		{"two cycles", []float64{0, 10 * mib}, false},
		{"one cycle", []float64{10 * mib}, false},
		{"none", nil, false},
	}
	for _, c := range cases {
		slope, growth, creeps := FloorTrend(c.after, tol)
		if creeps != c.creeps {
			t.Errorf("%s: creeping=%v, want %v (slope %.0f B/cycle, growth %.0f B)", c.name, creeps, c.creeps, slope, growth)
		}
		for i, y := range c.after {
			if c.creeps && y > tol {
				t.Fatalf("%s: cycle %d is %.0f, above the tolerance: the case would not test the trend", c.name, i+1, y)
			}
		}
	}
	if slope, growth, _ := FloorTrend(ramp(10, mib), tol); slope != mib || growth != 10*mib {
		t.Errorf("ramp: slope %.0f growth %.0f, want %d and %d", slope, growth, mib, 10*mib)
	}
}

// A run whose every cycle passes but whose floor creeps is a leak.
func TestCreepingFloorFailsTheRun(t *testing.T) {
	// 2 MiB per cycle: 12 MiB after 6 cycles, below the 16 MiB tolerance.
	rep := syntheticReport(6, func(i int) uint64 { return uint64(i) * 2 * mib }, nil)
	if rep.Verdict != VerdictLeak {
		t.Fatalf("verdict %s, want leak; %s", rep.Verdict, rep.Summary)
	}
	for _, c := range rep.Cycles {
		if c.Verdict != VerdictPass {
			t.Fatalf("cycle %d: %s (%v): each cycle is within the tolerance", c.Cycle, c.Verdict, c.Problems)
		}
	}
	if len(rep.Problems) == 0 || !strings.Contains(rep.Problems[0], "bound_bytes floor creeps up") {
		t.Fatalf("problems %q", rep.Problems)
	}
	if !strings.HasPrefix(rep.Summary, "LEAK: each cycle is within the tolerance, but the bound floor creeps up over 6 cycles;") ||
		!strings.Contains(rep.Summary, "bound floor creeps 2.0 MiB/cycle") {
		t.Fatalf("summary %q", rep.Summary)
	}

	flat := syntheticReport(6, func(int) uint64 { return 0 }, nil)
	if flat.Verdict != VerdictPass {
		t.Fatalf("flat: %s", flat.Summary)
	}
}

// RSS creeping is reported but decides nothing unless asked.
func TestRSSReportedOnly(t *testing.T) {
	rep := syntheticReport(6, func(int) uint64 { return 0 }, func(i int) uint64 { return uint64(40+3*i) * mib })
	if rep.Verdict != VerdictPass {
		t.Fatalf("verdict %s: %v", rep.Verdict, rep.Problems)
	}
	if len(rep.Notes) == 0 || !strings.Contains(rep.Notes[0], "rss_bytes floor creeps up") {
		t.Fatalf("notes %q", rep.Notes)
	}
}

func TestCycleVerdicts(t *testing.T) {
	first := map[string]uint64{MetricBound: 0}
	c := Cycle{Cycle: 2, Mode: "kill", After: map[string]uint64{MetricBound: 5 * mib}, ReleaseSeconds: 2,
		Leaks: []Leak{{Worker: "127.0.0.1:5000", Conn: 4, State: "closed", Buffers: 3, Bytes: 5 * mib}}}
	c.judge(first, 16*mib, judgedMetrics(false))
	if c.Verdict != VerdictLeak || !strings.Contains(c.Problems[0], "5242880 bytes (5.0 MiB) still bound on worker 127.0.0.1:5000, connection 4 (closed, 3 buffers)") {
		t.Fatalf("%s %q", c.Verdict, c.Problems)
	}

	c = Cycle{After: map[string]uint64{MetricBound: 20 * mib}}
	c.judge(first, 16*mib, judgedMetrics(false))
	if c.Verdict != VerdictLeak || !strings.Contains(c.Problems[0], "bound_bytes is 20971520 bytes (20.0 MiB) above the first baseline") {
		t.Fatalf("%s %q", c.Verdict, c.Problems)
	}

	c = Cycle{Problems: []string{"head failed to start: exit status 1"}}
	c.judge(first, 16*mib, judgedMetrics(false))
	if c.Verdict != VerdictFail {
		t.Fatalf("%s", c.Verdict)
	}

	c = Cycle{After: map[string]uint64{MetricBound: 0, MetricRSS: 100 * mib}}
	c.judge(map[string]uint64{MetricBound: 0, MetricRSS: 40 * mib}, 16*mib, judgedMetrics(false))
	if c.Verdict != VerdictPass || len(c.Notes) != 1 {
		t.Fatalf("rss not judged: %s %q %q", c.Verdict, c.Problems, c.Notes)
	}
	c = Cycle{After: map[string]uint64{MetricBound: 0, MetricRSS: 100 * mib}}
	c.judge(map[string]uint64{MetricBound: 0, MetricRSS: 40 * mib}, 16*mib, judgedMetrics(true))
	if c.Verdict != VerdictLeak {
		t.Fatalf("rss judged: %s", c.Verdict)
	}
}

func TestFmtBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 5 * mib: "5.0 MiB", -3 * mib / 2: "-1.5 MiB", 1 << 40: "1.0 TiB"} {
		if got := fmtBytes(n); got != want {
			t.Errorf("fmtBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

// syntheticReport builds a finished report whose cycles end with the given
// bound bytes (and RSS, when rss is not nil) after release.
func syntheticReport(n int, bound, rss func(i int) uint64) *Report {
	rep := &Report{Schema: SchemaVersion, Model: "m.gguf", LoadModel: "m.gguf", Modes: []string{"graceful", "kill"}, Restarts: n,
		Requests: 2, ReleaseTimeoutSeconds: 30, ToleranceBytes: 16 * mib, NVML: "not available", Judged: judgedMetrics(false),
		Workers: []WorkerRef{{Addr: "127.0.0.1:5000", Admin: "http://127.0.0.1:5001", Local: true, PID: 42}},
		Cycles:  []Cycle{}, Trends: []Trend{}, Problems: []string{}}
	rep.Metrics = []string{MetricBound}
	if rss != nil {
		rep.Metrics = append(rep.Metrics, MetricRSS)
	}
	var first map[string]uint64
	for i := 1; i <= n; i++ {
		m := map[string]uint64{MetricBound: 0}
		after := map[string]uint64{MetricBound: bound(i)}
		if rss != nil {
			m[MetricRSS], after[MetricRSS] = rss(0), rss(i)
		}
		if first == nil {
			first = m
			rep.Baseline = m
		}
		c := Cycle{Cycle: i, Mode: rep.Modes[(i-1)%2], LoadSeconds: 0.1, RequestsOK: 2, Baseline: m,
			Peak: map[string]uint64{MetricBound: 6 * mib}, After: after, Released: true, ReleaseSeconds: 0.05,
			Leaks: []Leak{}, Problems: []string{}, Notes: []string{}}
		c.judge(first, rep.ToleranceBytes, rep.Judged)
		rep.Cycles = append(rep.Cycles, c)
	}
	rep.finish()
	return rep
}

// A client leakcheck did not open holding memory after every release, just
// under the tolerance: the cycles are foreign, not passed, the connection is
// named, and the step it makes in the floor is not called a creep.
func TestForeignHolder(t *testing.T) {
	holder := Leak{Worker: "127.0.0.1:5000", Conn: 3, Peer: "10.0.0.9:41000", State: "serving", Buffers: 1, Bytes: 16462643}
	rep := syntheticReport(6, func(i int) uint64 {
		if i < 3 {
			return 0
		}
		return holder.Bytes // the client came in the middle of the run
	}, nil)
	for i := range rep.Cycles {
		c := &rep.Cycles[i]
		if c.Cycle >= 3 {
			c.Foreign, c.ForeignBytes = []Leak{holder}, holder.Bytes
		}
		c.Problems, c.Notes = nil, nil
		c.judge(rep.Baseline, rep.ToleranceBytes, rep.Judged)
	}
	rep.Trends, rep.Problems, rep.Notes = []Trend{}, []string{}, nil
	rep.finish()
	if rep.Verdict != VerdictForeign {
		t.Fatalf("verdict %s: %s", rep.Verdict, rep.Summary)
	}
	for _, c := range rep.Cycles {
		want := VerdictPass
		if c.Cycle >= 3 {
			want = VerdictForeign
		}
		if c.Verdict != want {
			t.Errorf("cycle %d: %s, want %s", c.Cycle, c.Verdict, want)
		}
	}
	c := rep.Cycles[3]
	if len(c.Problems) != 1 || c.Problems[0] != "16462643 bytes (15.7 MiB) held on worker 127.0.0.1:5000 by connection 3 (peer 10.0.0.9:41000, serving, 1 buffers), which leakcheck did not open" {
		t.Errorf("problems %q", c.Problems)
	}
	if want := "FOREIGN: in 4 of 6 cycles memory stays held by connections leakcheck did not open: 127.0.0.1:5000 conn 3 (10.0.0.9:41000) holds 15.7 MiB; 2 passed, 0 leaked, 4 foreign, 0 failed;"; !strings.HasPrefix(rep.Summary, want) {
		t.Errorf("summary %q\nwant prefix %q", rep.Summary, want)
	}
	if strings.Contains(rep.Summary, "creep") || len(rep.Problems) != 0 {
		t.Errorf("the step is called a creep: %q %q", rep.Summary, rep.Problems)
	}
}

// Fewer than three cycles: the trend is not computed, and says so.
func TestTrendNotComputed(t *testing.T) {
	for _, tc := range []struct {
		cycles   int
		computed bool
		summary  string
	}{
		{1, false, "bound floor trend not computed (1 cycles)"},
		{2, false, "bound floor trend not computed (2 cycles)"},
		{3, true, "bound floor trend 0 B/cycle"},
	} {
		rep := syntheticReport(tc.cycles, func(int) uint64 { return 0 }, nil)
		if rep.Trends[0].Computed != tc.computed || !strings.Contains(rep.Summary, tc.summary) {
			t.Errorf("%d cycles: computed %v, summary %q", tc.cycles, rep.Trends[0].Computed, rep.Summary)
		}
		var buf bytes.Buffer
		rep.WriteTable(&buf)
		if got := strings.Contains(buf.String(), "trend bound_bytes: not computed"); got == tc.computed {
			t.Errorf("%d cycles: table says not computed = %v:\n%s", tc.cycles, got, buf.String())
		}
	}
}
