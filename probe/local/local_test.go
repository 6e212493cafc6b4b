package local

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"

	"github.com/boxproj/box/probe"
)

func TestNVMLAbsent(t *testing.T) {
	nv := NVMLOf(nvml.New(nvml.WithLibraryPath(filepath.Join(t.TempDir(), "libnvidia-ml.so.1"))))
	want := probe.NVML{Status: "NVML not available: libnvidia-ml.so not found"}
	if !reflect.DeepEqual(nv, want) {
		t.Fatalf("got %+v, want %+v", nv, want)
	}
	if len(nv.Devices()) != 0 || len(nv.NonBox()) != 0 {
		t.Fatal("devices from absent NVML")
	}
	failing := &mock.Interface{
		InitFunc:        func() nvml.Return { return nvml.ERROR_DRIVER_NOT_LOADED },
		ErrorStringFunc: func(r nvml.Return) string { return "driver not loaded" },
	}
	if nv := NVMLOf(failing); nv.Available || nv.Status != "NVML not available: NVIDIA driver not loaded" {
		t.Fatalf("failing init: %+v", nv)
	}
	unknown := &mock.Interface{
		InitFunc:        func() nvml.Return { return nvml.ERROR_UNKNOWN },
		ErrorStringFunc: func(r nvml.Return) string { return "Unknown Error" },
	}
	if nv := NVMLOf(unknown); nv.Available || nv.Status != "NVML not available: Unknown Error" {
		t.Fatalf("unknown init error: %+v", nv)
	}
}

func TestNVMLPresent(t *testing.T) {
	// Process names come from a fake /proc.
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "4242"), 0o755)
	os.WriteFile(filepath.Join(dir, "4242", "comm"), []byte("python3\n"), 0o644)
	os.MkdirAll(filepath.Join(dir, "77"), 0o755)
	os.WriteFile(filepath.Join(dir, "77", "comm"), []byte("box\n"), 0o644)
	old := procDir
	procDir = dir
	defer func() { procDir = old }()

	self := uint32(os.Getpid())
	gpu := func(i int, procs []nvml.ProcessInfo) *mock.Device {
		return &mock.Device{
			GetNameFunc: func() (string, nvml.Return) { return "NVIDIA H100 80GB HBM3", nvml.SUCCESS },
			GetUUIDFunc: func() (string, nvml.Return) { return "GPU-0000000" + string(rune('0'+i)), nvml.SUCCESS },
			GetMemoryInfoFunc: func() (nvml.Memory, nvml.Return) {
				return nvml.Memory{Total: 80 << 30, Used: 12 << 30, Free: 68 << 30}, nvml.SUCCESS
			},
			GetUtilizationRatesFunc: func() (nvml.Utilization, nvml.Return) { return nvml.Utilization{Gpu: 37, Memory: 12}, nvml.SUCCESS },
			GetTemperatureFunc:      func(nvml.TemperatureSensors) (uint32, nvml.Return) { return 51, nvml.SUCCESS },
			GetPowerUsageFunc:       func() (uint32, nvml.Return) { return 212000, nvml.SUCCESS },
			GetComputeRunningProcessesFunc: func() ([]nvml.ProcessInfo, nvml.Return) {
				return procs, nvml.SUCCESS
			},
			GetGraphicsRunningProcessesFunc: func() ([]nvml.ProcessInfo, nvml.Return) { return nil, nvml.ERROR_NOT_SUPPORTED },
		}
	}
	devs := []*mock.Device{
		gpu(0, []nvml.ProcessInfo{{Pid: self, UsedGpuMemory: 8 << 30}, {Pid: 4242, UsedGpuMemory: 3 << 30}, {Pid: 9999, UsedGpuMemory: 1 << 30}}),
		gpu(1, []nvml.ProcessInfo{{Pid: 77, UsedGpuMemory: 2 << 30}}),
	}
	shut := 0
	lib := &mock.Interface{
		InitFunc:                   func() nvml.Return { return nvml.SUCCESS },
		ShutdownFunc:               func() nvml.Return { shut++; return nvml.SUCCESS },
		SystemGetDriverVersionFunc: func() (string, nvml.Return) { return "550.54.15", nvml.SUCCESS },
		DeviceGetCountFunc:         func() (int, nvml.Return) { return len(devs), nvml.SUCCESS },
		DeviceGetHandleByIndexFunc: func(i int) (nvml.Device, nvml.Return) { return devs[i], nvml.SUCCESS },
	}
	nv := NVMLOf(lib)
	if !nv.Available || nv.DriverVersion != "550.54.15" || len(nv.GPUs) != 2 || shut != 1 {
		t.Fatalf("nvml: %+v (shutdown %d)", nv, shut)
	}
	g := nv.GPUs[0]
	if g.Name != "NVIDIA H100 80GB HBM3" || g.UUID != "GPU-00000000" || g.MemoryTotal != 80<<30 || g.MemoryUsed != 12<<30 ||
		g.UtilizationGPU != 37 || g.UtilizationMemory != 12 || g.TemperatureC != 51 || g.PowerMW != 212000 {
		t.Fatalf("gpu 0: %+v", g)
	}
	wantProcs := []probe.Process{{PID: self, Name: comm(self), UsedMemory: 8 << 30, Box: true},
		{PID: 4242, Name: "python3", UsedMemory: 3 << 30}, {PID: 9999, Name: "?", UsedMemory: 1 << 30}}
	if !reflect.DeepEqual(g.Processes, wantProcs) {
		t.Fatalf("processes %+v, want %+v", g.Processes, wantProcs)
	}
	if p := nv.GPUs[1].Processes; len(p) != 1 || !p[0].Box || p[0].Name != "box" {
		t.Fatalf("a process named box is box: %+v", p)
	}
	nb := nv.NonBox()
	if len(nb) != 2 || nb[0].GPU != 0 || nb[0].Name != "python3" || nb[1].PID != 9999 {
		t.Fatalf("non-box: %+v", nb)
	}
	rows := nv.Devices()
	if len(rows) != 2 || rows[0].Source != probe.SourceNVML || rows[0].Name != "GPU0" {
		t.Fatalf("rows %+v", rows)
	}
	if b, _ := rows[0].Bound(); b != 8<<30 {
		t.Fatalf("gpu0 box bytes %d", b)
	}
	if o, _ := rows[0].Others(); o != 4<<30 {
		t.Fatalf("gpu0 others %d", o)
	}
}

func TestLocal(t *testing.T) {
	rep := Report(context.Background())
	if rep.Schema != probe.SchemaVersion || len(rep.Nodes) != 1 {
		t.Fatalf("%+v", rep)
	}
	n := rep.Nodes[0]
	if n.Kind != probe.KindLocal || !n.Reachable || n.Host == nil || n.NVML == nil || n.NVML.Status == "" {
		t.Fatalf("local node: %+v", n)
	}
	i := slices.IndexFunc(n.Devices, func(d probe.Device) bool { return d.Source == probe.SourceGGML && d.Type == "cpu" })
	if i < 0 {
		t.Fatalf("no ggml CPU device: %+v", n.Devices)
	}
	d := n.Devices[i]
	if d.MemoryTotal == 0 || d.BoundBytes != nil || d.UsedByOthers == nil || *d.UsedByOthers != d.MemoryTotal-d.MemoryFree {
		t.Fatalf("cpu device: %+v", d)
	}
	if !n.NVML.Available && len(n.NVML.GPUs) != 0 {
		t.Fatal("GPUs without NVML")
	}
}
