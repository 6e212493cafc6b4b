package leakcheck

import (
	"fmt"
	"sync"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

// nvmlProbe reads GPU memory through NVML when libnvidia-ml is present.
// Without it every reading is absent and reason says why; that is not an
// error (CPU workers have no GPU memory to watch).
type nvmlProbe struct {
	mu      sync.Mutex
	devices []nvml.Device
	names   []string
	reason  string // why NVML is not used; empty when it is
	open    bool
}

func openNVML() (p *nvmlProbe) {
	p = &nvmlProbe{}
	defer func() {
		// go-nvml loads the library with dlopen; be safe against a broken one.
		if e := recover(); e != nil {
			p = &nvmlProbe{reason: fmt.Sprintf("NVML failed: %v", e)}
		}
	}()
	if ret := nvml.Init(); ret != nvml.SUCCESS {
		p.reason = "not available (" + nvml.ErrorString(ret) + "): no NVIDIA driver on this host"
		if ret == nvml.ERROR_LIBRARY_NOT_FOUND {
			p.reason = "not available: libnvidia-ml.so.1 not found (no NVIDIA driver on this host)"
		}
		return p
	}
	p.open = true
	n, ret := nvml.DeviceGetCount()
	if ret != nvml.SUCCESS || n == 0 {
		p.reason = "no GPUs"
		return p
	}
	for i := 0; i < n; i++ {
		d, ret := nvml.DeviceGetHandleByIndex(i)
		if ret != nvml.SUCCESS {
			continue
		}
		name, _ := d.GetName()
		p.devices = append(p.devices, d)
		p.names = append(p.names, name)
	}
	if len(p.devices) == 0 {
		p.reason = "no GPUs readable"
	}
	return p
}

func (p *nvmlProbe) available() bool { return p != nil && len(p.devices) > 0 }

func (p *nvmlProbe) describe() string {
	if p.available() {
		return fmt.Sprintf("%d GPU(s): %v", len(p.devices), p.names)
	}
	return p.reason
}

func (p *nvmlProbe) close() {
	if p != nil && p.open {
		nvml.Shutdown()
		p.open = false
	}
}

// read returns the memory used on every GPU and the memory used by the
// given processes (the local workers).
func (p *nvmlProbe) read(pids map[int]bool) (used, byPids uint64, ok bool) {
	if !p.available() {
		return 0, 0, false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, d := range p.devices {
		m, ret := d.GetMemoryInfo()
		if ret != nvml.SUCCESS {
			return 0, 0, false
		}
		used += m.Used
		procs, ret := d.GetComputeRunningProcesses()
		if ret == nvml.SUCCESS {
			for _, pr := range procs {
				if pids[int(pr.Pid)] {
					byPids += pr.UsedGpuMemory
				}
			}
		}
	}
	return used, byPids, true
}
