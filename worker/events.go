package worker

import (
	"sync"
	"time"

	"github.com/boxproj/box/worker/ctl"
)

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
	Seq     uint64     `json:"seq"`
	Time    time.Time  `json:"time"`
	Kind    EventKind  `json:"kind"`
	Conn    uint64     `json:"conn,omitempty"`
	Peer    string     `json:"peer,omitempty"`
	PID     int        `json:"pid,omitempty"`    // the connection's compute process
	Reason  ctl.Reason `json:"reason,omitempty"` // why a connection ended
	Buffers int        `json:"buffers,omitempty"`
	Bytes   uint64     `json:"bytes,omitempty"`
	Detail  string     `json:"detail,omitempty"`
	// Violation is the protocol error's kind (size, device, type, buffer,
	// range, graph, op, index, hello, command, ...) when Reason is violation.
	Violation string `json:"violation,omitempty"`
}

// eventLog is a ring of recent events with live subscribers.
type eventLog struct {
	mu   sync.Mutex
	ring []Event
	next int
	seq  uint64
	subs map[chan Event]struct{}
}

func newEventLog(n int) *eventLog {
	return &eventLog{ring: make([]Event, 0, n), subs: map[chan Event]struct{}{}}
}

func (l *eventLog) add(e Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seq++
	e.Seq = l.seq
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	if len(l.ring) < cap(l.ring) {
		l.ring = append(l.ring, e)
	} else {
		l.ring[l.next] = e
		l.next = (l.next + 1) % cap(l.ring)
	}
	for ch := range l.subs {
		select {
		case ch <- e:
		default: // a slow subscriber misses events rather than blocking the worker
		}
	}
}

// since returns events with Seq > after, oldest first.
func (l *eventLog) since(after uint64) []Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]Event, 0, len(l.ring))
	for i := 0; i < len(l.ring); i++ {
		e := l.ring[(l.next+i)%len(l.ring)]
		if e.Seq > after {
			out = append(out, e)
		}
	}
	return out
}

func (l *eventLog) subscribe() (chan Event, func()) {
	ch := make(chan Event, 64)
	l.mu.Lock()
	l.subs[ch] = struct{}{}
	l.mu.Unlock()
	return ch, func() {
		l.mu.Lock()
		delete(l.subs, ch)
		l.mu.Unlock()
	}
}
