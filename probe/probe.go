// Package probe reports what a node knows about its memory: remote nodes
// through a box worker's admin API or through the ggml RPC protocol itself
// (HELLO, DEVICE_COUNT, GET_DEVICE_MEMORY), so that even llama.cpp's
// rpc-server can be probed, and the report types, with the table. It is
// pure Go: this host's own view (ggml devices, host RAM and the cgroup
// limit, NVIDIA GPUs through NVML) is made by the cgo package in probe/local, in
// these types.
//
// # JSON schema (version 1)
//
// A Report serialises to JSON with these field names. They are stable: fields
// may be added, never renamed or removed, and SchemaVersion only changes if
// that promise has to be broken. probe/SCHEMA.md describes the same schema
// with examples.
//
//	Report  {schema, time, nodes: [Node]}
//	Node    {name, kind ("local" | "admin" | "rpc"), address, reachable,
//	         status, error, version, protocol, connections, bound_bytes,
//	         devices: [Device], conns: [Conn], host: Host, nvml: NVML,
//	         backends: [{path, backend, devices, skipped}]}
//	Device  {index, name, description, type, backend, source ("ggml" | "admin" | "rpc"
//	         | "nvml"), memory_total, memory_free, bound_bytes,
//	         used_by_others, max_memory}
//	Conn    {id, peer, state, since, last_activity, bytes, buffers}
//	Host    {mem_total, mem_available, cgroup: {path, limit, current}}
//	NVML    {available, status, driver_version, gpus: [GPU]}
//	GPU     {index, name, uuid, memory_total, memory_used, memory_free,
//	         utilization_gpu, utilization_memory, temperature_c, power_mw,
//	         processes: [Process]}
//	Process {pid, name, used_memory, box}
//
// All sizes are bytes. A Device's bound_bytes (memory bound to box
// connections) and used_by_others are absent when the source cannot know
// them: a bare RPC endpoint reports only free and total.
package probe

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/boxproj/box/api"
	"github.com/boxproj/box/hostmem"
)

// SchemaVersion is the version of the JSON schema a Report serialises to.
const SchemaVersion = 1

// Report is what `box probe` prints: every node asked, in the order asked.
type Report struct {
	Schema int       `json:"schema"`
	Time   time.Time `json:"time"`
	Nodes  []Node    `json:"nodes"`
}

// Node kinds.
const (
	KindLocal = "local" // this host: ggml devices, host memory, NVML
	KindAdmin = "admin" // a box worker's admin API (/v1/node, /v1/connections)
	KindRPC   = "rpc"   // a ggml RPC endpoint (box worker or llama.cpp rpc-server)
)

// Node is one node's view of its memory.
type Node struct {
	// Name is what the node is called in tables: "local", the admin URL or
	// the RPC address.
	Name string `json:"name"`
	Kind string `json:"kind"`
	// Address is the admin URL or RPC host:port (empty for local).
	Address string `json:"address,omitempty"`
	// Reachable is true when the node answered. A node that answered with a
	// protocol box cannot use is reachable, with Error set.
	Reachable bool `json:"reachable"`
	// Status says in words how the probe went ("ok", "unreachable", ...).
	Status string `json:"status"`
	Error  string `json:"error,omitempty"`
	// Version is box's version (admin API); Protocol is the ggml RPC
	// protocol version the node speaks ("3.6.0").
	Version  string `json:"version,omitempty"`
	Protocol string `json:"protocol,omitempty"`
	// Connections and BoundBytes are the worker's totals (admin API only).
	Connections int      `json:"connections,omitempty"`
	BoundBytes  uint64   `json:"bound_bytes,omitempty"`
	Devices     []Device `json:"devices"`
	Conns       []Conn   `json:"conns,omitempty"`
	Host        *Host    `json:"host,omitempty"`
	NVML        *NVML    `json:"nvml,omitempty"`
	// Backends are the ggml backend libraries this process found (local
	// only): what each loaded, or why it was skipped. The CPU backend is
	// built in and not listed.
	Backends []BackendLib `json:"backends,omitempty"`
}

// BackendLib is one ggml backend library (lib/box/libggml-NAME.so).
type BackendLib struct {
	Path    string   `json:"path"`
	Backend string   `json:"backend,omitempty"`
	Devices []string `json:"devices,omitempty"`
	Skipped string   `json:"skipped,omitempty"`
}

// Device sources.
const (
	SourceGGML  = "ggml"
	SourceAdmin = "admin"
	SourceRPC   = "rpc"
	SourceNVML  = "nvml"
)

// Device is one memory pool of a node.
type Device struct {
	Index       int    `json:"index"`
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	Type        string `json:"type,omitempty"` // cpu, gpu, igpu, accel
	// Backend is the ggml backend the device belongs to (CPU, Vulkan,
	// CUDA); only for source "ggml".
	Backend     string `json:"backend,omitempty"`
	Source      string `json:"source"`
	MemoryTotal uint64 `json:"memory_total"`
	MemoryFree  uint64 `json:"memory_free"`
	// BoundBytes is memory held by box: buffers bound to worker connections
	// (admin), or used by processes named box (nvml). Nil when unknown.
	BoundBytes *uint64 `json:"bound_bytes,omitempty"`
	// UsedByOthers is total - free - bound. Nil when unknown.
	UsedByOthers *uint64 `json:"used_by_others,omitempty"`
	// MaxMemory is the worker's --max-memory quota (0: none).
	MaxMemory uint64 `json:"max_memory,omitempty"`
}

// Bound returns BoundBytes, or 0 and false when unknown.
func (d Device) Bound() (uint64, bool) {
	if d.BoundBytes == nil {
		return 0, false
	}
	return *d.BoundBytes, true
}

// Others returns UsedByOthers, or 0 and false when unknown.
func (d Device) Others() (uint64, bool) {
	if d.UsedByOthers == nil {
		return 0, false
	}
	return *d.UsedByOthers, true
}

// Conn is a connection of a box worker with the memory bound to it.
type Conn struct {
	ID           uint64    `json:"id"`
	Peer         string    `json:"peer"`
	State        string    `json:"state"` // handshake, serving, closed
	Since        time.Time `json:"since"`
	LastActivity time.Time `json:"last_activity"`
	Bytes        uint64    `json:"bytes"`
	Buffers      int       `json:"buffers"`
}

// Host is the machine's memory (see package hostmem).
type Host = hostmem.Host

// Cgroup is a cgroup v2 memory limit and usage.
type Cgroup = hostmem.Cgroup

// NVML is what the NVIDIA management library reports. Available false is a
// normal state (no driver, no GPU) described by Status.
type NVML struct {
	Available     bool   `json:"available"`
	Status        string `json:"status"`
	DriverVersion string `json:"driver_version,omitempty"`
	GPUs          []GPU  `json:"gpus,omitempty"`
}

// GPU is one NVIDIA device. Readings NVML does not support on a device are 0.
type GPU struct {
	Index             int       `json:"index"`
	Name              string    `json:"name"`
	UUID              string    `json:"uuid"`
	MemoryTotal       uint64    `json:"memory_total"`
	MemoryUsed        uint64    `json:"memory_used"`
	MemoryFree        uint64    `json:"memory_free"`
	UtilizationGPU    uint32    `json:"utilization_gpu"`    // percent
	UtilizationMemory uint32    `json:"utilization_memory"` // percent
	TemperatureC      uint32    `json:"temperature_c"`
	PowerMW           uint32    `json:"power_mw"`
	Processes         []Process `json:"processes"`
}

// Process is a process holding GPU memory.
type Process struct {
	PID        uint32 `json:"pid"`
	Name       string `json:"name"` // /proc/PID/comm, "?" when unreadable
	UsedMemory uint64 `json:"used_memory"`
	Box        bool   `json:"box"` // a box process (this one, or one named box)
}

// BoxBytes is the memory NVML reports for box processes on this GPU.
func (g GPU) BoxBytes() uint64 {
	var n uint64
	for _, p := range g.Processes {
		if p.Box {
			n += p.UsedMemory
		}
	}
	return n
}

// CPUMemory narrows ggml's figures for a CPU device to what the host says
// (see hostmem.CPU).
func CPUMemory(total, free uint64, h Host) (uint64, uint64) { return hostmem.CPU(total, free, h) }

// HostMemory reads the host's memory under root (see hostmem.Read).
func HostMemory(root string) (Host, error) { return hostmem.Read(root) }

// Devices returns the GPUs as Device rows (source "nvml"), with the memory
// of box processes as bound and the rest of the used memory as others.
func (nv NVML) Devices() []Device {
	var out []Device
	for _, g := range nv.GPUs {
		box := g.BoxBytes()
		others := sub(g.MemoryUsed, box)
		out = append(out, Device{Index: g.Index, Name: fmt.Sprintf("GPU%d", g.Index), Description: g.Name, Type: "gpu",
			Source: SourceNVML, MemoryTotal: g.MemoryTotal, MemoryFree: g.MemoryFree, BoundBytes: &box, UsedByOthers: &others})
	}
	return out
}

// GPUProcess is a process on one GPU.
type GPUProcess struct {
	GPU int
	Process
}

// NonBox lists the processes that are not box and hold GPU memory.
func (nv NVML) NonBox() []GPUProcess {
	var out []GPUProcess
	for _, g := range nv.GPUs {
		for _, p := range g.Processes {
			if !p.Box && p.UsedMemory > 0 {
				out = append(out, GPUProcess{g.Index, p})
			}
		}
	}
	return out
}

// Targets are the remote nodes to probe. Either kind may be given as
// name=address (boxtop's syntax), which names the node in the report.
type Targets struct {
	Admin []string // admin API base URLs (http://host:port)
	RPC   []string // ggml RPC endpoints (host:port)
	Token string   // the workers' admin token
}

// splitName reads "name=address"; a plain address has no name.
func splitName(s string) (name, addr string) {
	if n, a, ok := strings.Cut(s, "="); ok && n != "" && !strings.ContainsAny(n, ":/") {
		return n, a
	}
	return "", s
}

// named sets n's name when the target gave one.
func named(name string, n Node) Node {
	if name != "" {
		n.Name = name
	}
	return n
}

// Remote probes every target at once, each within timeout, and returns them
// in order: admin URLs first, then RPC endpoints.
func Remote(ctx context.Context, t Targets, timeout time.Duration) Report {
	nodes := make([]Node, len(t.Admin)+len(t.RPC))
	var wg sync.WaitGroup
	for i, u := range t.Admin {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			name, u := splitName(u)
			nodes[i] = named(name, Admin(c, api.Client{Token: t.Token}, u))
		}()
	}
	for i, a := range t.RPC {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			name, a := splitName(a)
			nodes[len(t.Admin)+i] = named(name, RPC(c, a))
		}()
	}
	wg.Wait()
	return Report{Schema: SchemaVersion, Time: time.Now().UTC(), Nodes: nodes}
}

// AllReachable reports whether every node answered without error.
func (r Report) AllReachable() bool { return r.Err() == nil }

func sub(a, b uint64) uint64 {
	if a < b {
		return 0
	}
	return a - b
}

// HumanBytes formats n in binary units (api.HumanBytes).
func HumanBytes(n uint64) string { return api.HumanBytes(n) }
