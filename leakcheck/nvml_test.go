package leakcheck

import (
	"testing"

	"github.com/boxproj/box/probe"
)

// GPU memory comes from the injected NVML reader; without one, or without a
// driver, the reason is said and every reading is absent (not an error).
func TestGPUs(t *testing.T) {
	two := &probe.NVML{Available: true, Status: "NVML 2 GPU(s)", GPUs: []probe.GPU{
		{Index: 0, Name: "H100", MemoryUsed: 10 << 30, Processes: []probe.Process{{PID: 7, UsedMemory: 3 << 30}, {PID: 8, UsedMemory: 1 << 30}}},
		{Index: 1, Name: "H100", MemoryUsed: 2 << 30, Processes: []probe.Process{{PID: 7, UsedMemory: 1 << 30}}},
	}}
	gone := false
	for _, c := range []struct {
		name         string
		nvml         func() *probe.NVML
		describe     string
		used, byPids uint64
		ok           bool
	}{
		{"no reader", nil, "not asked (no NVML reader)", 0, 0, false},
		{"no driver", func() *probe.NVML {
			return &probe.NVML{Status: "NVML not available: libnvidia-ml.so not found"}
		}, "NVML not available: libnvidia-ml.so not found", 0, 0, false},
		{"no GPUs", func() *probe.NVML { return &probe.NVML{Available: true} }, "no GPUs", 0, 0, false},
		{"two GPUs", func() *probe.NVML { return two }, "2 GPU(s): [H100 H100]", 12 << 30, 4 << 30, true},
		{"driver gone after the first read", func() *probe.NVML {
			if gone {
				return &probe.NVML{Status: "NVML not available: NVIDIA driver not loaded"}
			}
			gone = true
			return two
		}, "2 GPU(s): [H100 H100]", 0, 0, false},
	} {
		g := newGPUs(c.nvml)
		used, byPids, ok := g.read(map[int]bool{7: true})
		if g.describe() != c.describe || used != c.used || byPids != c.byPids || ok != c.ok {
			t.Errorf("%s: %q %d %d %v, want %q %d %d %v", c.name, g.describe(), used, byPids, ok, c.describe, c.used, c.byPids, c.ok)
		}
	}
}
