package leakcheck

import (
	"os"
	"testing"
)

// NVML is read where a driver is present; elsewhere the probe says why and
// every reading is absent (not an error).
func TestNVMLProbe(t *testing.T) {
	p := openNVML()
	defer p.close()
	t.Logf("NVML: %s", p.describe())
	used, byPids, ok := p.read(map[int]bool{os.Getpid(): true})
	if !p.available() {
		if ok || p.describe() == "" {
			t.Fatalf("unavailable NVML read ok=%v, reason %q", ok, p.describe())
		}
		t.Logf("no GPU here; the unavailable path was checked: %s", p.describe())
		return
	}
	if !ok || used == 0 {
		t.Fatalf("NVML available but read used=%d ok=%v", used, ok)
	}
	// This process uses no GPU memory.
	if byPids != 0 {
		t.Fatalf("GPU memory attributed to this process: %d", byPids)
	}
	t.Logf("GPU memory used: %d bytes over %d GPU(s)", used, len(p.devices))
}
