package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/boxproj/box/api"
	"github.com/boxproj/box/buildinfo"
	"github.com/boxproj/box/rpc"
)

// The admin API's JSON shapes live in package api (api/SCHEMA.md).
type (
	NodeInfo   = api.NodeInfo
	DeviceInfo = api.DeviceInfo
	ConnInfo   = api.ConnInfo
	BufferInfo = api.BufferInfo
)

// Node reports the worker's devices and totals.
func (w *Worker) Node(version string) NodeInfo {
	w.mu.Lock()
	legacy, current := w.protocols()
	n := NodeInfo{Version: version, Protocol: legacy.String(), Protocols: []string{legacy.String(), current.String()},
		GGML: buildinfo.LlamaCpp, OpCount: rpc.EmbeddedOps.Count(), Started: w.started.UTC(), Connections: len(w.conns)}
	bound := append([]uint64(nil), w.devBytes...)
	w.mu.Unlock()
	for i, d := range w.devs {
		free, total := w.memory(i)
		n.Devices = append(n.Devices, DeviceInfo{Index: i, Name: d.Name, Description: d.Description, Type: d.Type,
			MemoryTotal: total, MemoryFree: free, BoundBytes: bound[i], MaxMemory: w.cfg.MaxMemory})
		n.BoundBytes += bound[i]
	}
	return n
}

// Connections lists every connection with its buffers, oldest first.
func (w *Worker) Connections() []ConnInfo {
	conns := w.connList()
	var driver map[int]uint64
	if w.cfg.DriverMemory != nil {
		driver, _ = w.cfg.DriverMemory()
	}
	now := time.Now()
	out := make([]ConnInfo, 0, len(conns))
	for _, c := range conns {
		a, hasProc := c.activity()
		c.mu.Lock()
		ci := ConnInfo{ID: c.id, Peer: c.peer, Since: c.since.UTC(), LastActivity: c.lastActive.UTC(),
			State: c.state, Bytes: c.bytes, Buffers: []BufferInfo{}}
		if c.proc != nil {
			ci.PID = c.proc.pid
			ci.DriverBytes = driver[ci.PID]
		}
		for _, b := range c.buffers {
			ci.Buffers = append(ci.Buffers, BufferInfo{ID: b.handle, Device: w.devs[b.dev].Name, Size: b.size,
				Created: b.created.UTC(), AgeSeconds: now.Sub(b.created).Seconds(), Tensor: b.name})
		}
		c.mu.Unlock()
		if hasProc {
			ci.Commands, ci.BytesIn, ci.BytesOut = a.Commands, a.BytesIn, a.BytesOut
			if a.Busy {
				ci.Command = rpc.Cmd(a.Running).String()
			}
			if a.Last.After(ci.LastActivity) {
				ci.LastActivity = a.Last.UTC()
			}
		}
		sort.Slice(ci.Buffers, func(i, j int) bool { return ci.Buffers[i].ID < ci.Buffers[j].ID })
		out = append(out, ci)
	}
	return out
}

// CloseConn ends a connection as an operator and returns once it is gone:
// its process has exited and its memory is accounted as given back. It
// reports whether the connection existed.
func (w *Worker) CloseConn(ctx context.Context, id uint64) (bool, error) {
	w.mu.Lock()
	c := w.conns[id]
	w.mu.Unlock()
	if c == nil {
		return false, nil
	}
	w.events.add(Event{Kind: api.EventClosedByOperator, Conn: id, Peer: c.peer})
	w.log.Info("connection closed by operator", "conn", id, "peer", c.peer)
	c.terminate(api.ReasonOperator)
	select {
	case <-c.done:
		return true, nil
	case <-ctx.Done():
		return true, fmt.Errorf("connection %d: %w", id, ctx.Err())
	}
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
		ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
		defer cancel()
		found, err := w.CloseConn(ctx, id)
		switch {
		case !found:
			writeJSON(rw, 404, map[string]string{"error": fmt.Sprintf("no connection %d", id)})
		case err != nil:
			writeJSON(rw, 504, map[string]string{"error": err.Error()})
		default:
			writeJSON(rw, 200, map[string]any{"closed": id})
		}
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
