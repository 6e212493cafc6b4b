package tui

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/boxproj/box/worker/workertest"
	"github.com/charmbracelet/lipgloss"
	"github.com/muesli/termenv"
)

func TestMain(m *testing.M) {
	// Plain text frames: goldens carry no escape codes.
	lipgloss.SetColorProfile(termenv.Ascii)
	workertest.Main(m) // the test binary is also the workers' compute process
}

// t0 is the fixed clock of every test.
var t0 = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

func fixedNow() time.Time { return t0 }

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

const gib = 1 << 30

// normalise makes a snapshot independent of the host, ports and timing:
// every device is 16 GiB with 2 GiB used by others, peers get fixed
// addresses by connection id, times are fixed relative to t0, and history
// keeps only changes (how many polls saw each value varies).
func normalise(s *Snapshot) {
	for i := range s.Nodes {
		n := &s.Nodes[i]
		for j := range n.Info.Devices {
			d := &n.Info.Devices[j]
			d.Description = "test CPU"
			d.MemoryTotal = 16 * gib
			d.MemoryFree = 14*gib - d.BoundBytes
		}
		n.Info.Started = t0.Add(-time.Hour)
		for j := range n.Conns {
			c := &n.Conns[j]
			c.Peer = fmt.Sprintf("10.0.0.9:%d", 40000+c.ID)
			c.Since = t0.Add(-time.Duration(90+c.ID) * time.Second)
			c.LastActivity = t0.Add(-2 * time.Second)
			// The compute process and the counters vary from run to run.
			if c.PID != 0 {
				c.PID = 4000 + int(c.ID)
			}
			c.Commands, c.BytesIn, c.BytesOut, c.DriverBytes, c.Command = 0, 0, 0, 0, ""
			for k := range c.Buffers {
				c.Buffers[k].Created = t0.Add(-time.Duration(60-c.Buffers[k].ID) * time.Second)
			}
		}
		for id := range n.Activity {
			n.Activity[id] = Activity{} // rates depend on the polls' timing
		}
		for j, h := range n.History {
			var out []uint64
			for _, v := range h {
				if len(out) == 0 || out[len(out)-1] != v {
					out = append(out, v)
				}
			}
			n.History[j] = out
		}
		if n.State == StateDown && strings.Contains(n.Error, "connection") {
			n.Error = "connection refused" // refused or reset, depending on timing
		}
	}
	if s.HeadStats != nil {
		s.HeadStats.Since = t0
	}
	for i := range s.Nodes {
		if !s.Nodes[i].DownSince.IsZero() {
			s.Nodes[i].DownSince = t0
		}
	}
	for i := range s.Alerts {
		a := &s.Alerts[i]
		if a.Active {
			a.Time = t0
		}
		a.Text = loopbackPort.ReplaceAllString(a.Text, "127.0.0.1:port")
		if !a.Active {
			a.Time = t0.Add(-5 * time.Second)
		}
		if !a.End.IsZero() {
			a.End = t0
		}
	}
}

// loopbackPort is a test peer's address in event texts (its port varies).
var loopbackPort = regexp.MustCompile(`127\.0\.0\.1:\d+`)

// alertsOf is the snapshot's alerts without the routine events.
func alertsOf(s Snapshot) []Alert {
	var out []Alert
	for _, a := range s.Alerts {
		if !a.Info {
			out = append(out, a)
		}
	}
	return out
}

func testPoller(nodes ...Target) *Poller {
	return NewPoller(Config{Nodes: nodes, Timeout: time.Second, Now: fixedNow, Transform: normalise})
}

func testOptions() Options {
	// Footer messages stay for the test's length, so frames do not depend on
	// its speed (TestModelStatusClears covers their end).
	return Options{Interval: 30 * time.Millisecond, Now: fixedNow, Location: time.UTC, StatusTTL: time.Hour}
}
