package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/charmbracelet/lipgloss"
	"github.com/charmbracelet/lipgloss/table"

	"github.com/boxproj/box/probe"
)

// runProbe is `box probe`: every device of every node, with the memory box
// holds, the memory others use and what is free.
func runProbe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("box probe", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		rpcs    = fs.String("rpc", "", "ggml RPC endpoints host:port,... (box workers or llama.cpp rpc-server), probed through the protocol")
		admins  = fs.String("admin", "", "box worker admin URLs, comma-separated (http://host:port; bare host:port works)")
		asJSON  = fs.Bool("json", false, "print the report as JSON (schema: probe/SCHEMA.md)")
		timeout = fs.Duration("timeout", 5*time.Second, "how long each node may take to answer")
	)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: box probe [--rpc host:port,...] [--admin URL,...] [--json] [--timeout 5s]\n\n"+
			"Reports every device of every node: total, used by box, used by others, free.\n"+
			"With no --rpc or --admin it reports this host (ggml devices, RAM, cgroup, NVML).\n"+
			"Exits 0 when every node answered, 1 otherwise.")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *timeout <= 0 {
		fmt.Fprintln(stderr, "box probe: --timeout must be positive")
		return errUsage
	}
	t := probe.Targets{Admin: splitList(*admins), RPC: splitList(*rpcs)}
	var rep probe.Report
	if len(t.Admin)+len(t.RPC) == 0 {
		rep = probe.Local(ctx)
	} else {
		rep = probe.Remote(ctx, t, *timeout)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		fmt.Fprint(stdout, probeTable(rep))
	}
	var bad int
	for _, n := range rep.Nodes {
		if !n.Reachable || n.Error != "" {
			bad++
		}
	}
	if bad > 0 {
		return fmt.Errorf("%d of %d nodes did not answer cleanly", bad, len(rep.Nodes))
	}
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// probeTable renders a report as a table plus the local node's host and
// NVML lines.
func probeTable(rep probe.Report) string {
	opt := func(v uint64, ok bool) string {
		if !ok {
			return "-"
		}
		return probe.HumanBytes(v)
	}
	var rows [][]string
	for _, n := range rep.Nodes {
		proto := n.Protocol
		if n.Version != "" {
			proto += " (box " + n.Version + ")"
		}
		if proto == "" {
			proto = "-"
		}
		status := n.Status
		if n.Error != "" {
			status += ": " + n.Error
		}
		if len(n.Devices) == 0 {
			rows = append(rows, []string{n.Name, "-", "-", "-", "-", "-", proto, status})
			continue
		}
		for _, d := range n.Devices {
			name := d.Name
			if d.Description != "" && d.Source == probe.SourceNVML {
				name += " " + d.Description
			}
			b, bok := d.Bound()
			o, ook := d.Others()
			rows = append(rows, []string{n.Name, name, probe.HumanBytes(d.MemoryTotal), opt(b, bok), opt(o, ook),
				probe.HumanBytes(d.MemoryFree), proto, status})
		}
	}
	right := map[int]bool{2: true, 3: true, 4: true, 5: true}
	tb := table.New().Border(lipgloss.NormalBorder()).
		Headers("NODE", "DEVICE", "TOTAL", "BOX", "OTHERS", "FREE", "PROTOCOL", "STATUS").
		Rows(rows...).
		StyleFunc(func(row, col int) lipgloss.Style {
			s := lipgloss.NewStyle().Padding(0, 1)
			if right[col] {
				s = s.Align(lipgloss.Right)
			}
			if row == table.HeaderRow {
				s = s.Bold(true)
			}
			return s
		})
	var sb strings.Builder
	sb.WriteString(tb.String())
	sb.WriteString("\n")
	for _, n := range rep.Nodes {
		if n.Host != nil {
			h := n.Host
			fmt.Fprintf(&sb, "%s: RAM %s, %s available", n.Name, probe.HumanBytes(h.MemTotal), probe.HumanBytes(h.MemAvailable))
			if h.Cgroup != nil {
				fmt.Fprintf(&sb, "; cgroup %s limit %s, %s used", h.Cgroup.Path, probe.HumanBytes(h.Cgroup.Limit), probe.HumanBytes(h.Cgroup.Current))
			}
			sb.WriteString("\n")
		}
		if n.NVML != nil {
			fmt.Fprintf(&sb, "%s: %s\n", n.Name, n.NVML.Status)
			for _, g := range n.NVML.GPUs {
				fmt.Fprintf(&sb, "  GPU%d %s %s: %d%% busy, %d°C, %.0f W\n", g.Index, g.Name, g.UUID, g.UtilizationGPU, g.TemperatureC, float64(g.PowerMW)/1000)
				for _, p := range g.Processes {
					who := "other"
					if p.Box {
						who = "box"
					}
					fmt.Fprintf(&sb, "    pid %d %s (%s): %s\n", p.PID, p.Name, who, probe.HumanBytes(p.UsedMemory))
				}
			}
		}
	}
	return sb.String()
}
