package api

import "time"

// The admin API of box worker: GET /v1/node, GET /v1/connections,
// GET /v1/events, POST /v1/connections/{id}/close. Field names are part of
// box's stable interface (SCHEMA.md): add fields, never rename them.

// State is where a connection is in its life.
type State string

const (
	StateHandshake State = "handshake" // before HELLO
	StateServing   State = "serving"
	StateClosed    State = "closed" // ended; shown only while memory is not yet given back
)

// Reason says why a connection ended. The values are metric labels and
// appear in events and logs.
type Reason string

const (
	ReasonClosed         Reason = "closed"          // EOF or reset by the client
	ReasonDeadPeer       Reason = "dead-peer"       // keepalive found the peer's host gone
	ReasonIdle           Reason = "idle"            // --idle-timeout
	ReasonViolation      Reason = "violation"       // a protocol violation
	ReasonError          Reason = "error"           // an I/O or internal error
	ReasonOperator       Reason = "operator"        // POST /v1/connections/{id}/close
	ReasonShutdown       Reason = "shutdown"        // the worker stopped
	ReasonComputeTimeout Reason = "compute-timeout" // a graph ran past --max-compute-time
	ReasonCrashed        Reason = "crashed"         // the compute process died (signal, abort, panic)
	ReasonQuota          Reason = "quota"           // it needed more memory than its quotas allow
	ReasonMessageTimeout Reason = "message-timeout" // a message did not arrive in time (slow or stalled sender)
	// The client sent an op (or a type) that its protocol has but the
	// worker's ggml does not: refused by name, never misread.
	ReasonUnsupportedOp Reason = "unsupported-op"
)

// NodeInfo is GET /v1/node.
type NodeInfo struct {
	Version  string `json:"version"`
	Protocol string `json:"protocol"` // answered to a 3.6 (empty) HELLO
	// Protocols lists every version served, the 3.6 one first, then the
	// one a 4.0-or-newer HELLO gets; GGML is the embedded ggml's llama.cpp
	// commit and OpCount its number of ops (the protocol does not check
	// op tables: compare these across a fleet).
	Protocols   []string     `json:"protocols,omitempty"`
	GGML        string       `json:"ggml,omitempty"`
	OpCount     int          `json:"op_count,omitempty"`
	Started     time.Time    `json:"started"`
	Connections int          `json:"connections"`
	BoundBytes  uint64       `json:"bound_bytes"`
	Devices     []DeviceInfo `json:"devices"`
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
	State        State        `json:"state"` // handshake, serving, closed (memory not yet given back)
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
	// Tensor is the first tensor written into the buffer: what it holds.
	Tensor string `json:"tensor,omitempty"`
}

// EventKind says what happened.
type EventKind string

const (
	EventConnect    EventKind = "connect"
	EventDisconnect EventKind = "disconnect" // ended; Reason says why
	EventCrashed    EventKind = "crashed"    // its compute process died; Detail has the last words
	// EventUnreleased: a connection's memory was not given back (its
	// process outlived its connection, or the GPU driver still lists it).
	EventUnreleased       EventKind = "unreleased"
	EventQuota            EventKind = "quota"   // an allocation refused by a quota
	EventRefused          EventKind = "refused" // a connection refused by --allow
	EventClosedByOperator EventKind = "closed-by-operator"
	EventShutdown         EventKind = "shutdown"
)

// Event is one lifecycle event, as /v1/events reports it.
type Event struct {
	Seq     uint64    `json:"seq"`
	Time    time.Time `json:"time"`
	Kind    EventKind `json:"kind"`
	Conn    uint64    `json:"conn,omitempty"`
	Peer    string    `json:"peer,omitempty"`
	PID     int       `json:"pid,omitempty"`    // the connection's compute process
	Reason  Reason    `json:"reason,omitempty"` // why a connection ended
	Buffers int       `json:"buffers,omitempty"`
	Bytes   uint64    `json:"bytes,omitempty"`
	Detail  string    `json:"detail,omitempty"`
	// Violation is the protocol error's kind (size, device, type, buffer,
	// range, graph, op, index, hello, command, ...) when Reason is violation.
	Violation string `json:"violation,omitempty"`
}
