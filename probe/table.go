package probe

import (
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/charmbracelet/lipgloss"
	"github.com/charmbracelet/lipgloss/table"
)

// Table renders a report as a table, one row per device of every node, then
// each node's host memory and NVML lines. It is box probe's output.
func Table(rep Report) string {
	opt := func(v uint64, ok bool) string {
		if !ok {
			return "-"
		}
		return HumanBytes(v)
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
			if d.Description != "" && d.Source == SourceNVML {
				name += " " + d.Description
			}
			if d.Backend != "" && d.Backend != d.Name {
				name += " (" + d.Backend + ")"
			}
			b, bok := d.Bound()
			o, ook := d.Others()
			rows = append(rows, []string{n.Name, name, HumanBytes(d.MemoryTotal), opt(b, bok), opt(o, ook),
				HumanBytes(d.MemoryFree), proto, status})
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
			fmt.Fprintf(&sb, "%s: RAM %s, %s available", n.Name, HumanBytes(h.MemTotal), HumanBytes(h.MemAvailable))
			if h.Cgroup != nil {
				fmt.Fprintf(&sb, "; cgroup %s limit %s, %s used", h.Cgroup.Path, HumanBytes(h.Cgroup.Limit), HumanBytes(h.Cgroup.Current))
			}
			sb.WriteString("\n")
		}
		var variants []string
		for _, b := range n.Backends {
			base := filepath.Base(b.Path)
			switch {
			case strings.HasPrefix(base, "libggml-cpu-") && b.Skipped != "":
				variants = append(variants, strings.TrimSuffix(strings.TrimPrefix(base, "libggml-cpu-"), ".so"))
			case b.Skipped != "":
				fmt.Fprintf(&sb, "%s: backend library %s skipped: %s\n", n.Name, b.Path, b.Skipped)
			case len(b.Devices) == 0:
				fmt.Fprintf(&sb, "%s: backend %s from %s: no devices\n", n.Name, b.Backend, b.Path)
			default:
				fmt.Fprintf(&sb, "%s: backend %s from %s: %s\n", n.Name, b.Backend, b.Path, strings.Join(b.Devices, ", "))
			}
		}
		if len(variants) > 0 {
			fmt.Fprintf(&sb, "%s: CPU variant libraries not loaded (the built-in CPU backend serves the CPU): %s\n", n.Name, strings.Join(variants, ", "))
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
					fmt.Fprintf(&sb, "    pid %d %s (%s): %s\n", p.PID, p.Name, who, HumanBytes(p.UsedMemory))
				}
			}
		}
	}
	return sb.String()
}

// Write prints rep to w as the table, or as indented JSON (SCHEMA.md).
func Write(w io.Writer, rep Report, asJSON bool) error {
	if !asJSON {
		_, err := fmt.Fprint(w, Table(rep))
		return err
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

// Err says how many nodes did not answer cleanly; nil when all did.
func (r Report) Err() error {
	var bad int
	for _, n := range r.Nodes {
		if !n.Reachable || n.Error != "" {
			bad++
		}
	}
	if bad > 0 {
		return fmt.Errorf("%d of %d nodes did not answer cleanly", bad, len(r.Nodes))
	}
	return nil
}
