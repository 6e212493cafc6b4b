package worker

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// The admin API's JSON shapes. Field names are part of box's stable
// interface (docs/worker.md); add fields, never rename them.

// NodeInfo is GET /v1/node.
type NodeInfo struct {
	Version     string       `json:"version"`
	Protocol    string       `json:"protocol"`
	Started     time.Time    `json:"started"`
	Connections int          `json:"connections"`
	BoundBytes  uint64       `json:"bound_bytes"`
	Devices     []DeviceInfo `json:"devices"`
	Fault       string       `json:"fault,omitempty"`
}

// DeviceInfo is one exposed device.
type DeviceInfo struct {
	Index       int    `json:"index"`
	Name        string `json:"name"`
	Description string `json:"description"`
	Type        string `json:"type"`
	MemoryTotal uint64 `json:"memory_total"`
	MemoryFree  uint64 `json:"memory_free"`
	BoundBytes  uint64 `json:"bound_bytes"`
	MaxMemory   uint64 `json:"max_memory,omitempty"`
}

// ConnInfo is one connection in GET /v1/connections.
type ConnInfo struct {
	ID           uint64       `json:"id"`
	Peer         string       `json:"peer"`
	Since        time.Time    `json:"since"`
	LastActivity time.Time    `json:"last_activity"`
	State        string       `json:"state"` // handshake, serving, closed
	Bytes        uint64       `json:"bytes"`
	Buffers      []BufferInfo `json:"buffers"`
	// PID is the compute process serving the connection (0 before one is
	// needed: a connection that only asked for device facts has none).
	PID int `json:"pid,omitempty"`
	// DriverBytes is what the GPU driver (NVML) reports that process holds,
	// when NVML knows it.
	DriverBytes uint64 `json:"driver_bytes,omitempty"`
	// Activity counters: commands served and payload bytes in and out.
	Commands uint64 `json:"commands"`
	BytesIn  uint64 `json:"bytes_in"`
	BytesOut uint64 `json:"bytes_out"`
	// Command is the command running now (empty when waiting for one).
	Command string `json:"command,omitempty"`
}

// BufferInfo is one buffer binding.
type BufferInfo struct {
	ID         uint64    `json:"id"`
	Device     string    `json:"device"`
	Size       uint64    `json:"size"`
	Created    time.Time `json:"created"`
	AgeSeconds float64   `json:"age_seconds"`
}

// Node reports the worker's devices and totals.
func (w *Worker) Node(version string) NodeInfo {
	w.mu.Lock()
	n := NodeInfo{Version: version, Protocol: protoString(), Started: w.started.UTC(), Connections: len(w.conns), Fault: w.cfg.Fault}
	bound := append([]uint64(nil), w.devBytes...)
	w.mu.Unlock()
	for i, b := range w.backends {
		free, total := w.memory(i)
		n.Devices = append(n.Devices, DeviceInfo{Index: i, Name: b.Device.Name, Description: b.Device.Description, Type: b.Device.Type,
			MemoryTotal: total, MemoryFree: free, BoundBytes: bound[i], MaxMemory: w.cfg.MaxMemory})
		n.BoundBytes += bound[i]
	}
	return n
}

// Connections lists every connection with its buffers, oldest first.
func (w *Worker) Connections() []ConnInfo {
	w.mu.Lock()
	conns := make([]*conn, 0, len(w.conns))
	for _, c := range w.conns {
		conns = append(conns, c)
	}
	w.mu.Unlock()
	sort.Slice(conns, func(i, j int) bool { return conns[i].id < conns[j].id })
	now := time.Now()
	out := make([]ConnInfo, 0, len(conns))
	for _, c := range conns {
		c.mu.Lock()
		ci := ConnInfo{ID: c.id, Peer: c.peer, Since: c.since.UTC(), LastActivity: time.Unix(0, c.lastActive.Load()).UTC(),
			State: c.state, Bytes: c.bytes.Load(), Buffers: []BufferInfo{}}
		for _, b := range c.buffers {
			ci.Buffers = append(ci.Buffers, BufferInfo{ID: b.handle, Device: w.backends[b.dev].Device.Name, Size: b.size,
				Created: b.created.UTC(), AgeSeconds: now.Sub(b.created).Seconds()})
		}
		c.mu.Unlock()
		sort.Slice(ci.Buffers, func(i, j int) bool { return ci.Buffers[i].ID < ci.Buffers[j].ID })
		out = append(out, ci)
	}
	return out
}

// CloseConn closes a connection as an operator; its buffers are freed as for
// any other end. It reports whether the connection existed.
func (w *Worker) CloseConn(id uint64) bool {
	w.mu.Lock()
	c := w.conns[id]
	w.mu.Unlock()
	if c == nil {
		return false
	}
	c.mu.Lock()
	closed := c.state == "closed"
	c.mu.Unlock()
	if closed {
		// Only a leaked connection (fault injection) lingers when closed:
		// an operator close releases what it kept.
		c.freeAll()
		w.removeConn(c)
		w.events.add(Event{Kind: "closed-by-operator", Conn: id, Peer: c.peer})
		return true
	}
	w.events.add(Event{Kind: "closed-by-operator", Conn: id, Peer: c.peer})
	w.log.Info("connection closed by operator", "conn", id, "peer", c.peer)
	c.close("operator")
	return true
}

// AdminHandler serves the admin API.
func (w *Worker) AdminHandler(version string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/node", func(rw http.ResponseWriter, r *http.Request) { writeJSON(rw, 200, w.Node(version)) })
	mux.HandleFunc("GET /v1/connections", func(rw http.ResponseWriter, r *http.Request) {
		writeJSON(rw, 200, map[string]any{"connections": w.Connections()})
	})
	mux.HandleFunc("POST /v1/connections/{id}/close", func(rw http.ResponseWriter, r *http.Request) {
		id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
		if err != nil {
			writeJSON(rw, 400, map[string]string{"error": "connection id must be a number"})
			return
		}
		if !w.CloseConn(id) {
			writeJSON(rw, 404, map[string]string{"error": fmt.Sprintf("no connection %d", id)})
			return
		}
		// Wait briefly so the answer reflects the freed memory.
		deadline := time.Now().Add(2 * time.Second)
		for time.Now().Before(deadline) {
			w.mu.Lock()
			_, still := w.conns[id]
			w.mu.Unlock()
			if !still {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		writeJSON(rw, 200, map[string]any{"closed": id})
	})
	mux.HandleFunc("GET /v1/events", func(rw http.ResponseWriter, r *http.Request) {
		after, _ := strconv.ParseUint(r.URL.Query().Get("after"), 10, 64)
		if r.URL.Query().Get("follow") == "" {
			writeJSON(rw, 200, map[string]any{"events": w.events.since(after)})
			return
		}
		// Streaming form: server-sent events, one JSON event each.
		ch, cancel := w.events.subscribe()
		defer cancel()
		rw.Header().Set("Content-Type", "text/event-stream")
		rw.Header().Set("Cache-Control", "no-cache")
		rw.WriteHeader(200)
		fl, _ := rw.(http.Flusher)
		send := func(e Event) bool {
			b, _ := json.Marshal(e)
			if _, err := fmt.Fprintf(rw, "data: %s\n\n", b); err != nil {
				return false
			}
			if fl != nil {
				fl.Flush()
			}
			return true
		}
		for _, e := range w.events.since(after) {
			if !send(e) {
				return
			}
		}
		for {
			select {
			case e := <-ch:
				if e.Seq > after && !send(e) {
					return
				}
			case <-r.Context().Done():
				return
			}
		}
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(w.met.reg, promhttp.HandlerOpts{}))
	return mux
}

func writeJSON(rw http.ResponseWriter, code int, v any) {
	rw.Header().Set("Content-Type", "application/json")
	rw.WriteHeader(code)
	enc := json.NewEncoder(rw)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}
