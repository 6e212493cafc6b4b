package leakcheck

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// leakyReport has a cycle that left bytes bound, one that failed, and a
// creeping RSS note: every part of the output is exercised.
func leakyReport() *Report {
	rep := syntheticReport(4, func(i int) uint64 { return 0 }, func(i int) uint64 { return uint64(40+3*i) * mib })
	c := &rep.Cycles[1]
	c.Leaks = []Leak{{Worker: "127.0.0.1:5000", Conn: 7, Peer: "127.0.0.1:40000", State: "closed", Buffers: 2, Bytes: 6682112}}
	c.LeakedBytes = 6682112
	c.After[MetricBound] = 6682112
	c.Released = false
	c.ReleaseSeconds = 2
	c.Problems = nil
	c.judge(rep.Baseline, rep.ToleranceBytes, rep.Judged)
	f := &rep.Cycles[2]
	f.Problems = []string{"head failed to start: exit status 1"}
	f.judge(rep.Baseline, rep.ToleranceBytes, rep.Judged)
	rep.Trends, rep.Problems, rep.Notes = []Trend{}, []string{}, nil
	rep.finish()
	return rep
}

// The JSON output decodes into the documented struct with no unknown
// field, and SCHEMA.md documents every field the struct has.
func TestJSONMatchesSchema(t *testing.T) {
	rep := leakyReport()
	var buf bytes.Buffer
	if err := rep.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var got Report
	dec := json.NewDecoder(bytes.NewReader(buf.Bytes()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&got); err != nil {
		t.Fatalf("decode: %v\n%s", err, buf.String())
	}
	if got.Schema != SchemaVersion || got.Verdict != VerdictLeak || len(got.Cycles) != 4 || got.Cycles[1].LeakedBytes != 6682112 {
		t.Fatalf("round trip: %+v", got)
	}
	if strings.Contains(buf.String(), "null") {
		t.Errorf("JSON has null where SCHEMA.md promises arrays or objects:\n%s", buf.String())
	}
	for _, k := range []string{`"schema"`, `"cycles"`, `"leaked_bytes"`, `"trends"`, `"slope_bytes_per_cycle"`, `"verdict"`} {
		if !strings.Contains(buf.String(), k) {
			t.Errorf("JSON lacks %s", k)
		}
	}
	schema, err := os.ReadFile("SCHEMA.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, typ := range []reflect.Type{reflect.TypeOf(Report{}), reflect.TypeOf(Cycle{}), reflect.TypeOf(WorkerRef{}),
		reflect.TypeOf(Leak{}), reflect.TypeOf(Trend{})} {
		for i := 0; i < typ.NumField(); i++ {
			name, _, _ := strings.Cut(typ.Field(i).Tag.Get("json"), ",")
			if !strings.Contains(string(schema), "`"+name+"`") {
				t.Errorf("SCHEMA.md does not document %s.%s (`%s`)", typ.Name(), typ.Field(i).Name, name)
			}
		}
	}
	for _, m := range metricOrder {
		if !strings.Contains(string(schema), "`"+m+"`") {
			t.Errorf("SCHEMA.md does not document metric %s", m)
		}
	}
	if !strings.Contains(string(schema), SchemaVersion) {
		t.Errorf("SCHEMA.md does not name %s", SchemaVersion)
	}
}

// A JUnit document as consumers read it, decoded independently of the
// writer's types.
type junitDoc struct {
	XMLName  xml.Name `xml:"testsuites"`
	Tests    string   `xml:"tests,attr"`
	Failures string   `xml:"failures,attr"`
	Time     string   `xml:"time,attr"`
	Suites   []struct {
		Name     string `xml:"name,attr"`
		Tests    string `xml:"tests,attr"`
		Failures string `xml:"failures,attr"`
		Errors   string `xml:"errors,attr"`
		Time     string `xml:"time,attr"`
		Cases    []struct {
			Name      string `xml:"name,attr"`
			Classname string `xml:"classname,attr"`
			Time      string `xml:"time,attr"`
			Failure   *struct {
				Message string `xml:"message,attr"`
				Type    string `xml:"type,attr"`
				Text    string `xml:",chardata"`
			} `xml:"failure"`
		} `xml:"testcase"`
	} `xml:"testsuite"`
}

// CheckJUnit decodes a JUnit document strictly and checks the attributes
// JUnit consumers require. It returns the failure messages.
func checkJUnit(t *testing.T, data []byte, wantCases int) []string {
	t.Helper()
	var doc junitDoc
	dec := xml.NewDecoder(bytes.NewReader(data))
	dec.Strict = true
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("JUnit does not decode: %v\n%s", err, data)
	}
	num := func(what, s string) float64 {
		t.Helper()
		v, err := strconv.ParseFloat(s, 64)
		if err != nil || v < 0 {
			t.Fatalf("%s = %q: want a non-negative number", what, s)
		}
		return v
	}
	if len(doc.Suites) != 1 {
		t.Fatalf("%d testsuites", len(doc.Suites))
	}
	s := doc.Suites[0]
	if s.Name == "" {
		t.Fatal("testsuite without a name")
	}
	tests, failures := num("testsuite tests", s.Tests), num("testsuite failures", s.Failures)
	num("testsuite errors", s.Errors)
	num("testsuite time", s.Time)
	num("testsuites time", doc.Time)
	if int(tests) != len(s.Cases) || int(tests) != wantCases || doc.Tests != s.Tests || doc.Failures != s.Failures {
		t.Fatalf("tests=%v (testsuites %s), %d testcases, want %d", tests, doc.Tests, len(s.Cases), wantCases)
	}
	var msgs []string
	for _, c := range s.Cases {
		if c.Name == "" || c.Classname == "" {
			t.Fatalf("testcase without name or classname: %+v", c)
		}
		num("testcase time", c.Time)
		if c.Failure != nil {
			if c.Failure.Message == "" || c.Failure.Type == "" {
				t.Fatalf("failure without message or type in %s", c.Name)
			}
			msgs = append(msgs, c.Name+": "+c.Failure.Message)
		}
	}
	if len(msgs) != int(failures) {
		t.Fatalf("failures=%v but %d failure elements", failures, len(msgs))
	}
	return msgs
}

func TestJUnit(t *testing.T) {
	rep := leakyReport()
	var buf bytes.Buffer
	if err := rep.WriteJUnit(&buf); err != nil {
		t.Fatal(err)
	}
	msgs := checkJUnit(t, buf.Bytes(), 4+1)
	if len(msgs) != 2 || !strings.Contains(msgs[0], "cycle 02 kill: 6682112 bytes (6.4 MiB) still bound on worker 127.0.0.1:5000, connection 7") ||
		!strings.Contains(msgs[1], "cycle 03 graceful: head failed to start") {
		t.Fatalf("failures %q\n%s", msgs, buf.String())
	}

	// xmllint, where installed, checks well-formedness independently.
	if xl, err := exec.LookPath("xmllint"); err == nil {
		p := filepath.Join(t.TempDir(), "junit.xml")
		os.WriteFile(p, buf.Bytes(), 0o644)
		if out, err := exec.Command(xl, "--noout", p).CombinedOutput(); err != nil {
			t.Fatalf("xmllint: %v\n%s", err, out)
		}
	}

	// A creeping floor fails the trend testcase; a run cut short fails the
	// cycles that never ran.
	creep := syntheticReport(6, func(i int) uint64 { return uint64(i) * 2 * mib }, nil)
	creep.Cycles = creep.Cycles[:5]
	creep.Problems = append(creep.Problems, "worker gone")
	buf.Reset()
	creep.WriteJUnit(&buf)
	msgs = checkJUnit(t, buf.Bytes(), 6+1)
	if len(msgs) != 2 || !strings.Contains(msgs[0], "cycle 06 kill: not run") || !strings.Contains(msgs[1], "floor trend across cycles: bound_bytes floor creeps up") {
		t.Fatalf("failures %q", msgs)
	}
}

func TestTable(t *testing.T) {
	var buf bytes.Buffer
	leakyReport().WriteTable(&buf)
	out := buf.String()
	for _, want := range []string{"cycle  mode", "rss after", "cycle 2 (kill): 6682112 bytes (6.4 MiB) still bound", "LEAK: 1 of 4 cycles left memory bound; 2 passed, 1 leaked, 0 foreign, 1 failed;"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

func TestParseModes(t *testing.T) {
	m, err := ParseModes("graceful, vanish")
	if err != nil || len(m) != 2 || m[1] != Vanish {
		t.Fatal(m, err)
	}
	for _, bad := range []string{"", "graceful,explode", ","} {
		if _, err := ParseModes(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// Modes that --restarts never reaches are <skipped/> in JUnit and listed in
// JSON's modes_skipped; a trend that was not computed is skipped too.
func TestModesSkipped(t *testing.T) {
	rep := syntheticReport(2, func(int) uint64 { return 0 }, nil)
	rep.Modes = []string{"graceful", "kill", "kill-during-load", "vanish"}
	rep.Trends, rep.Problems, rep.Notes = []Trend{}, []string{}, nil
	rep.finish()
	if fmt.Sprint(rep.ModesSkipped) != "[kill-during-load vanish]" || rep.Verdict != VerdictPass {
		t.Fatalf("skipped %v, verdict %s", rep.ModesSkipped, rep.Verdict)
	}
	if !strings.Contains(rep.Summary, "modes not run: kill-during-load,vanish") {
		t.Errorf("summary %q", rep.Summary)
	}
	var buf bytes.Buffer
	if err := rep.WriteJUnit(&buf); err != nil {
		t.Fatal(err)
	}
	var doc JUnitSuites
	if err := xml.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	var skipped []string
	for _, c := range doc.Suites[0].Cases {
		if c.Skipped != nil {
			skipped = append(skipped, c.Name+": "+c.Skipped.Message)
		}
		if c.Skipped != nil && c.Failure != nil {
			t.Errorf("%s both skipped and failed", c.Name)
		}
	}
	want := []string{
		"mode kill-during-load: not run: --restarts 2 cycles through 4 modes and never reaches kill-during-load",
		"mode vanish: not run: --restarts 2 cycles through 4 modes and never reaches vanish",
		"floor trend across cycles: not computed: 2 cycles, a trend needs 3",
	}
	if !reflect.DeepEqual(skipped, want) || doc.Skipped != 3 || doc.Suites[0].Skipped != 3 || doc.Failures != 0 {
		t.Errorf("skipped %q (%d, %d), failures %d", skipped, doc.Skipped, doc.Suites[0].Skipped, doc.Failures)
	}
	if !strings.Contains(buf.String(), `<skipped message="not run: --restarts 2 cycles through 4 modes and never reaches vanish"></skipped>`) {
		t.Errorf("no <skipped/> element:\n%s", buf.String())
	}
}
