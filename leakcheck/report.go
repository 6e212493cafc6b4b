package leakcheck

import (
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"
)

// SchemaVersion names the JSON layout documented in SCHEMA.md.
const SchemaVersion = "box-leakcheck/1"

// Report is the whole run; it is also the --json document (SCHEMA.md).
type Report struct {
	Schema                string            `json:"schema"`
	Started               time.Time         `json:"started"`
	Seconds               float64           `json:"seconds"`
	Model                 string            `json:"model"`
	LoadModel             string            `json:"load_model"`
	Modes                 []string          `json:"modes"`
	ModesSkipped          []string          `json:"modes_skipped"`
	Restarts              int               `json:"restarts"`
	Requests              int               `json:"requests"`
	ReleaseTimeoutSeconds float64           `json:"release_timeout_seconds"`
	ToleranceBytes        uint64            `json:"tolerance_bytes"`
	Workers               []WorkerRef       `json:"workers"`
	NVML                  string            `json:"nvml"`
	Metrics               []string          `json:"metrics"`
	Judged                []string          `json:"judged"`
	Baseline              map[string]uint64 `json:"baseline"`
	Cycles                []Cycle           `json:"cycles"`
	Trends                []Trend           `json:"trends"`
	Verdict               string            `json:"verdict"`
	Problems              []string          `json:"problems"`
	Notes                 []string          `json:"notes,omitempty"`
	Summary               string            `json:"summary"`
}

// WorkerRef is one worker checked.
type WorkerRef struct {
	Addr  string `json:"addr"`
	Admin string `json:"admin"`
	Local bool   `json:"local"`
	PID   int    `json:"pid,omitempty"`
}

// Cycle is one restart of the head.
type Cycle struct {
	Cycle              int               `json:"cycle"`
	Mode               string            `json:"mode"`
	LoadSeconds        float64           `json:"load_seconds"`
	KilledAtBoundBytes uint64            `json:"killed_at_bound_bytes,omitempty"`
	RequestsOK         int               `json:"requests_ok"`
	Baseline           map[string]uint64 `json:"baseline"`
	Peak               map[string]uint64 `json:"peak"`
	After              map[string]uint64 `json:"after"`
	Delta              map[string]int64  `json:"delta"`
	Released           bool              `json:"released"`
	ReleaseSeconds     float64           `json:"release_seconds"`
	LeakedBytes        uint64            `json:"leaked_bytes"`
	Leaks              []Leak            `json:"leaks"`
	ForeignBytes       uint64            `json:"foreign_bytes"`
	Foreign            []Leak            `json:"foreign"`
	Verdict            string            `json:"verdict"`
	Problems           []string          `json:"problems"`
	Notes              []string          `json:"notes"`
}

// Leak is a connection still holding bytes after the release timeout: one
// of this cycle's head (Cycle.Leaks), or one leakcheck did not open
// (Cycle.Foreign).
type Leak struct {
	Worker  string `json:"worker"`
	Conn    uint64 `json:"conn"`
	Peer    string `json:"peer"`
	State   string `json:"state"`
	Buffers int    `json:"buffers"`
	Bytes   uint64 `json:"bytes"`
}

// Trend is the least-squares fit of one metric's after-release values.
type Trend struct {
	Metric             string  `json:"metric"`
	Cycles             int     `json:"cycles"`
	SlopeBytesPerCycle float64 `json:"slope_bytes_per_cycle"`
	GrowthBytes        float64 `json:"growth_bytes"`
	Judged             bool    `json:"judged"`
	Creeping           bool    `json:"creeping"`
	// Computed is false with fewer than 3 cycles: slope and growth are
	// then 0 and mean nothing.
	Computed bool `json:"computed"`
}

// WriteTable writes the human-readable report.
// Err is the verdict as an error: nil on a pass, else the summary (which
// starts with LEAK, FOREIGN or FAIL).
func (rep *Report) Err() error {
	if rep.Verdict == VerdictPass {
		return nil
	}
	return errors.New(rep.Summary)
}

func (rep *Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	hasRSS := rep.Baseline != nil && hasKey(rep.Baseline, MetricRSS)
	hasGPU := rep.Baseline != nil && hasKey(rep.Baseline, MetricNVMLUsed)
	hdr := "cycle\tmode\tload\tpeak\tafter\tdelta\trelease"
	if hasRSS {
		hdr += "\trss after (delta)"
	}
	if hasGPU {
		hdr += "\tgpu used delta"
	}
	fmt.Fprintln(tw, hdr+"\tverdict")
	for _, c := range rep.Cycles {
		rel := "-"
		if c.After != nil {
			rel = fmt.Sprintf("%.2fs", c.ReleaseSeconds)
			if !c.Released {
				rel = fmt.Sprintf(">%.0fs", c.ReleaseSeconds)
			}
		}
		line := fmt.Sprintf("%d\t%s\t%.2fs\t%s\t%s\t%s\t%s", c.Cycle, c.Mode, c.LoadSeconds,
			fmtBytes(int64(c.Peak[MetricBound])), fmtBytes(int64(c.After[MetricBound])), signed(c.Delta[MetricBound]), rel)
		if hasRSS {
			line += fmt.Sprintf("\t%s (%s)", fmtBytes(int64(c.After[MetricRSS])), signed(c.Delta[MetricRSS]))
		}
		if hasGPU {
			line += "\t" + signed(c.Delta[MetricNVMLUsed])
		}
		fmt.Fprintln(tw, line+"\t"+c.Verdict)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, c := range rep.Cycles {
		for _, p := range c.Problems {
			fmt.Fprintf(w, "  cycle %d (%s): %s\n", c.Cycle, c.Mode, p)
		}
	}
	for _, t := range rep.Trends {
		if !t.Computed {
			fmt.Fprintf(w, "trend %s: not computed (%d cycles; it needs %d)\n", t.Metric, t.Cycles, minTrendCycles)
			continue
		}
		state := "flat"
		if t.Creeping {
			state = "CREEPING"
		}
		judged := ""
		if !t.Judged {
			judged = " (reported only)"
		}
		fmt.Fprintf(w, "trend %s: %s/cycle, %s over %d cycles: %s%s\n", t.Metric, signed(int64(t.SlopeBytesPerCycle)),
			signed(int64(t.GrowthBytes)), t.Cycles, state, judged)
	}
	for _, p := range rep.Problems {
		fmt.Fprintf(w, "problem: %s\n", p)
	}
	for _, n := range rep.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	fmt.Fprintf(w, "NVML: %s\n", rep.NVML)
	_, err := fmt.Fprintln(w, rep.Summary)
	return err
}

func hasKey(m map[string]uint64, k string) bool { _, ok := m[k]; return ok }

func signed(n int64) string {
	if n > 0 {
		return "+" + fmtBytes(n)
	}
	return fmtBytes(n)
}

// WriteFiles writes the JSON report to jsonPath and the JUnit XML to
// junitPath; an empty path writes nothing.
func (rep *Report) WriteFiles(jsonPath, junitPath string) error {
	for _, f := range []struct {
		path  string
		write func(io.Writer) error
	}{{jsonPath, rep.WriteJSON}, {junitPath, rep.WriteJUnit}} {
		if f.path == "" {
			continue
		}
		out, err := os.Create(f.path)
		if err == nil {
			err = f.write(out)
			if cerr := out.Close(); err == nil {
				err = cerr
			}
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// WriteJSON writes the report as documented in SCHEMA.md.
func (rep *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

// JUnit XML, in the shape JUnit consumers (Jenkins, GitLab, GitHub test
// reporters) read: testsuites > testsuite > testcase > failure.

// JUnitSuites is the document root.
type JUnitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Errors   int          `xml:"errors,attr"`
	Skipped  int          `xml:"skipped,attr"`
	Time     string       `xml:"time,attr"`
	Suites   []JUnitSuite `xml:"testsuite"`
}

// JUnitSuite is the run.
type JUnitSuite struct {
	Name       string          `xml:"name,attr"`
	Tests      int             `xml:"tests,attr"`
	Failures   int             `xml:"failures,attr"`
	Errors     int             `xml:"errors,attr"`
	Skipped    int             `xml:"skipped,attr"`
	Time       string          `xml:"time,attr"`
	Timestamp  string          `xml:"timestamp,attr"`
	Properties []JUnitProperty `xml:"properties>property"`
	Cases      []JUnitCase     `xml:"testcase"`
	SystemOut  string          `xml:"system-out,omitempty"`
}

// JUnitProperty is a name/value pair of the run's settings.
type JUnitProperty struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

// JUnitCase is one cycle, or the floor trend.
type JUnitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Time      string        `xml:"time,attr"`
	Failure   *JUnitFailure `xml:"failure,omitempty"`
	Skipped   *JUnitSkipped `xml:"skipped,omitempty"`
	SystemOut string        `xml:"system-out,omitempty"`
}

// JUnitSkipped marks a case that did not run: <skipped message="..."/>.
type JUnitSkipped struct {
	Message string `xml:"message,attr"`
}

// JUnitFailure names what leaked.
type JUnitFailure struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	Text    string `xml:",chardata"`
}

// JUnit builds the JUnit document: one testcase per cycle, and one for the
// floor trend across cycles.
func (rep *Report) JUnit() JUnitSuites {
	s := JUnitSuite{Name: "box leakcheck", Time: secs(rep.Seconds), Timestamp: rep.Started.Format("2006-01-02T15:04:05"),
		Properties: []JUnitProperty{
			{"model", rep.Model}, {"load_model", rep.LoadModel}, {"modes", strings.Join(rep.Modes, ",")},
			{"restarts", fmt.Sprint(rep.Restarts)}, {"tolerance_bytes", fmt.Sprint(rep.ToleranceBytes)},
			{"release_timeout_seconds", fmt.Sprint(rep.ReleaseTimeoutSeconds)}, {"nvml", rep.NVML},
		},
		SystemOut: rep.Summary}
	for _, c := range rep.Cycles {
		tc := JUnitCase{Name: fmt.Sprintf("cycle %02d %s", c.Cycle, c.Mode), Classname: "leakcheck." + c.Mode,
			Time: secs(c.LoadSeconds + c.ReleaseSeconds),
			SystemOut: fmt.Sprintf("load %.2fs, peak %d bytes bound, after %d bytes bound (delta %+d), released in %.2fs, verdict %s",
				c.LoadSeconds, c.Peak[MetricBound], c.After[MetricBound], c.Delta[MetricBound], c.ReleaseSeconds, c.Verdict)}
		if c.Verdict != VerdictPass {
			msg := c.Verdict
			if len(c.Problems) > 0 {
				msg = c.Problems[0]
			}
			tc.Failure = &JUnitFailure{Message: msg, Type: c.Verdict, Text: strings.Join(c.Problems, "\n")}
		}
		s.Cases = append(s.Cases, tc)
	}
	// Modes that no cycle was planned for (--restarts below the number of
	// modes) are skipped, not passed.
	for _, m := range rep.ModesSkipped {
		msg := fmt.Sprintf("not run: --restarts %d cycles through %d modes and never reaches %s", rep.Restarts, len(rep.Modes), m)
		s.Cases = append(s.Cases, JUnitCase{Name: "mode " + m, Classname: "leakcheck." + m, Time: "0",
			Skipped: &JUnitSkipped{Message: msg}})
	}
	// Cycles that never ran (the run stopped early) fail too.
	for n := len(rep.Cycles) + 1; n <= rep.Restarts; n++ {
		mode := rep.Modes[(n-1)%len(rep.Modes)]
		msg := "not run: " + strings.Join(rep.Problems, "; ")
		s.Cases = append(s.Cases, JUnitCase{Name: fmt.Sprintf("cycle %02d %s", n, mode), Classname: "leakcheck." + mode, Time: "0",
			Failure: &JUnitFailure{Message: msg, Type: VerdictFail, Text: msg}})
	}
	trend := JUnitCase{Name: "floor trend across cycles", Classname: "leakcheck.trend", Time: "0"}
	var lines []string
	computed := false
	for _, t := range rep.Trends {
		computed = computed || t.Computed
		if !t.Computed {
			lines = append(lines, fmt.Sprintf("%s: not computed (%d cycles; it needs %d)", t.Metric, t.Cycles, minTrendCycles))
			continue
		}
		lines = append(lines, fmt.Sprintf("%s: %+.0f bytes/cycle, %+.0f bytes over %d cycles, creeping=%v, judged=%v",
			t.Metric, t.SlopeBytesPerCycle, t.GrowthBytes, t.Cycles, t.Creeping, t.Judged))
		if t.Creeping && t.Judged && trend.Failure == nil {
			trend.Failure = &JUnitFailure{Message: fmt.Sprintf("%s floor creeps up %.0f bytes over %d cycles", t.Metric, t.GrowthBytes, t.Cycles), Type: VerdictLeak}
		}
	}
	trend.SystemOut = strings.Join(lines, "\n")
	if !computed {
		trend.Skipped = &JUnitSkipped{Message: fmt.Sprintf("not computed: %d cycles, a trend needs %d", len(rep.Cycles), minTrendCycles)}
	}
	if trend.Failure != nil {
		trend.Failure.Text = trend.SystemOut
	}
	s.Cases = append(s.Cases, trend)
	for _, c := range s.Cases {
		s.Tests++
		if c.Failure != nil {
			s.Failures++
		}
		if c.Skipped != nil {
			s.Skipped++
		}
	}
	return JUnitSuites{Name: "box leakcheck", Tests: s.Tests, Failures: s.Failures, Skipped: s.Skipped, Time: s.Time, Suites: []JUnitSuite{s}}
}

// WriteJUnit writes the JUnit XML document.
func (rep *Report) WriteJUnit(w io.Writer) error {
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(rep.JUnit()); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n")
	return err
}

func secs(s float64) string { return fmt.Sprintf("%.3f", s) }
