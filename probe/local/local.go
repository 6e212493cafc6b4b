// Package local probes this host: ggml's devices and the backend libraries
// this process loaded, host memory and the cgroup limit, and NVIDIA GPUs
// through NVML. It is the cgo half of probe (ggml and go-nvml are cgo): the
// report types, remote probing and the table stay in the pure-Go package
// probe, so boxtop, box probe's client side and leakcheck build without
// cgo. cmd/box wires it in: box probe with no targets, GET /v1/probe of a
// worker's admin API and of a head, the worker's driver-memory view, and the
// NVML readers of boxtop and leakcheck.
package local

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"time"

	"github.com/boxproj/box/ggml"
	"github.com/boxproj/box/hostmem"
	"github.com/boxproj/box/probe"
)

// Report probes this host: ggml's devices, host memory and NVML. It never
// fails: what cannot be read is described in the node's fields. A worker or
// head serves it as is (GET /v1/probe).
func Report(ctx context.Context) probe.Report {
	return probe.Report{Schema: probe.SchemaVersion, Time: time.Now().UTC(), Nodes: []probe.Node{Node(ctx)}}
}

// Handler serves Report as JSON: GET /v1/probe of the worker admin API.
func Handler(rw http.ResponseWriter, r *http.Request) {
	rw.Header().Set("Content-Type", "application/json")
	json.NewEncoder(rw).Encode(Report(r.Context()))
}

// Node is this host as one node of a Report.
func Node(ctx context.Context) probe.Node {
	n := probe.Node{Name: "local", Kind: probe.KindLocal, Reachable: true, Status: "ok"}
	if h, err := os.Hostname(); err == nil {
		n.Address = h
	}
	h, err := hostmem.Read("/")
	if err == nil {
		n.Host = &h
	} else {
		n.Error = "host memory: " + err.Error()
	}
	for _, d := range ggml.Devices() {
		total, free := d.Total, d.Free
		if d.Type == "cpu" && n.Host != nil {
			total, free = hostmem.CPU(total, free, h)
		}
		used := total - min(free, total)
		n.Devices = append(n.Devices, probe.Device{Index: d.Index, Name: d.Name, Description: d.Description, Type: d.Type,
			Backend: d.Backend, Source: probe.SourceGGML, MemoryTotal: total, MemoryFree: free, UsedByOthers: &used})
	}
	for _, l := range ggml.Loaded() {
		n.Backends = append(n.Backends, probe.BackendLib{Path: l.Path, Backend: l.Backend, Devices: l.Devices, Skipped: l.Skipped})
	}
	nv := NVMLOf(nil)
	n.NVML = &nv
	n.Devices = append(n.Devices, nv.Devices()...)
	return n
}
