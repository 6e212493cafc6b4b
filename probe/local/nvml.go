package local

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/NVIDIA/go-nvml/pkg/nvml"

	"github.com/boxproj/box/probe"
)

// procDir is where process names are read from (/proc/PID/comm).
var procDir = "/proc"

// NVML asks the system's NVML (libnvidia-ml.so.1, loaded at run time) about
// every NVIDIA GPU: the reader boxtop (tui.Config.NVML) and leakcheck
// (leakcheck.Options.NVML) are given.
func NVML() *probe.NVML { nv := NVMLOf(nil); return &nv }

// NVMLOf asks NVML about every NVIDIA GPU; it is box's one NVML wrapper. lib
// nil means the system library. A missing library or a failing NVML is a
// normal state: Available is false and Status says why. NVML is initialised
// and shut down within the call.
func NVMLOf(lib nvml.Interface) (out probe.NVML) {
	if lib == nil {
		lib = nvml.New()
	}
	defer func() {
		// A half-working driver can make the bindings panic; that is still
		// only "no NVML" for a probe.
		if r := recover(); r != nil {
			out = probe.NVML{Status: fmt.Sprintf("NVML not available: %v", r)}
		}
	}()
	switch ret := lib.Init(); ret {
	case nvml.SUCCESS:
	case nvml.ERROR_LIBRARY_NOT_FOUND:
		return probe.NVML{Status: "NVML not available: libnvidia-ml.so not found"}
	case nvml.ERROR_DRIVER_NOT_LOADED:
		return probe.NVML{Status: "NVML not available: NVIDIA driver not loaded"}
	case nvml.ERROR_NO_PERMISSION:
		return probe.NVML{Status: "NVML not available: no permission"}
	default:
		return probe.NVML{Status: "NVML not available: " + retString(lib, ret)}
	}
	defer lib.Shutdown()
	out = probe.NVML{Available: true}
	if v, ret := lib.SystemGetDriverVersion(); ret == nvml.SUCCESS {
		out.DriverVersion = v
	}
	count, ret := lib.DeviceGetCount()
	if ret != nvml.SUCCESS {
		return probe.NVML{Status: "NVML not available: device count: " + retString(lib, ret)}
	}
	self := os.Getpid()
	for i := 0; i < count; i++ {
		dev, ret := lib.DeviceGetHandleByIndex(i)
		if ret != nvml.SUCCESS {
			continue
		}
		g := probe.GPU{Index: i, Processes: []probe.Process{}}
		g.Name, _ = dev.GetName()
		g.UUID, _ = dev.GetUUID()
		if m, ret := dev.GetMemoryInfo(); ret == nvml.SUCCESS {
			g.MemoryTotal, g.MemoryUsed, g.MemoryFree = m.Total, m.Used, m.Free
		}
		if u, ret := dev.GetUtilizationRates(); ret == nvml.SUCCESS {
			g.UtilizationGPU, g.UtilizationMemory = u.Gpu, u.Memory
		}
		if t, ret := dev.GetTemperature(nvml.TEMPERATURE_GPU); ret == nvml.SUCCESS {
			g.TemperatureC = t
		}
		if p, ret := dev.GetPowerUsage(); ret == nvml.SUCCESS {
			g.PowerMW = p
		}
		seen := map[uint32]int{}
		add := func(ps []nvml.ProcessInfo) {
			for _, p := range ps {
				if j, ok := seen[p.Pid]; ok {
					// A process with compute and graphics contexts is listed
					// twice with the same memory.
					if p.UsedGpuMemory > g.Processes[j].UsedMemory {
						g.Processes[j].UsedMemory = p.UsedGpuMemory
					}
					continue
				}
				name := comm(p.Pid)
				seen[p.Pid] = len(g.Processes)
				g.Processes = append(g.Processes, probe.Process{PID: p.Pid, Name: name, UsedMemory: p.UsedGpuMemory,
					Box: int(p.Pid) == self || name == "box" || name == "boxtop"})
			}
		}
		if ps, ret := dev.GetComputeRunningProcesses(); ret == nvml.SUCCESS {
			add(ps)
		}
		if ps, ret := dev.GetGraphicsRunningProcesses(); ret == nvml.SUCCESS {
			add(ps)
		}
		out.GPUs = append(out.GPUs, g)
	}
	out.Status = fmt.Sprintf("NVML %d GPU(s), driver %s", len(out.GPUs), out.DriverVersion)
	return out
}

func retString(lib nvml.Interface, r nvml.Return) string {
	s := lib.ErrorString(r)
	if s == "" {
		s = "error " + strconv.Itoa(int(r))
	}
	return s
}

// comm is a process's name from /proc/PID/comm, or "?" when unreadable (a
// process in another PID namespace, or gone).
func comm(pid uint32) string {
	b, err := os.ReadFile(fmt.Sprintf("%s/%d/comm", procDir, pid))
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(b))
}

// ProcessGPUMemory maps each process NVML lists on any GPU to the device
// memory it holds there (summed over GPUs). Without NVML it returns an
// error, and callers treat the driver's view as unknown.
func ProcessGPUMemory() (map[int]uint64, error) {
	nv := NVMLOf(nil)
	if !nv.Available {
		return nil, fmt.Errorf("%s", nv.Status)
	}
	out := map[int]uint64{}
	for _, g := range nv.GPUs {
		for _, p := range g.Processes {
			out[int(p.PID)] += p.UsedMemory
		}
	}
	return out, nil
}
