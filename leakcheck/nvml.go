package leakcheck

import (
	"fmt"

	"github.com/boxproj/box/probe"
)

// gpus reads this host's GPUs through Options.NVML (box's one NVML wrapper,
// probe/local, injected by cmd/box, so this package needs no cgo). Without a
// reader, or without a driver, every reading is absent and reason says why;
// that is not an error (CPU workers have no GPU memory to watch).
type gpus struct {
	nvml   func() *probe.NVML // nil when NVML is not used
	names  []string
	reason string // why NVML is not used; empty when it is
}

// newGPUs asks nvml once and keeps it when it lists GPUs.
func newGPUs(nvml func() *probe.NVML) *gpus {
	if nvml == nil {
		return &gpus{reason: "not asked (no NVML reader)"}
	}
	nv := nvml()
	switch {
	case nv == nil:
		return &gpus{reason: "not available"}
	case !nv.Available:
		return &gpus{reason: nv.Status}
	case len(nv.GPUs) == 0:
		return &gpus{reason: "no GPUs"}
	}
	g := &gpus{nvml: nvml}
	for _, d := range nv.GPUs {
		g.names = append(g.names, d.Name)
	}
	return g
}

func (g *gpus) available() bool { return g != nil && g.nvml != nil }

func (g *gpus) describe() string {
	if g.available() {
		return fmt.Sprintf("%d GPU(s): %v", len(g.names), g.names)
	}
	return g.reason
}

// read returns the memory used on every GPU and the memory used by the
// given processes (the local workers).
func (g *gpus) read(pids map[int]bool) (used, byPids uint64, ok bool) {
	if !g.available() {
		return 0, 0, false
	}
	nv := g.nvml()
	if nv == nil || !nv.Available || len(nv.GPUs) == 0 {
		return 0, 0, false
	}
	for _, d := range nv.GPUs {
		used += d.MemoryUsed
		for _, p := range d.Processes {
			if pids[int(p.PID)] {
				byPids += p.UsedMemory
			}
		}
	}
	return used, byPids, true
}
